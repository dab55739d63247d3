"""Knowledge distillation: the losses, the layer pairing, and the on-disk cache of a teacher's top-k logits.

A student learns from a (larger, frozen) teacher that shares its tokenizer. Losses (all on the *target positions*
only: positions whose label is ``ignore_index`` = -100 count nowhere):

- **Logit distillation** (Hinton, Vinyals & Dean 2015, https://arxiv.org/abs/1503.02531), `kd_loss`::

      p_t = softmax(z_t / T),  log q_s = log_softmax(z_s / T)
      KD  = T^2 * mean_{target positions} KL(p_t || q_s) = T^2 * mean sum_v p_t,v (log p_t,v - log q_s,v)
      CE  = mean_{target positions} -log softmax(z_s)[y]
      loss = alpha * KD + (1 - alpha) * CE

  The T^2 keeps the gradient scale of the soft term independent of T (Hinton et al., section 2).
- **From cached top-k teacher logits**, `topk_kd_loss`: the teacher keeps its k largest logits per position
  (values fp16 + indices int32). Both distributions are *renormalised over those k ids* (no tail bucket): p_t =
  softmax(topk values / T) over k, q_s = softmax(student logits at the same k ids / T) over k, and KD is the KL
  between them times T^2. With k = vocab it equals `kd_loss` exactly; with k << vocab it ignores how the student
  spreads mass outside the teacher's top k (the CE term and the renormalised KL still push the right way).
- **Hidden states** (TinyBERT, Jiao et al. 2019, https://arxiv.org/abs/1909.10351; DistilBERT, Sanh et al. 2019,
  https://arxiv.org/abs/1910.01108), `HiddenStateLoss`: MSE between chosen student layers' outputs and the paired
  teacher layers' outputs, through a learned linear projection W_h (C_s -> C_t) when the widths differ.
- **Attention transfer** (TinyBERT's attention loss), `attention_transfer_loss`: MSE between attention maps
  (B, H, T, T) of paired layers; head by head when the head counts match, else between the head-averaged maps.
- **Sequence-level KD** (Kim & Rush 2016, https://arxiv.org/abs/1606.07947): train on the teacher's own
  generations (greedy/beam outputs) instead of, or besides, the corpus. The generation step lives in
  `llmlab.recipes.distill` (layer 7: compress cannot import ``llmlab.generate``); the loss is then `kd_loss`/CE.

Layer pairing (`layer_pairs`): the "uniform" strategy of TinyBERT: student layer i (0-based, of n_s) learns from
teacher layer ``(i + 1) * n_t // n_s - 1``, so the last layers meet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from llmlab.io import atomic_write, atomic_write_json

IGNORE_INDEX = -100
CACHE_META = "topk_cache.json"


@dataclass
class KDLoss:
    """A distillation loss and its parts (each a scalar tensor; `loss` carries the gradient)."""

    loss: torch.Tensor
    kd: torch.Tensor
    ce: torch.Tensor


def check_vocab_compatible(student_vocab: int, teacher_vocab: int) -> None:
    """One-line ValueError unless student and teacher have the same vocabulary size (a shared tokenizer)."""
    if int(student_vocab) != int(teacher_vocab):
        raise ValueError(
            f"student vocab_size {student_vocab} differs from the teacher's {teacher_vocab}; distillation needs a "
            f"shared tokenizer: give the student vocab_size={teacher_vocab} and the teacher's tokenizer"
        )


def check_kd_settings(temperature: float, alpha: float) -> None:
    """One-line ValueError for a temperature <= 0 or an alpha outside [0, 1]."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"kd.temperature must be a number > 0 (e.g. 2.0), got {temperature!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"kd.alpha must be in [0, 1] (1 = only the teacher, 0 = only the labels), got {alpha!r}")


def _mix(kd: torch.Tensor, ce: torch.Tensor, alpha: float) -> KDLoss:
    """alpha * KD + (1 - alpha) * CE (a term with weight 0 is left out, so it cannot inject NaN)."""
    if alpha >= 1.0:
        total = kd
    elif alpha <= 0.0:
        total = ce
    else:
        total = alpha * kd + (1.0 - alpha) * ce
    return KDLoss(total, kd.detach(), ce.detach())


