"""``llmlab align rm``: train a reward model (an LM backbone, full or PEFT, with a scalar head on the last real
token) on preference pairs with the Bradley-Terry loss (`llmlab.align.rm_trainer.RewardTrainer`).

    llmlab align rm --config configs/align/rm-sentiment.yaml data.train=pairs.jsonl

The run folder holds ``reward_model/`` (self-contained: the backbone with any LoRA merged, the head, the
tokenizer and how text is rendered), loaded by ``llmlab.align.load_reward_model(out_dir)`` and by
``reward.model=<out_dir>`` in ``llmlab align ppo|grpo``; plus checkpoints (exact ``--resume``), metrics and
``summary.json`` (``val_accuracy``: held-out pairwise accuracy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmlab.recipes.align import apply_method, load_policy, pad_id, run_identity, start_run
from llmlab.recipes.align_config import AlignConfig

MERGEABLE_METHODS = ("full", "lora", "qlora", "ia3")  # save_reward_model folds these into the backbone


def encoding(cfg: AlignConfig, chat_template: str, max_length: int) -> dict[str, Any]:
    """How pairs are rendered and cut (`llmlab.data.preference.encode_pair`'s options), saved with the model."""
    d = cfg.data
    return {
        "template": d.template, "chat_template": chat_template, "max_length": max_length,
        "max_prompt_length": min(d.max_prompt_length, max_length - 1), "add_bos": d.add_bos, "add_eos": d.add_eos,
    }  # fmt: skip


def load_pairs(cfg: AlignConfig, tokenizer: Any, chat_template: str, max_length: int) -> tuple[list, list]:
    """(train, val) pairs: ``data.val`` or a seeded ``data.val_fraction`` of ``data.train``."""
    from llmlab.data.preference import load_preference_pairs, split_held_out

    d = cfg.data
    opts = encoding(cfg, chat_template, max_length)
    train = load_preference_pairs(d.train, tokenizer, **opts)
    if d.val:
        return train, load_preference_pairs(d.val, tokenizer, **opts)
    return split_held_out(train, d.val_fraction, cfg.train.seed)


def _freeze_unused_lm_head(backbone: Any) -> None:
    """The LM head does not feed the reward: freeze it unless tied to the embeddings (DDP needs every trainable
    parameter to get a gradient)."""
    head, embed = getattr(backbone, "lm_head", None), getattr(backbone, "embed_tokens", None)
    if head is not None and (embed is None or head.weight is not embed.weight):
        head.requires_grad_(False)


def run(cfg: AlignConfig, ctx: Any, run: Any, say: Any) -> dict[str, Any]:
    """Train the reward model as configured (called by `llmlab.recipes.align.align`); returns the summary."""
    import torch

    from llmlab.align.reward_model import REWARD_MODEL_DIR, RewardModel, RewardModelInfo, save_reward_model
    from llmlab.align.rm_trainer import RewardTrainer
    from llmlab.data.preference import PairStream, pairs_fingerprint
    from llmlab.nn.virtual import context_length
    from llmlab.train.distributed import barrier
    from llmlab.train.run_dir import check_resume
    from llmlab.train.sft_loop import load_trainable

    if cfg.method not in MERGEABLE_METHODS:
        choices = ", ".join(MERGEABLE_METHODS)
        raise ValueError(f"method={cfg.method} cannot be folded into a saved reward model; use one of: {choices}")
    torch.manual_seed(cfg.train.seed)
    backbone, tokenizer, chat_template, base_name, report = load_policy(cfg, say, apply=False)
    max_length = min(cfg.data.max_length, context_length(backbone))
    train_pairs, val_pairs = load_pairs(cfg, tokenizer, chat_template, max_length)
    run_info = {**run_identity(cfg), "data_sha256": pairs_fingerprint(train_pairs)}
    if run.resume_state is not None:
        check_resume(run.resume_state.get("run", {}), run_info, run.path)

    report = apply_method(backbone, cfg, base_name, tokenizer)
    _freeze_unused_lm_head(backbone)
    padding = pad_id(tokenizer)
    model = RewardModel(backbone, pad_id=padding)  # the head is created trainable, after the method froze the rest
    say(f"{cfg.method} reward model on {base_name}: {report} (+ score head {model.score.weight.numel():,d})")
    if run.resume_state is not None:
        load_trainable(model, run.last)
    stream = PairStream(train_pairs, cfg.train.batch_size, cfg.train.data_order_seed, ctx.rank, ctx.world_size)
    start_run(run, cfg, ctx)
    with run.guard(enabled=ctx.is_main):
        trainer = RewardTrainer(
            model, stream, cfg.train, cfg.optim, cfg.schedule, run.path, pad_id=padding,
            use_margin=cfg.rm.use_margin, center_rewards_coefficient=cfg.rm.center_rewards_coefficient,
            val_pairs=val_pairs, say=say, ctx=ctx, resume_state=run.resume_state, run_info=run_info,
        )  # fmt: skip
        summary = trainer.fit()
        if ctx.is_main:
            opts = encoding(cfg, chat_template, max_length)
            info = RewardModelInfo(**opts, pad_id=padding, base=base_name, method=cfg.method)
            model.to("cpu")
            saved = save_reward_model(model, tokenizer, Path(run.path) / REWARD_MODEL_DIR, info)
            summary.update(
                reward_model=str(saved), method=cfg.method, base=base_name, trainable=report,
                checkpoint=str(run.last), out_dir=str(run.path),
            )  # fmt: skip
            run.write_summary(summary)
        barrier(ctx)
    return summary
