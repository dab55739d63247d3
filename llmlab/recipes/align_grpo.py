"""``llmlab align grpo``: GRPO (Shao et al. 2024, https://arxiv.org/abs/2402.03300) with verifiable rewards
(`llmlab.align.rewards`: ``reward.functions=[arithmetic]`` or ``module:function``) and/or a reward model
(``reward.model=<llmlab align rm run>``).

    llmlab align grpo --config configs/align/grpo-arithmetic.yaml
    llmlab align grpo data.train=prompts.jsonl reward.functions=[arithmetic] grpo.beta=0 method=lora

Loads the policy (LoRA etc. applied), the prompts (`llmlab.data.preference.load_prompt_records`: ``prompt`` plus
fields the rewards read, e.g. ``answer``), the reward sources and — only when ``grpo.beta > 0`` — the reference
(adapters off for a PEFT policy, else a frozen copy), then trains `llmlab.align.grpo_trainer.GRPOTrainer` and
writes ``adapter/`` or ``model/`` beside the tokenizer, so ``llmlab generate/chat/merge --checkpoint <out_dir>``
load the result.
"""

from __future__ import annotations

from typing import Any

from llmlab.recipes.align_config import AlignConfig


def run(cfg: AlignConfig, ctx: Any, run: Any, say: Any) -> dict[str, Any]:
    """Train GRPO as configured (called by `llmlab.recipes.align.align`); returns the summary."""
    import torch

    from llmlab.align.grpo_trainer import GRPOTrainer
    from llmlab.align.reference import ReferencePolicy
    from llmlab.align.rewards import RewardSources
    from llmlab.data.preference import PromptStream
    from llmlab.peft import PEFT_METHODS
    from llmlab.recipes import align as shared
    from llmlab.train.distributed import barrier
    from llmlab.train.precision import rank_device
    from llmlab.train.sft_loop import load_trainable

    torch.manual_seed(cfg.train.seed)
    model, tokenizer, chat_template, base_name, report = shared.load_policy(cfg, say)
    shared.check_context(model, cfg)
    train, val = shared.load_prompts(cfg, tokenizer, chat_template)
    device = rank_device(cfg.train.device, ctx.local_rank)
    rewards = RewardSources(cfg.reward, tokenizer, device)
    reference = ReferencePolicy(model, cfg.reference) if cfg.grpo.beta > 0 else None  # before resumed weights
    if run.resume_state is not None:
        load_trainable(model, run.last)
    stream = PromptStream(train, cfg.grpo.prompts_per_step, cfg.train.data_order_seed, ctx.rank, ctx.world_size)
    eos_ids = shared.stop_ids(tokenizer, chat_template)
    say(
        f"GRPO: {len(train)} training prompts, {len(val)} held out; {cfg.grpo.prompts_per_step} prompts x "
        f"{cfg.grpo.num_generations} completions per rollout; rewards: {', '.join(rewards.names)}; "
        f"reference: {reference.mode if reference else 'none (beta=0)'}"
    )
    shared.start_run(run, cfg, ctx)
    with run.guard(enabled=ctx.is_main):
        trainer = GRPOTrainer(
            model, cfg, stream, rewards, tokenizer, reference, shared.sampling_config(cfg), eos_ids,
            shared.pad_id(tokenizer),
            out_dir=run.path, val_prompts=val, ctx=ctx, device=device, resume_state=run.resume_state,
            run_info=shared.run_identity(cfg), say=say,
        )  # fmt: skip
        summary = trainer.fit()
        if ctx.is_main:
            model.to("cpu")
            key = "adapter" if cfg.method in PEFT_METHODS else "model"
            summary[key] = shared.write_policy_outputs(model, tokenizer, cfg, base_name, chat_template)
            summary.update(
                objective="grpo", method=cfg.method, base=base_name, trainable=report, rewards=rewards.names,
                train_prompts=len(train), val_prompts=len(val), checkpoint=str(run.last), out_dir=str(run.path),
            )  # fmt: skip
            run.write_summary(summary)
        barrier(ctx)
    return summary
