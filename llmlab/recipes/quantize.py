"""`llmlab quantize`: quantize a model's weights and write a folder that loads like any checkpoint.

    llmlab quantize --scheme int8 --out smollm2-int8                              # the packaged SmolLM2
    llmlab quantize --model runs/sft --scheme int4 --group-size 32 --asymmetric --out sft-int4
    llmlab quantize --scheme gptq-int4 --calibration shakespeare --out smollm2-gptq
    llmlab generate --checkpoint smollm2-int8 --prompt "Hello"                     # loads quantized

Schemes (`llmlab.compress.quant`): int8 (per channel), int4 (groups of 32/64/128, symmetric or min/max),
nf4 (QLoRA's NormalFloat-4), dynamic-int8 (int8 weights and per-token int8 activations), gptq-int4 (GPTQ,
https://arxiv.org/abs/2210.17323, calibrated on `--calibration-samples` windows of `--calibration-tokens`
tokens drawn from a corpus: a text/JSONL file, a folder, or a built-in corpus such as `shakespeare`).

Every input is checked before anything is loaded (scheme, group size, calibration source, output folder); a
group size that does not divide a layer's inputs is found right after loading, before anything is written.
The folder (`model_config.json`, `model.safetensors` of packed weights, `quantization.json`, the tokenizer
and chat template) is built beside `--out` and published with its `.llmlab-output` marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmlab.compress.quant import (
    check_scheme,
    is_quantized_folder,
    model_bytes,
    quantize,
    quantized_modules,
    save_quantized,
)
from llmlab.data.calibration import calibration_windows
from llmlab.data.sources import resolve_sources
from llmlab.hub import load_for_inference, resolve_source, save_tokenizer
from llmlab.io import building_output, check_output_dir


@dataclass
class QuantizeReport:
    """What `quantize_model` did."""

    source: str
    scheme: str
    group_size: int | None
    symmetric: bool
    layers: int
    bytes_before: int
    bytes_after: int
    calibration: str | None
    output: str


def quantize_model(
    model: str | Path | None,
    scheme: str,
    out: str | Path,
    *,
    group_size: int | None = None,
    symmetric: bool = True,
    calibration: str | None = None,
    calibration_samples: int = 32,
    calibration_tokens: int = 512,
    overwrite: bool = False,
    seed: int = 0,
) -> QuantizeReport:
    """Load `model` (None: the packaged SmolLM2), quantize it with `scheme` and write the folder `out`.

    Raises:
        ValueError / FileNotFoundError: one line naming the bad input, before anything is loaded or written.
    """
    if calibration is not None and scheme != "gptq-int4":
        raise ValueError(f"--calibration is only used by gptq-int4, not {scheme}; drop it")
    if not symmetric and scheme not in ("int4", "gptq-int4"):
        raise ValueError(f"--asymmetric applies to int4 and gptq-int4 only, not {scheme}")
    if calibration_samples <= 0 or calibration_tokens <= 1:
        raise ValueError("--calibration-samples must be >= 1 and --calibration-tokens >= 2")
    group_size = check_scheme(scheme, group_size, calibration)
    files = resolve_sources([calibration]) if calibration is not None else []
    source = resolve_source(model)
    if source.format == "llmlab" and is_quantized_folder(source.weights):
        raise ValueError(f"{source.label} is already quantized; pass the float model it was made from")
    check_output_dir(out, overwrite=overwrite, sources=[*source.inputs(), *(f.path for f in files)], flag="--out")

    loaded = load_for_inference(source)
    bytes_before = model_bytes(loaded.model)
    windows = (
        calibration_windows(files, loaded.tokenizer, calibration_samples, calibration_tokens, seed) if files else []
    )
    quantized = quantize(loaded.model, scheme, group_size=group_size, symmetric=symmetric, calibration=windows or None)
    with building_output(Path(out), "quantize") as tmp:
        save_quantized(quantized, tmp, scheme=scheme, group_size=group_size, symmetric=symmetric)
        save_tokenizer(loaded.tokenizer, tmp, loaded.chat_template)
    return QuantizeReport(
        source=loaded.source,
        scheme=scheme,
        group_size=group_size,
        symmetric=symmetric,
        layers=len(quantized_modules(quantized)),
        bytes_before=bytes_before,
        bytes_after=model_bytes(quantized),
        calibration=None if not files else f"{calibration_samples} x {calibration_tokens} tokens of {calibration}",
        output=str(out),
    )


def describe(report: QuantizeReport) -> str:
    """One line for the CLI: what was quantized, how, and the weight bytes before and after."""
    group = "per channel" if report.group_size is None else f"group {report.group_size}"
    kind = "" if report.symmetric else ", asymmetric"
    calibrated = f", calibrated on {report.calibration}" if report.calibration else ""
    return (
        f"quantized {report.layers} modules of {report.source} to {report.scheme} ({group}{kind}{calibrated}): "
        f"{report.bytes_before / 1e6:.1f} MB -> {report.bytes_after / 1e6:.1f} MB; wrote {report.output}"
    )
