"""``llmlab align dpo``: preference optimisation (DPO, cDPO, IPO, hinge, SimPO, ORPO) of a policy on
(prompt, chosen, rejected) pairs — `llmlab.align.dpo_trainer.DPOTrainer` on the one trainer.

    llmlab align dpo --config configs/align/dpo-lora.yaml data.train=pairs.jsonl dpo.beta=0.1 dpo.loss=ipo

The reference (for the losses that have one, `llmlab.align.dpo.needs_reference`):

- ``dpo.precompute_ref_logprobs=true``: every pair's reference log-probabilities are computed once before
  training (the policy as loaded, or with its adapters off) and kept in the checkpoint — no reference forward
  per step and no reference copy at all, even for full fine-tuning.
- otherwise `llmlab.align.reference.ReferencePolicy` (``reference: auto | adapters | copy``): a PEFT policy with
  its adapters disabled (no second copy), or a frozen copy of the starting weights.

The run ends like ``llmlab finetune``: ``adapter/`` (PEFT) or ``model/`` (full) and the tokenizer in
``out_dir``, so ``llmlab generate/chat/merge --checkpoint <out_dir>`` load the aligned policy.
"""

from __future__ import annotations

from typing import Any

from llmlab.recipes.align_config import AlignConfig


def _load_pairs(cfg: AlignConfig, tokenizer: Any, chat_template: str, max_length: int, say: Any) -> tuple[list, list]:
    """(train, val) preference pairs: ``data.val`` or a held-out share of ``data.train``."""
    from llmlab.data.preference import load_preference_pairs, split_held_out

    d = cfg.data
    kw = dict(
        template=d.template, chat_template=chat_template, max_length=max_length,
        max_prompt_length=min(d.max_prompt_length, max_length - 1), add_bos=d.add_bos, add_eos=d.add_eos,
    )  # fmt: skip
    train = load_preference_pairs(d.train, tokenizer, **kw)
    if d.val:
        val = load_preference_pairs(d.val, tokenizer, **kw)
    else:
        train, val = split_held_out(train, d.val_fraction, cfg.train.seed)
    if cfg.train.max_eval_examples:
        val = val[: cfg.train.max_eval_examples]
    say(f"preference pairs: {len(train)} train, {len(val)} held out")
    return train, val


def _reference(cfg: AlignConfig, model: Any, resume_state: dict | None, pairs: dict[str, list], pad: int,
               device: Any, precision: Any, say: Any) -> tuple[Any, dict | None, str]:  # fmt: skip
    """(reference policy or None, precomputed log-probs or None, a description) — before the trainer exists
    and before a checkpoint's weights are loaded (the reference is the policy as it starts)."""
    from llmlab.align.dpo import needs_reference, precompute_ref_logprobs
    from llmlab.align.reference import ReferencePolicy, has_adapters

    if not needs_reference(cfg.dpo.loss):
        return None, None, f"none ({cfg.dpo.loss} is reference-free)"
    adapters = has_adapters(model) and cfg.reference != "copy"
    if not cfg.dpo.precompute_ref_logprobs:
        ref = ReferencePolicy(model, "adapters" if adapters else "copy")
        return ref, None, "adapters disabled" if ref.mode == "adapters" else "frozen copy"
    how = "precomputed (adapters disabled)" if adapters else "precomputed (starting weights)"
    saved = (resume_state or {}).get("data", {}).get("ref_logps")
    if saved is not None:
        return None, saved, how
    say(f"computing the reference log-probabilities of {sum(map(len, pairs.values()))} pairs once")
    model.to(device)
    scorer = ReferencePolicy(model, "adapters") if adapters else model
    kw = dict(batch_size=cfg.train.eval_batch_size, device=device, autocast=precision.autocast)
    ref_logps = {k: precompute_ref_logprobs(scorer, v, pad, **kw) if v else None for k, v in pairs.items()}
    return None, ref_logps, how


def run(cfg: AlignConfig, ctx: Any, run: Any, say: Any) -> dict[str, Any]:
    """Train ``cfg`` (objective dpo) in the opened `run`; returns the summary (see the module docstring)."""
    import torch

    from llmlab.align.dpo import loss_from_config
    from llmlab.align.dpo_trainer import DPOTrainer
    from llmlab.data.preference import PairStream, pairs_fingerprint
    from llmlab.nn.virtual import context_length
    from llmlab.recipes.align import load_policy, pad_id, run_identity, start_run, write_policy_outputs
    from llmlab.train.precision import check_runtime, rank_device
    from llmlab.train.run_dir import check_resume
    from llmlab.train.sft_loop import load_trainable

    torch.manual_seed(cfg.train.seed)
    model, tokenizer, chat_template, base_name, report = load_policy(cfg, say)
    max_length = min(cfg.data.max_length, context_length(model))
    train_pairs, val_pairs = _load_pairs(cfg, tokenizer, chat_template, max_length, say)
    run_info = {**run_identity(cfg), "data_sha256": pairs_fingerprint(train_pairs)}
    if run.resume_state is not None:
        check_resume(run.resume_state.get("run", {}), run_info, run.path)
    device = rank_device(cfg.train.device, ctx.local_rank)
    _, precision = check_runtime(str(device), cfg.train.precision, ctx.mode)
    pad = pad_id(tokenizer)
    reference, ref_logps, ref_how = _reference(
        cfg, model, run.resume_state, {"train": train_pairs, "val": val_pairs}, pad, device, precision, say
    )
    if run.resume_state is not None:
        load_trainable(model, run.last)
    stream = PairStream(train_pairs, cfg.train.batch_size, cfg.train.data_order_seed, ctx.rank, ctx.world_size)
    start_run(run, cfg, ctx)
    with run.guard(enabled=ctx.is_main):
        trainer = DPOTrainer(
            model, stream, cfg.train, cfg.optim, cfg.schedule, run.path, loss=loss_from_config(cfg.dpo), pad_id=pad,
            reference=reference, ref_logps=ref_logps, sft_weight=cfg.dpo.sft_weight, val_pairs=val_pairs,
            eval_batch_size=cfg.train.eval_batch_size, ctx=ctx, resume_state=run.resume_state, run_info=run_info,
            say=say,
        )  # fmt: skip
        summary = trainer.fit()
        if ctx.is_main:
            model.to("cpu")
            key = "model" if cfg.method == "full" else "adapter"
            summary[key] = write_policy_outputs(model, tokenizer, cfg, base_name, chat_template)
            summary.update(
                objective="dpo", loss=cfg.dpo.loss, beta=cfg.dpo.beta, reference=ref_how, method=cfg.method,
                base=base_name, trainable=report, train_pairs=len(train_pairs), val_pairs=len(val_pairs),
                checkpoint=str(run.last), out_dir=str(run.path),
            )  # fmt: skip
            run.write_summary(summary)
    return summary
