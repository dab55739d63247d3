"""`llmlab merge`: fold a LoRA / QLoRA / (IA)^3 adapter into its base model and export it.

    llmlab merge --adapter runs/sft/adapter --out merged/                     # base from adapter_config.json
    llmlab merge --base model.gguf --adapter runs/sft/adapter --out merged.gguf --format gguf --dtype q8_0

Merging computes `W' = W + (alpha / r) * B A` (LoRA, https://arxiv.org/abs/2106.09685) or `W' = W * l`
((IA)^3, https://arxiv.org/abs/2205.05638) for every adapted layer (`llmlab.peft.merge_and_unload`), so the
merged model computes the adapter model's function with no extra cost at inference. Prefix/prompt tuning and
bottleneck adapters add computation that no weight can absorb; they cannot be merged.

The output goes through the converters of `llmlab convert` (`llmlab` / `hf` folders or a `.gguf` file), with
the base model's tokenizer and chat template, and is written to a temporary path first.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmlab.recipes.finetune import DEFAULT_BASE_NAME, write_tokenizer

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
        adapter: the adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
        out: output folder (llmlab, hf) or `.gguf` file.
        base: the base model path; None = the one recorded in the adapter ("SmolLM2-135M-Instruct" = the
            packaged SmolLM2).
        out_format: llmlab | hf | gguf (default: gguf if `out` ends in .gguf, else llmlab).
        dtype: f32 | f16 | bf16 (llmlab only) | q8_0 (gguf only).
        overwrite: replace an existing `out`.

    Raises:
        ValueError: an adapter made for another base, one that cannot be merged, a bad format/dtype or an
            existing `out`. FileNotFoundError: missing files.
    """
    import torch

    from llmlab.generate.checkpoint import adapter_base_path, load_for_inference
    from llmlab.models import save_llmlab
    from llmlab.peft import load_adapter, merge_and_unload, read_adapter
    from llmlab.peft.model import peft_layers

    out = Path(out)
    out_format = out_format or ("gguf" if out.suffix == ".gguf" else "llmlab")
    if out_format not in FORMATS:
        raise ValueError(f"unknown --format {out_format!r}; choose one of: {', '.join(FORMATS)}")
    dtype = dtype.lower()
    if dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if dtype == "q8_0" and out_format != "gguf":
        raise ValueError("--dtype q8_0 is a GGUF quantisation; use --format gguf, or f32/f16 for folders")
    if dtype == "bf16" and out_format != "llmlab":
        raise ValueError("--dtype bf16 is only written to llmlab folders; use f16 or f32 for hf/gguf")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; choose another --out or pass --overwrite")
    config, _, _ = read_adapter(adapter)  # FileNotFoundError / ValueError for a broken adapter folder
    if config.peft_type not in ("LORA", "IA3"):
        raise ValueError(
            f"{adapter} holds a {config.peft_type} adapter; only LoRA, QLoRA and IA3 adapters can be merged "
            "into the weights"
        )
    base_path = base if base is not None else adapter_base_path(adapter)
    loaded = load_for_inference(base_path)
    model = loaded.model
    load_adapter(model, adapter)  # checks the adapter was made for this base
    n_layers = sum(1 for _ in peft_layers(model))
    model = merge_and_unload(model).eval()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        folder = tmp / "merged"
        torch_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(dtype) if out_format == "llmlab" else None
        save_llmlab(model, folder, torch_dtype)
        write_tokenizer(loaded.tokenizer, folder, loaded.chat_template)
        if out_format == "llmlab":
            _replace(folder, out, overwrite)
        else:
            from llmlab.recipes.convert import convert

            convert(folder, tmp / "converted", out_format, dtype)
            _replace(tmp / "converted", out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return MergeReport(
        base=base_path or DEFAULT_BASE_NAME,
        adapter=str(adapter),
        peft_type=config.peft_type,
        merged_layers=n_layers,
        output=str(out),
        output_format=out_format,
        dtype=dtype,
    )


def _replace(src: Path, dst: Path, overwrite: bool) -> None:
    """`replace_output` with merge's option name; a merged folder is made readable by all (mkdtemp is 0700)."""
    from llmlab.recipes.convert import replace_output

    replace_output(src, dst, overwrite, out_flag="--out")
    if dst.is_dir():
        dst.chmod(0o755)


def describe(report: MergeReport) -> str:
    """One line for the CLI."""
    return (
        f"merged {report.merged_layers} {report.peft_type} layer(s) of {report.adapter} into {report.base}; "
        f"wrote {report.output} ({report.output_format}, {report.dtype})"
    )


__all__: list[Any] = ["MergeReport", "describe", "merge"]
