"""`llmlab merge`: fold a LoRA / QLoRA / (IA)^3 adapter into its base model and export it.

    llmlab merge --adapter runs/sft/adapter --out merged/                     # base from adapter_config.json
    llmlab merge --base model.gguf --adapter runs/sft/adapter --out merged.gguf --format gguf --dtype q8_0

Merging computes `W' = W + (alpha / r) * B A` (LoRA, https://arxiv.org/abs/2106.09685) or `W' = W * l`
((IA)^3, https://arxiv.org/abs/2205.05638) for every adapted layer (`llmlab.hub.fold_adapter`), so the
merged model computes the adapter model's function with no extra cost at inference. Prefix/prompt tuning and
bottleneck adapters add computation that no weight can absorb; they cannot be merged.

The adapter and its base are resolved and loaded by `llmlab.hub` (any base it knows: llmlab, Hugging Face,
GGUF, a run folder; a base without a tokenizer is fine: the adapter run's tokenizer is used, else only the
weights are written). The output goes through `llmlab convert`'s writer and output policy (`llmlab` / `hf`
folders or a `.gguf` file; checked before anything is loaded, built in a temporary path, published with the
`.llmlab-output` marker; `--overwrite` replaces only an output llmlab made, never an input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.hub import fold_adapter, load_for_inference, require_mergeable, resolve_source
from llmlab.recipes.convert import check_output, output_format_for, write_model

FORMATS = ("llmlab", "hf", "gguf")
DTYPES = ("f32", "f16", "bf16", "q8_0")


@dataclass
class MergeReport:
    """What `merge` did."""

    base: str
    adapter: str
    peft_type: str
    merged_layers: int
    output: str
    output_format: str
    dtype: str
    notes: list[str] = field(default_factory=list)


def merge(
    adapter: str | Path,
    out: str | Path,
    base: str | None = None,
    out_format: str | None = None,
    dtype: str = "f32",
    overwrite: bool = False,
) -> MergeReport:
    """Load `base`, load the adapter onto it, merge, and write the merged model to `out`.

    Args:
        adapter: the adapter folder (`adapter_config.json` + `adapter_model.safetensors`), or a `llmlab
            finetune` run folder holding `adapter/`.
        out: output folder (llmlab, hf) or `.gguf` file.
        base: the base model path; None = the one recorded in the adapter ("SmolLM2-135M-Instruct" = the
            packaged SmolLM2; a relative path is looked up beside the adapter first, then from here).
        out_format: llmlab | hf | gguf (default: gguf if `out` ends in .gguf, else llmlab).
        dtype: f32 | f16 | bf16 (llmlab only) | q8_0 (gguf only).
        overwrite: replace an existing `out` that llmlab wrote.

    Raises:
        ValueError: an adapter made for another base, one that cannot be merged, a bad format/dtype or an
            `out` that may not be written. FileNotFoundError: missing files.
    """
    out = Path(out)
    out_format, dtype = output_format_for(out, out_format, dtype)
    if dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if dtype == "bf16" and out_format != "llmlab":
        raise ValueError("--dtype bf16 is only written to llmlab folders; use f16 or f32 for hf/gguf")
    if not Path(adapter).is_dir():
        raise FileNotFoundError(f"adapter folder not found: {adapter}; pass the adapter/ folder of a finetune run")
    source = resolve_source(Path(adapter), base=base)
    if source.adapter_dir is None:
        raise FileNotFoundError(
            f"{Path(adapter) / 'adapter_config.json'} not found; pass a folder written by `llmlab finetune` (or peft)"
        )
    peft_type = require_mergeable(source.adapter_dir)
    check_output(out, out_format, source, overwrite, flag="--out")

    loaded = load_for_inference(source, require_tokenizer=False)
    loaded.model, n_layers = fold_adapter(loaded.model)
    write_model(loaded, out, out_format, dtype, verb="merge")
    notes = [source.note] if source.note else []
    if loaded.tokenizer is None:
        notes.append("neither the adapter's run nor the base has a tokenizer.json; only the weights were written")
    assert source.base is not None
    return MergeReport(
        base=source.base.label,
        adapter=str(adapter),
        peft_type=peft_type,
        merged_layers=n_layers,
        output=str(out),
        output_format=out_format,
        dtype=dtype,
        notes=notes,
    )


def describe(report: MergeReport) -> str:
    """The lines for the CLI: what was merged and written, then one `note:` line per note."""
    line = (
        f"merged {report.merged_layers} {report.peft_type} layer(s) of {report.adapter} into {report.base}; "
        f"wrote {report.output} ({report.output_format}, {report.dtype})"
    )
    return "\n".join([line, *(f"note: {note}" for note in report.notes)])


__all__: list[Any] = ["MergeReport", "describe", "merge"]