def _target_mask(targets: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask (B, T) bool of the target positions, count (scalar, >= 1))."""
    mask = targets != ignore_index
    return mask, mask.sum().clamp(min=1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> KDLoss:
    """Hinton et al.'s logit distillation mixed with the hard-label CE (formulas in the module docstring).

    Args:
        student_logits: (B, T, V) student logits.
        teacher_logits: (B, T, V) teacher logits at the same positions (no gradient needed).
        targets: (B, T) next-token ids; `ignore_index` marks positions that count nowhere.
        temperature: T > 0 (both distributions are softened by it; the KL is scaled by T^2).
        alpha: weight of the KD term (1 - alpha weighs the CE).

    Returns:
        `KDLoss` (loss, kd, ce): means over the target positions.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ; "
            "they need the same batch, length and vocabulary"
        )
    mask, count = _target_mask(targets, ignore_index)
    s = student_logits.float() / temperature  # (B, T, V)
    t = teacher_logits.detach().float() / temperature  # (B, T, V)
    log_q = F.log_softmax(s, dim=-1)
    log_p = F.log_softmax(t, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # (B, T)
    kd = (kl * mask).sum() / count * temperature**2
    ce = F.cross_entropy(student_logits.float().flatten(0, 1), targets.reshape(-1), ignore_index=ignore_index)
    return _mix(kd, ce, alpha)


def top_k_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's k largest logits per position: (values (..., k) float16, indices (..., k) int32)."""
    k = min(int(k), logits.shape[-1])
    values, indices = logits.detach().float().topk(k, dim=-1)
    return values.to(torch.float16), indices.to(torch.int32)


def topk_kd_loss(
    student_logits: torch.Tensor,
    teacher_values: torch.Tensor,
    teacher_indices: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> KDLoss:
    """`kd_loss` from cached top-k teacher logits, both distributions renormalised over the k ids.

    Args:
        student_logits: (B, T, V).
        teacher_values: (B, T, k) the teacher's top-k logits (any float dtype).
        teacher_indices: (B, T, k) their token ids (int32/int64).
        targets: (B, T) with `ignore_index` for positions that count nowhere.

    Returns:
        `KDLoss`; with k = V it equals `kd_loss` on the full teacher logits.
    """
    if teacher_values.shape != teacher_indices.shape or teacher_values.shape[:2] != student_logits.shape[:2]:
        raise ValueError(
            f"cached teacher values {tuple(teacher_values.shape)} / indices {tuple(teacher_indices.shape)} do not "
            f"match the student logits {tuple(student_logits.shape)}; rebuild the cache for this data"
        )
    mask, count = _target_mask(targets, ignore_index)
    s_k = student_logits.float().gather(-1, teacher_indices.long()) / temperature  # (B, T, k)
    log_q = F.log_softmax(s_k, dim=-1)
    log_p = F.log_softmax(teacher_values.float() / temperature, dim=-1)  # (B, T, k)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # (B, T)
    kd = (kl * mask).sum() / count * temperature**2
    ce = F.cross_entropy(student_logits.float().flatten(0, 1), targets.reshape(-1), ignore_index=ignore_index)
    return _mix(kd, ce, alpha)


def layer_pairs(n_student: int, n_teacher: int, student_layers: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs by TinyBERT's uniform mapping ``t = (s + 1) * n_t // n_s - 1``.

    Args:
        student_layers: which student layers to pair (default all); negative indices count from the end.
    """
    chosen = range(n_student) if student_layers is None else [i % n_student for i in student_layers]
    return [(s, (s + 1) * n_teacher // n_student - 1) for s in chosen]


class HiddenStateLoss(nn.Module):
    """MSE between student and teacher layer outputs, through a learned projection when widths differ.

    ``loss = mean over pairs of mean((W_h h_s + b - h_t)^2 over target positions and channels)`` (TinyBERT eq. 8);
    W_h is the identity (no parameters) when ``student_dim == teacher_dim``.

    Args:
        student_dim / teacher_dim: hidden widths C_s, C_t.
        n_pairs: how many layer pairs (one shared projection; TinyBERT also shares W_h across layers).
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    def forward(
        self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """student[i] (B, T, C_s) and teacher[i] (B, T, C_t) are the i-th pair; mask (B, T) bool or None = all."""
        if len(student) != len(teacher) or not student:
            raise ValueError(f"hidden-state loss needs equal, non-empty lists, got {len(student)} and {len(teacher)}")
        losses = []
        for h_s, h_t in zip(student, teacher, strict=True):
            sq = (self.proj(h_s.float()) - h_t.detach().float()).pow(2).mean(-1)  # (B, T)
            losses.append(_masked_mean(sq, mask))
        return torch.stack(losses).mean()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, T, ...) `values` over the positions where mask (B, T) is True (all when None)."""
    if mask is None:
        return values.mean()
    while mask.dim() < values.dim():
        mask = mask.unsqueeze(-1)
    weights = mask.expand_as(values).to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1)


def attention_transfer_loss(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE between paired attention maps (TinyBERT eq. 7), averaged over pairs.

    student[i] is (B, H_s, T, S) and teacher[i] (B, H_t, T, S): compared head by head when H_s == H_t, else
    both are averaged over heads first ((B, 1, T, S) each). `mask` (B, T) selects the query positions.
    """
    if len(student) != len(teacher) or not student:
        raise ValueError(f"attention transfer needs equal, non-empty lists, got {len(student)} and {len(teacher)}")
    losses = []
    for a_s, a_t in zip(student, teacher, strict=True):
        if a_s.shape[-2:] != a_t.shape[-2:] or a_s.shape[0] != a_t.shape[0]:
            raise ValueError(f"attention maps {tuple(a_s.shape)} and {tuple(a_t.shape)} cover different positions")
        a_s, a_t = a_s.float(), a_t.detach().float()
        if a_s.shape[1] != a_t.shape[1]:
            a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
        sq = (a_s - a_t).pow(2).mean(-1).transpose(1, 2)  # (B, T, H)
        losses.append(_masked_mean(sq, mask))
    return torch.stack(losses).mean()


@contextmanager
def capture_layer_outputs(model: nn.Module, layer_ids: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the hidden states (B, T, C) that ``model.layers[i]`` returns for each i in `layer_ids`.

    Yields a dict filled during the forward passes made inside the ``with`` block (forward hooks, removed after).
    """
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for i in layer_ids:

        def hook(_module: nn.Module, _inputs: object, output: object, i: int = i) -> None:
            captured[i] = output[0] if isinstance(output, (tuple, list)) else output  # type: ignore[assignment]

        handles.append(model.layers[i].register_forward_hook(hook))  # type: ignore[index]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


class TopKCache:
    """Teacher logits cached on disk in top-k form: one safetensors file per shard of ``shard_batches`` batches.

    Layout of the folder: ``topk_cache.json`` ({k, vocab_size, n_batches, shard_batches, teacher, ...}) and
    ``shard_00000.safetensors``... each holding ``inputs`` (n, B, T) int32 (the batches' token ids, to check that
    training reads the batches the cache was made for), ``values`` (n, B, T, k) float16, ``indices`` (n, B, T, k)
    int32. Every file is written atomically (`llmlab.io.atomic_write`); the meta file last, so a folder with it
    is complete.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / CACHE_META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a complete teacher cache (no {CACHE_META}); rebuild it")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.k, self.n_batches = int(self.meta["k"]), int(self.meta["n_batches"])
        self.shard_batches = int(self.meta["shard_batches"])
        self._shard: tuple[int, dict[str, torch.Tensor]] | None = None

    @staticmethod
    def shard_path(folder: Path, shard: int) -> Path:
        return folder / f"shard_{shard:05d}.safetensors"

    @staticmethod
    def write(
        folder: str | Path,
        batches: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        *,
        k: int,
        vocab_size: int,
        shard_batches: int = 64,
        info: dict | None = None,
    ) -> TopKCache:
        """Write a cache from `batches`: (inputs (B, T), values (B, T, k), indices (B, T, k)) in training order."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        n, shard = 0, 0

        def flush() -> None:
            nonlocal shard, pending
            tensors = {
                "inputs": torch.stack([b[0] for b in pending]).to(torch.int32).contiguous(),
                "values": torch.stack([b[1] for b in pending]).to(torch.float16).contiguous(),
                "indices": torch.stack([b[2] for b in pending]).to(torch.int32).contiguous(),
            }
            atomic_write(TopKCache.shard_path(folder, shard), lambda tmp: save_file(tensors, str(tmp)))
            shard, pending = shard + 1, []

        for inputs, values, indices in batches:
            pending.append((inputs.cpu(), values.cpu(), indices.cpu()))
            n += 1
            if len(pending) == shard_batches:
                flush()
        if pending:
            flush()
        meta = {"k": int(k), "vocab_size": int(vocab_size), "n_batches": n, "shard_batches": shard_batches}
        atomic_write_json(folder / CACHE_META, {**meta, **(info or {})})
        return TopKCache(folder)

    def get(self, index: int, inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (B, T, k) float16, indices (B, T, k) int32) of batch `index`; checks `inputs` (B, T) match."""
        if not 0 <= index < self.n_batches:
            raise ValueError(
                f"the teacher cache {self.folder} holds {self.n_batches} batches, batch {index} was asked for; "
                "rebuild it for this train.max_iters * train.grad_accum"
            )
        shard, row = divmod(index, self.shard_batches)
        if self._shard is None or self._shard[0] != shard:
            self._shard = (shard, load_file(str(self.shard_path(self.folder, shard))))
        tensors = self._shard[1]
        if inputs is not None and not torch.equal(tensors["inputs"][row].long(), inputs.long().cpu()):
            raise ValueError(
                f"the teacher cache {self.folder} was made for other batches (batch {index} differs); rebuild it "
                "with the same data, train.batch_size, block size and train.seed/data_seed"
            )
        return tensors["values"][row], tensors["indices"][row]
