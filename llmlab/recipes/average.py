"""`llmlab average`: average the weights of several checkpoints of one architecture (a model soup).

    llmlab average runs/a runs/b runs/c --out soup/                          # uniform soup of three runs
    llmlab average ft1/ ft2/ --out soup/ --weights 0.7,0.3                   # weighted (normalised to sum 1)
    llmlab average runs/a/checkpoints/last runs/a/checkpoints/last/ema --out mix/

The uniform soup of Wortsman et al. 2022 (https://arxiv.org/abs/2203.05482): ``theta = sum_i w_i theta_i`` with
``w_i = 1/n`` (or the given weights). It helps when the checkpoints share an initialisation (fine-tunes of one
base, checkpoints or the EMA of one run, `train.ema_decay`); averaging independently initialised models usually
gives a much worse model. `llmlab.eval.ensemble.average_state_dicts` does the arithmetic.

Every input is anything `llmlab.hub` loads as a whole model (llmlab / Hugging Face folder, `.gguf`, a pretrain or
finetune run folder); adapters are refused (merge them first with `llmlab merge`). All inputs must have the same
family and architecture (config) and, when they have tokenizers, the same tokenizer: the first that differs is
named in a one-line ValueError, raised before anything is written. The output is written like `llmlab convert`
writes (`llmlab.recipes.convert.write_model`: weights, the first input's tokenizer and chat template, the
`.llmlab-output` marker) in the inputs' format when they all share the llmlab or hf format (else llmlab; a
`.gguf` output or ``--format`` chooses), so every verb loads it. The output policy (`llmlab.io`) is checked
before anything is loaded: only an earlier llmlab output is replaced (``--overwrite``), never an input.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmlab.eval.ensemble import average_state_dicts
from llmlab.hub import LoadedModel, Source, load_for_inference, resolve_source
from llmlab.io import check_output_dir, check_output_file
from llmlab.recipes.convert import DTYPES, GGUF_MAGIC, output_format_for, write_model


@dataclass
class AverageReport:
    """What `average` did."""

    inputs: list[str]
    weights: list[float]
    output: str
    output_format: str
    dtype: str
    family: str
    num_parameters: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def parse_weights(text: str | None, n: int) -> list[float]:
    """``"0.7,0.3"`` -> ``[0.7, 0.3]`` normalised to sum 1 (None: uniform); ValueError naming ``--weights``."""
    if text is None:
        return [1.0 / n] * n
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--weights must be comma-separated numbers like 0.7,0.3, got {text!r}") from None
    if len(weights) != n:
        raise ValueError(f"--weights has {len(weights)} values for {n} checkpoints; give one weight per checkpoint")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--weights must be finite, >= 0 and not all 0, got {text!r}")
    return [w / sum(weights) for w in weights]


def _sources(checkpoints: list[str | Path]) -> list[Source]:
    """Resolve every input (FileNotFoundError naming a missing one); adapters are refused."""
    sources = []
    for ckpt in checkpoints:
        source = resolve_source(Path(ckpt))
        if source.adapter_dir is not None:
            raise ValueError(
                f"{ckpt} is an adapter; merge it into its base first (llmlab merge --adapter {ckpt} --out DIR) "
                "and average the merged models"
            )
        sources.append(source)
    return sources


def _tokenizer_text(loaded: LoadedModel) -> str | None:
    backend = getattr(loaded.tokenizer, "backend", None)
    return backend.to_str() if backend is not None else None


def _state_dicts(first: LoadedModel, sources: list[Source], names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Each input's state dict, loaded one at a time and checked against the first (ValueError naming it)."""
    arch, tokenizer = (first.family, first.model.config.resolved()), _tokenizer_text(first)
    yield first.model.state_dict()
    for source, name in zip(sources[1:], names[1:], strict=True):
        loaded = load_for_inference(source, require_tokenizer=False)
        if (loaded.family, loaded.model.config.resolved()) != arch:
            raise ValueError(
                f"{name} has another architecture than {names[0]} ({loaded.family} {loaded.model.config} vs "
                f"{first.family} {first.model.config}); average checkpoints of one model"
            )
        other = _tokenizer_text(loaded)
        if tokenizer is not None and other is not None and other != tokenizer:
            raise ValueError(f"{name} has another tokenizer than {names[0]}; average checkpoints of one model")
        yield loaded.model.state_dict()


def average(
    checkpoints: list[str | Path],
    out: str | Path,
    weights: str | None = None,
    out_format: str | None = None,
    dtype: str = "f32",
    *,
    overwrite: bool = False,
) -> AverageReport:
    """Average `checkpoints` (uniformly, or by `weights` = ``"w1,w2,..."``) into `out`.

    Raises:
        ValueError / FileNotFoundError: one line naming the input or option (fewer than two checkpoints, bad
            weights, an adapter, another architecture or tokenizer, an output that may not be written).
    """
    t0 = time.perf_counter()
    if len(checkpoints) < 2:
        raise ValueError("give at least two checkpoints to average (llmlab average CKPT CKPT ... --out DIR)")
    out, names = Path(out), [str(c) for c in checkpoints]
    ws = parse_weights(weights, len(checkpoints))
    sources = _sources(checkpoints)
    formats = {s.format for s in sources}
    default = formats.pop() if len(formats) == 1 and formats <= {"llmlab", "hf"} else "llmlab"
    out_format, dtype = output_format_for(out, out_format or (None if out.suffix == ".gguf" else default), dtype)
    if dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    inputs = [p for s in sources for p in s.inputs()]
    if out_format == "gguf":
        check_output_file(out, overwrite=overwrite, sources=inputs, flag="--out", magic=GGUF_MAGIC)
    else:
        check_output_dir(out, overwrite=overwrite, sources=inputs, flag="--out")

    first = load_for_inference(sources[0], require_tokenizer=False)
    soup = average_state_dicts(_state_dicts(first, sources, names), ws)
    first.model.load_state_dict(soup)
    write_model(first, out, out_format, dtype, verb="average")
    notes = [] if first.tokenizer is not None else [f"{names[0]} has no tokenizer; only the weights were written"]
    return AverageReport(
        inputs=names,
        weights=ws,
        output=str(out),
        output_format=out_format,
        dtype=dtype,
        family=first.family or "",
        num_parameters=sum(p.numel() for p in first.model.parameters()),
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def describe(report: AverageReport) -> str:
    """The CLI's lines: what was averaged with which weights, and where it went."""
    parts = ", ".join(f"{name} x {w:.3g}" for name, w in zip(report.inputs, report.weights, strict=True))
    line = (
        f"averaged {len(report.inputs)} {report.family} checkpoints ({report.num_parameters:,} parameters): {parts}; "
        f"wrote {report.output} ({report.output_format}, {report.dtype}) in {report.seconds:.1f}s"
    )
    return "\n".join([line, *(f"note: {note}" for note in report.notes)])


__all__: list[Any] = ["AverageReport", "average", "describe", "parse_weights"]
