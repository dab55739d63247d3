"""Alignment: reward models, the DPO family, PPO and GRPO on llmlab's one trainer (`llmlab.train.Trainer`).

    from llmlab.align import load_reward_model
    rm = load_reward_model("runs/rm-sentiment")       # a `llmlab align rm` run folder (or its reward_model/)
    rm.score(["The movie was"], [" wonderful."])      # tensor([2.1])

Modules: `logprobs` (per-token log-probabilities of response tokens), `reference` (the frozen reference: adapters
off or a frozen copy), `rollout` (sampling with the batched KV-cache generator), `reward_model` + `rm_trainer`,
`dpo` + `packing` + `dpo_trainer` + `pairs`, `ppo` + `ppo_trainer`, `grpo` + `grpo_trainer`, `rewards` (reward
functions and their sum), `evaluate` (reward and KL to the reference on held-out prompts). The verbs are
``llmlab align rm|dpo|ppo|grpo`` (`llmlab.recipes.align`).
"""

from llmlab.align.evaluate import PolicyEval, evaluate_policy
from llmlab.align.reference import ReferencePolicy
from llmlab.align.reward_model import RewardModel, RewardScorer, load_reward_model
from llmlab.align.rewards import REWARD_FUNCTIONS, RewardSources

__all__ = [
    "REWARD_FUNCTIONS",
    "PolicyEval",
    "ReferencePolicy",
    "RewardModel",
    "RewardScorer",
    "RewardSources",
    "evaluate_policy",
    "load_reward_model",
]
