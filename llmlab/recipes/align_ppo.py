"""``llmlab align ppo``: RLHF with PPO (Ziegler et al. 2019, https://arxiv.org/abs/1909.08593; Ouyang et al.
2022, https://arxiv.org/abs/2203.02155) — a policy with a value head, a reference, per-token KL penalties, GAE and
clipped PPO updates (`llmlab.align.ppo_trainer.PPOTrainer`).

    llmlab align ppo --config configs/align/ppo-sentiment.yaml reward.model=runs/rm-sentiment
    llmlab align ppo data.train=prompts.jsonl reward.functions=[arithmetic] ppo.adaptive_kl=true

Loads the policy (LoRA etc. applied), builds the reference from it before any training (adapters off for a PEFT
policy, else a frozen copy), adds the value head (`PolicyWithValue`), loads the prompts
(`llmlab.data.preference.load_prompt_records`) and the reward sources (`llmlab.align.rewards.RewardSources`), trains,
and writes the POLICY ALONE as ``adapter/`` or ``model/`` beside the tokenizer, so ``llmlab generate/chat/merge
--checkpoint <out_dir>`` load it. The value head lives only in the checkpoints (``checkpoints/last``).
"""

from __future__ import annotations

from typing import Any

from llmlab.recipes.align_config import AlignConfig


def run(cfg: AlignConfig, ctx: Any, run: Any, say: Any) -> dict[str, Any]:
    """Train PPO as configured (called by `llmlab.recipes.align.align`); returns the summary."""
    import torch

    from llmlab.align.ppo import PolicyWithValue
    from llmlab.align.ppo_trainer import PPOTrainer
    from llmlab.align.reference import ReferencePolicy
    from llmlab.align.rewards import RewardSources
    from llmlab.data.preference import PromptStream
    from llmlab.peft import PEFT_METHODS
    from llmlab.recipes.align import (
        check_context,
        load_policy,
        load_prompts,
        pad_id,
        run_identity,
        sampling_config,
        start_run,
        stop_ids,
        write_policy_outputs,
    )
    from llmlab.train.distributed import barrier
    from llmlab.train.precision import rank_device
    from llmlab.train.sft_loop import load_trainable

    torch.manual_seed(cfg.train.seed)
    model, tokenizer, chat_template, base_name, report = load_policy(cfg, say)
    check_context(model, cfg)
    train, val = load_prompts(cfg, tokenizer, chat_template)
    device = rank_device(cfg.train.device, ctx.local_rank)
    rewards = RewardSources(cfg.reward, tokenizer, device)
    reference = ReferencePolicy(model, cfg.reference)  # from the starting weights, before any resumed ones
    policy = PolicyWithValue(model, cfg.ppo.value_head_init_std)
    if run.resume_state is not None:
        load_trainable(policy, run.last)
    p = cfg.ppo
    stream = PromptStream(train, p.prompts_per_rollout, cfg.train.data_order_seed, ctx.rank, ctx.world_size)
    steps_per_rollout = p.ppo_epochs * p.prompts_per_rollout // p.minibatch_size
    say(
        f"PPO: {len(train)} training prompts, {len(val)} held out; {p.prompts_per_rollout} prompts per rollout, "
        f"{steps_per_rollout} optimizer steps each ({p.ppo_epochs} epochs x minibatches of {p.minibatch_size}); "
        f"rewards: {', '.join(rewards.names)}; reference: {reference.mode}; "
        f"KL: {'adaptive' if p.adaptive_kl else 'fixed'} kl_coef {p.kl_coef}"
    )
    start_run(run, cfg, ctx)
    with run.guard(enabled=ctx.is_main):
        trainer = PPOTrainer(
            policy, reference, stream, rewards, p, tokenizer=tokenizer, sampling=sampling_config(cfg),
            eos_ids=stop_ids(tokenizer, chat_template), pad_id=pad_id(tokenizer),
            micro_batch_size=p.minibatch_size // cfg.train.grad_accum, score_batch_size=cfg.rollout.batch_size,
            val_prompts=val, train=cfg.train, optim=cfg.optim, schedule=cfg.schedule, out_dir=run.path, ctx=ctx,
            device=device, resume_state=run.resume_state, run_info=run_identity(cfg), say=say,
        )  # fmt: skip
        summary = trainer.fit()
        if ctx.is_main:
            model.to("cpu")
            key = "adapter" if cfg.method in PEFT_METHODS else "model"
            summary[key] = write_policy_outputs(model, tokenizer, cfg, base_name, chat_template)
            summary.update(
                objective="ppo", method=cfg.method, base=base_name, trainable=report, rewards=rewards.names,
                reference=reference.mode, train_prompts=len(train), val_prompts=len(val),
                checkpoint=str(run.last), out_dir=str(run.path),
            )  # fmt: skip
            run.write_summary(summary)
        barrier(ctx)
    return summary
