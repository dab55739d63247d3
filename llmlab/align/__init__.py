"""Alignment: reward models, the DPO family, PPO and GRPO on llmlab's one trainer (`llmlab.train.Trainer`).

Shared pieces: `logprobs` (per-token log-probabilities of response tokens), `reference` (the frozen reference:
adapters off or a frozen copy), `rollout` (sampling completions with the batched KV-cache generator).
"""
