"""Distillation as a specialisation of the one `Trainer`: a frozen teacher, a student, and the losses of
`llmlab.compress.distill` (logit KD at temperature T mixed with CE by alpha; optional hidden-state and
attention-transfer terms).

Per micro-batch (random token windows, as pretraining draws them)::

    teacher logits: teacher(x) under no_grad (on the fly), or the top-k cached for this batch (`TopKCache`)
    loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, y)
         + kd.hidden_weight * MSE(W_h h_s, h_t) + kd.attention_weight * MSE(A_s, A_t)

The trained module is a `DistillStudent` (the student plus, when widths differ, the hidden-state projection W_h),
so the optimizer, checkpoints and exact resume cover W_h too (its weights ride in ``trainer_state.pt``); a
checkpoint holds the student as a loadable model (``model.safetensors`` + ``model_config.json`` +
``tokenizer.json``) and W_h also as ``distill_projection.safetensors``.
Evaluation is the student's plain next-token CE on held-out windows (``val_loss``), so runs with and without KD
compare directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from llmlab.compress.distill import (
    HiddenStateLoss,
    KDLoss,
    TopKCache,
    attention_transfer_loss,
    capture_layer_outputs,
    kd_loss,
    layer_pairs,
    topk_kd_loss,
)
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.distributed import DistContext, all_reduce_sum
from llmlab.train.pretrain_loop import BatchLoader
from llmlab.train.trainer import Trainer

PROJECTION_FILE = "distill_projection.safetensors"
Batch = dict[str, torch.Tensor]


@dataclass
class KDSettings:
    """The distillation loss settings (the ``kd:`` section of ``llmlab distill``; see `llmlab.compress.distill`)."""

    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    hidden_layers: list[int] | None = None  # student layers to pair (None = all)
    attention_layers: list[int] = field(default_factory=lambda: [-1])  # student layers whose maps are matched


def hidden_width(model: nn.Module) -> int:
    """The width C of a model's hidden states (its token embedding's dimension)."""
    return int(model.embed_tokens.weight.shape[1])  # type: ignore[union-attr]


class DistillStudent(nn.Module):
    """What the optimizer trains: the student and the hidden-state loss (its projection W_h, if any)."""

    def __init__(self, student: nn.Module, hidden_loss: HiddenStateLoss | None) -> None:
        super().__init__()
        self.student, self.hidden_loss = student, hidden_loss

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> Any:
        return self.student(x, y, **kwargs)


class DistillTrainer(Trainer):
    """Trains a student on a frozen teacher's logits (and, optionally, hidden states and attention maps).

    Args:
        student: the student model (a `DecoderLM`), holding its starting weights.
        teacher: the teacher (same vocabulary); frozen and put in eval mode here. May be None with a `cache` and
            no hidden/attention terms (nothing then needs it).
        kd: the loss settings.
        train / optim / schedule: the run's config sections.
        train_loader: this rank's (x, y) micro-batches (e.g. ``llmlab.data.RandomWindowLoader``).
        val_batches: a fresh iterable of held-out (x, y) batches per evaluation (None = no evaluation).
        out_dir: the run folder.
        cache: top-k teacher logits for the training batches in order (None = the teacher runs on the fly).
        tokenizer_file: copied into each checkpoint.
        **kwargs: `Trainer`'s keyword arguments (ctx, device, resume_state, run_info, say).
    """

    fit_warmup_to_run = True  # a short run still reaches the peak lr (as fine-tuning)

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        kd: KDSettings,
        train: TrainConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        train_loader: BatchLoader,
        val_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None,
        out_dir: str | Path,
        *,
        cache: TopKCache | None = None,
        tokenizer_file: str | Path | None = None,
        ctx: DistContext | None = None,
        **kwargs: Any,
    ) -> None:
        self.kd, self.cache, self.train_loader, self.val_batches = kd, cache, train_loader, val_batches
        self.logits_from_teacher = kd.alpha > 0 and cache is None
        if teacher is None and (self.logits_from_teacher or kd.hidden_weight > 0 or kd.attention_weight > 0):
            raise ValueError("distillation needs a teacher model unless the teacher's logits are cached (or alpha=0)")
        n_student = len(student.layers)  # type: ignore[arg-type]
        self.hidden_pairs: list[tuple[int, int]] = []
        self.attention_pairs: list[tuple[int, int]] = []
        hidden_loss = None
        if teacher is not None:
            n_teacher = len(teacher.layers)  # type: ignore[arg-type]
            if kd.hidden_weight > 0:
                self.hidden_pairs = layer_pairs(n_student, n_teacher, kd.hidden_layers)
                hidden_loss = HiddenStateLoss(hidden_width(student), hidden_width(teacher))
            if kd.attention_weight > 0:
                self.attention_pairs = layer_pairs(n_student, n_teacher, kd.attention_layers)
        self.batches_drawn = 0
        self._parts: dict[str, list[float]] = {}
        super().__init__(DistillStudent(student, hidden_loss), train, optim, schedule, out_dir, ctx=ctx, **kwargs)
        self.teacher = teacher
        if teacher is not None:
            teacher.to(self.device).eval().requires_grad_(False)
        self.tokenizer_file = Path(tokenizer_file) if tokenizer_file is not None else None

    @property
    def student(self) -> nn.Module:
        return self.raw_model.student  # type: ignore[return-value]

    # (a) a batch: random windows, with the cached teacher top-k of this batch when there is a cache
    def next_batch(self) -> Batch:
        x, y = self.train_loader.next_batch()
        batch = {"x": x, "y": y}
        if self.cache is not None:
            batch["values"], batch["indices"] = self.cache.get(self.batches_drawn, x)
        self.batches_drawn += 1
        return batch

    def batch_tokens(self, batch: Batch) -> int:
        return batch["x"].numel()

    # (b) its loss
    def batch_loss(self, batch: Batch) -> torch.Tensor:
        x, y, kd = batch["x"], batch["y"], self.kd
        want_attn = bool(self.attention_pairs)
        teacher_out, teacher_hidden = self._teacher_forward(x, want_attn)
        with capture_layer_outputs(self.student, [s for s, _ in self.hidden_pairs]) as student_hidden:
            out = self.model(x, None, output_attentions=want_attn)
        if self.cache is not None:
            parts = topk_kd_loss(
                out.logits, batch["values"], batch["indices"], y, temperature=kd.temperature, alpha=kd.alpha
            )
        elif self.logits_from_teacher:
            parts = kd_loss(out.logits, teacher_out.logits, y, temperature=kd.temperature, alpha=kd.alpha)
        else:  # alpha = 0: the plain next-token CE (the no-KD baseline), no teacher logits needed
            ce = F.cross_entropy(out.logits.float().flatten(0, 1), y.reshape(-1), ignore_index=-100)
            parts = KDLoss(ce, torch.zeros(()), ce.detach())
        loss = parts.loss
        self._note("kd", parts.kd)
        self._note("ce", parts.ce)
        mask = y != -100
        if self.hidden_pairs:
            hidden_loss = self.raw_model.hidden_loss
            assert hidden_loss is not None
            h = hidden_loss(
                [student_hidden[s] for s, _ in self.hidden_pairs], [teacher_hidden[t] for _, t in self.hidden_pairs],
                mask,
            )  # fmt: skip
            loss = loss + kd.hidden_weight * h
            self._note("hidden", h)
        if self.attention_pairs:
            assert teacher_out is not None
            a = attention_transfer_loss(
                [out.attentions[s] for s, _ in self.attention_pairs],
                [teacher_out.attentions[t] for _, t in self.attention_pairs],
                mask,
            )
            loss = loss + kd.attention_weight * a
            self._note("attention", a)
        return loss

    @torch.no_grad()
    def _teacher_forward(self, x: torch.Tensor, want_attn: bool) -> tuple[Any, dict[int, torch.Tensor]]:
        """The teacher's output (None when the cache supplies everything) and its captured layer outputs."""
        if self.teacher is None or not (self.logits_from_teacher or self.hidden_pairs or want_attn):
            return None, {}
        with capture_layer_outputs(self.teacher, [t for _, t in self.hidden_pairs]) as hidden:
            out = self.teacher(x, output_attentions=want_attn)
        return out, dict(hidden)

    def _note(self, name: str, value: torch.Tensor) -> None:
        self._parts.setdefault(name, []).append(float(value.detach()))

    def step_metrics(self) -> dict[str, Any]:
        """The step's mean loss parts (kd, ce, hidden, attention) over its micro-batches (this rank's)."""
        parts = {f"loss_{k}": sum(v) / len(v) for k, v in self._parts.items() if v}
        self._parts = {}
        return parts

    # (c) a checkpoint: the student as a loadable model, plus W_h when there is one
    def save_weights(self, directory: Path) -> None:
        self.student.save_pretrained(directory)  # type: ignore[operator]
        hidden_loss = self.raw_model.hidden_loss
        if hidden_loss is not None and any(True for _ in hidden_loss.parameters()):
            state = {k: v.detach().cpu().contiguous() for k, v in hidden_loss.state_dict().items()}
            save_file(state, str(directory / PROJECTION_FILE))

    def trainer_state(self) -> dict[str, Any]:
        """The base state plus W_h's weights (so a resume needs only the student folder and this state)."""
        state = super().trainer_state()
        hidden_loss = self.raw_model.hidden_loss
        if hidden_loss is not None:
            state["hidden_projection"] = {k: v.detach().cpu().clone() for k, v in hidden_loss.state_dict().items()}
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        hidden_loss = self.raw_model.hidden_loss
        if hidden_loss is not None and state.get("hidden_projection"):
            hidden_loss.load_state_dict(state["hidden_projection"])
        super().load_state(state)

    def data_state(self) -> dict[str, Any]:
        return {"loader": self.train_loader.state_dict(), "batches_drawn": self.batches_drawn}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.train_loader.load_state_dict(state["loader"])
        self.batches_drawn = int(state["batches_drawn"])

    # evaluation, messages, summary
    @property
    def can_evaluate(self) -> bool:
        return self.val_batches is not None and self.tc.eval_iters > 0

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The student's token-weighted mean next-token CE over the held-out batches (``val_loss``)."""
        assert self.val_batches is not None
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # (sum of token losses, tokens)
        for x, y in self.val_batches():
            with self.precision.autocast():
                loss = self.student(x.to(self.device), y.to(self.device)).loss.double()
            totals[0] += loss * y.numel()
            totals[1] += y.numel()
        self.model.train()
        totals = all_reduce_sum(totals, self.ctx)
        return {"val_loss": float(totals[0] / totals[1])} if totals[1] > 0 else {}

    def describe_row(self, row: dict[str, Any]) -> str | None:
        msg = super().describe_row(row) or ""
        parts = ", ".join(f"{k[5:]} {row[k]:.4f}" for k in ("loss_kd", "loss_ce", "loss_hidden", "loss_attention")
                          if k in row)  # fmt: skip
        return msg + (f" ({parts})" if parts else "")

    @property
    def teacher_source(self) -> str:
        """Where the soft targets come from, in words."""
        if self.cache is not None:
            return f"cached top-{self.cache.k} logits"
        return "the teacher on the fly" if self.teacher is not None else "the labels only (alpha=0, no teacher)"

    def start_message(self, start: int) -> str:
        source = self.teacher_source
        return (
            f"distilling into {self.n_params:,} parameters on {self.device} ({self.precision.name}) from {source}; "
            f"T={self.kd.temperature}, alpha={self.kd.alpha}" + (f"; resuming at iteration {start}" if start else "")
        )

    def summary(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.out_dir / "checkpoints" / "last"),
            "out_dir": str(self.out_dir),
            "kd": {**asdict(self.kd), "soft_targets": self.teacher_source},
        }
