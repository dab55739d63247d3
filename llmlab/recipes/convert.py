"""Convert checkpoints between llmlab, Hugging Face and GGUF (llama.cpp) formats, tokenizer included.

    llmlab convert --from SmolLM2-135M-Instruct.Q4_1.gguf --to smollm2/            # -> llmlab folder
    llmlab convert --from smollm2/ --to smollm2-hf/ --format hf                    # -> transformers folder
    llmlab convert --from smollm2-hf/ --to smollm2-q8.gguf --dtype q8_0            # -> llama.cpp file
    llmlab convert --from runs/shakespeare-char --to shakespeare-hf --format hf    # a pretrain run folder
    llmlab convert --from runs/sft --to sft-merged                                 # a LoRA run: merged first

The source is anything `llmlab.hub` loads: an llmlab, Hugging Face or GGUF checkpoint, a `llmlab pretrain` or
`llmlab finetune` run folder, or an adapter (LoRA/QLoRA/IA3 adapters are folded into their base first, as
`llmlab merge` does; prefix/prompt/bottleneck adapters cannot be and are refused with a one-line error).

What moves along:
- the weights (dequantised to float32 when read from a quantised GGUF; stored as `dtype` when written),
- the tokenizer: from GGUF metadata it is rebuilt as a `tokenizer.json` (`llmlab.tokenizers.gguf`); from a
  folder its `tokenizer.json` is copied. Into GGUF it is written as `tokenizer.ggml.*` metadata (byte-level
  BPE), or copied verbatim when the source was a GGUF file itself,
- the chat template: `tokenizer_config.json["chat_template"]` in folders, `tokenizer.chat_template` in GGUF.

Outputs follow the output-folder policy of `llmlab.io.outputs`, checked before anything is loaded: a folder
is built in a temporary sibling and published with its `.llmlab-output` marker; `--overwrite` replaces only a
folder llmlab made, never a foreign non-empty folder nor one that is, contains or lies inside an input. A
`.gguf` output is written atomically; `--overwrite` replaces only an existing GGUF file that is not an input.
A failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmlab.compress.quant import dequantize_model
from llmlab.hub import LoadedModel, Source, fold_adapter, load_for_inference, require_mergeable, resolve_source
from llmlab.hub import save_tokenizer as save_tokenizer_files
from llmlab.io import atomic_write, building_output, check_output_dir, check_output_file
from llmlab.models import save_gguf, save_hf, save_llmlab

FORMATS = ("llmlab", "hf", "gguf")
DTYPES = ("f32", "f16", "q8_0")
_TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
GGUF_MAGIC = b"GGUF"
# tokenizers' pre-tokenizer (as JSON) -> `tokenizer.ggml.pre` name understood by llama.cpp and llmlab's reader.
_TOKEN_TYPE_NORMAL, _TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER, _TOKEN_TYPE_UNUSED = 1, 3, 4, 5


@dataclass
class ConvertReport:
    """What `convert` did."""

    source: str
    source_format: str
    output: str
    output_format: str
    family: str
    dtype: str
    num_parameters: int
    tokenizer: bool
    chat_template: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def output_format_for(dst: Path, out_format: str | None, dtype: str, flag: str = "--format") -> tuple[str, str]:
    """Check and default the output format ("gguf" for `*.gguf`, else "llmlab") and dtype: (format, dtype)."""
    out_format = out_format or ("gguf" if dst.suffix == ".gguf" else "llmlab")
    if out_format not in FORMATS:
        raise ValueError(f"unknown output format {out_format!r}; choose one of: {', '.join(FORMATS)} ({flag})")
    dtype = dtype.lower()
    if dtype == "q8_0" and out_format != "gguf":
        raise ValueError("dtype q8_0 is a GGUF quantisation; use --format gguf, or f32/f16 for folders")
    return out_format, dtype


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    out_format: str | None = None,
    dtype: str = "f32",
    *,
    overwrite: bool = False,
    with_tokenizer: bool = True,
) -> ConvertReport:
    """Convert the checkpoint at `src` into `dst`.

    Args:
        src: anything `llmlab.hub.resolve_source` accepts: llmlab / HF folder, `.gguf` file, a pretrain or
            finetune run folder, an adapter folder (LoRA/QLoRA/IA3: merged into its base first).
        dst: output folder (llmlab, hf) or `.gguf` file.
        out_format: "llmlab" | "hf" | "gguf"; default: "gguf" if `dst` ends in `.gguf`, else "llmlab".
        dtype: "f32" | "f16" (any format) or "q8_0" (GGUF only).
        overwrite: replace an existing `dst` that llmlab wrote (never a foreign folder or an input).
        with_tokenizer: carry the tokenizer along when the source has one; False writes weights only.

    Raises:
        ValueError / FileNotFoundError: one line naming the problem (unknown architecture, corrupt input,
            a destination that may not be replaced, an adapter that cannot be merged, ...).
    """
    t0 = time.perf_counter()
    dst = Path(dst)
    out_format, dtype = output_format_for(dst, out_format, dtype)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    source = resolve_source(Path(src))
    if source.adapter_dir is not None:
        require_mergeable(source.adapter_dir)
    check_output(dst, out_format, source, overwrite, flag="--to")

    loaded = load_for_inference(source, require_tokenizer=False, with_tokenizer=with_tokenizer)
    notes = [source.note] if source.note else []
    if source.adapter_dir is not None:
        loaded.model, n_layers = fold_adapter(loaded.model)
        notes.append(f"merged the adapter {source.adapter_dir} ({n_layers} layers) into its base, as llmlab merge does")
    if with_tokenizer and loaded.tokenizer is None:
        notes.append("the source has no tokenizer; only the weights were converted")
    write_model(loaded, dst, out_format, dtype, verb="convert")
    return ConvertReport(
        source=str(source.weights) if source.adapter_dir is None else loaded.source,
        source_format=source.format if source.adapter_dir is None else f"{source.format} + adapter",
        output=str(dst),
        output_format=out_format,
        family=loaded.family or "",
        dtype=dtype,
        num_parameters=sum(p.numel() for p in loaded.model.parameters()),
        tokenizer=loaded.tokenizer is not None,
        chat_template=bool(loaded.tokenizer is not None and loaded.chat_template),
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------------- output


def check_output(dst: Path, out_format: str, source: Source, overwrite: bool, flag: str) -> None:
    """The output policy for a converted/merged model, checked before anything is loaded (ValueError: one line)."""
    if out_format != "gguf":
        check_output_dir(dst, overwrite=overwrite, sources=source.inputs(), flag=flag)
        return
    check_output_file(dst, overwrite=overwrite, sources=source.inputs(), flag=flag, magic=GGUF_MAGIC)


def write_model(loaded: LoadedModel, dst: Path, out_format: str, dtype: str, verb: str) -> None:
    """Write `loaded` (model, and tokenizer + chat template when present) to `dst` as `out_format`/`dtype`.

    Call `check_output` first. A folder is built beside `dst` and published with `verb`'s output marker; a
    `.gguf` file is written atomically. On any error nothing is left behind.
    """
    model = dequantize_model(loaded.model)  # a quantized model (llmlab quantize) is written in float
    if out_format == "gguf":
        extra, types = ({}, {})
        if loaded.tokenizer is not None:
            extra, types = _gguf_tokenizer_metadata(loaded, model.config.vocab_size)
        atomic_write(dst, lambda tmp: save_gguf(model, tmp, dtype.upper(), extra, types))
        return
    with building_output(dst, verb) as tmp:
        torch_dtype = _TORCH_DTYPES[dtype]
        if out_format == "hf":
            # The tokenizer's bos/eos/pad ids go into config.json (GPT-2 exports have none of their own, and
            # transformers would fall back to 50256 and never stop at the tokenizer's end-of-text).
            save_hf(model, tmp, torch_dtype, token_ids=special_token_ids_of(loaded.tokenizer))
        else:
            save_llmlab(model, tmp, torch_dtype)
        if loaded.tokenizer is not None:
            save_tokenizer_files(loaded.tokenizer, tmp, loaded.chat_template)


def special_token_ids_of(tokenizer: Any) -> dict[str, int]:
    """{"bos_token_id", "eos_token_id", "pad_token_id"} of a tokenizer (the roles it has), for exported configs."""
    if tokenizer is None:
        return {}
    ids = {f"{role}_token_id": getattr(tokenizer, f"{role}_id", None) for role in ("bos", "eos", "pad")}
    return {key: int(value) for key, value in ids.items() if value is not None}


# ---------------------------------------------------------------------------------------------------- tokenizer


def _pre_tokenizer_name(pre: Mapping[str, Any] | None) -> str:
    """Name the `tokenizers` pre-tokenizer for `tokenizer.ggml.pre` (ValueError if GGUF has no equivalent)."""
    from llmlab.tokenizers.gguf import PRE_TOKENIZERS

    def is_byte_level(p: Mapping[str, Any], use_regex: bool) -> bool:
        return p.get("type") == "ByteLevel" and bool(p.get("use_regex", True)) == use_regex

    if pre and is_byte_level(pre, True) and not pre.get("add_prefix_space", False):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else []
    if len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits"):
        if is_byte_level(steps[1], True):
            return "smollm"
    if len(steps) == 2 and steps[0].get("type") == "Split" and is_byte_level(steps[1], False):
        regex = steps[0].get("pattern", {}).get("Regex")
        for name in ("llama-bpe", "qwen2", "gpt-4o"):
            built = json.loads(_pre_json(PRE_TOKENIZERS[name]()))
            if built["pretokenizers"][0]["pattern"].get("Regex") == regex:
                return name
    raise ValueError(
        "this tokenizer's pre-tokenizer has no GGUF equivalent (llmlab writes byte-level BPE tokenizers with the "
        "GPT-2, SmolLM or Llama-3 splitting); pass --no-tokenizer to write the weights only"
    )


def _pre_json(pre: Any) -> str:
    from tokenizers import Tokenizer, models

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre
    return json.dumps(json.loads(t.to_str())["pre_tokenizer"])


def _gguf_tokenizer_metadata(loaded: LoadedModel, vocab_size: int) -> tuple[dict[str, Any], dict[str, str]]:
    """GGUF `tokenizer.*` metadata (+ forced types) for a tokenizer; a GGUF source's own keys are reused as is."""
    if loaded.gguf_tokenizer is not None:
        return loaded.gguf_tokenizer
    t = loaded.tokenizer
    spec = json.loads(t.backend.to_str())
    model = spec["model"]
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ValueError(
            f"only byte-level BPE tokenizers can be written to GGUF by llmlab, this one is {model.get('type')}; "
            "pass --no-tokenizer to write the weights only"
        )
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer"))
    vocab = t.backend.get_vocab(with_added_tokens=True)
    n = max(vocab_size, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [_TOKEN_TYPE_UNUSED] * n
    for piece, idx in vocab.items():
        tokens[idx], types[idx] = piece, _TOKEN_TYPE_NORMAL
    for added in spec.get("added_tokens", []):
        types[added["id"]] = _TOKEN_TYPE_CONTROL if added.get("special") else _TOKEN_TYPE_USER
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    post = json.dumps(spec.get("post_processor") or {})
    md: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.add_bos_token": t.bos_id is not None and t.special_tokens.get("bos", "") in post,
        "tokenizer.ggml.add_eos_token": False,
    }
    if merges:
        md["tokenizer.ggml.merges"] = merges
    for role, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"), ("unk", "unknown")):
        idx = getattr(t, f"{role}_id")
        if idx is not None:
            md[f"tokenizer.ggml.{key}_token_id"] = idx
    if loaded.chat_template:
        md["tokenizer.chat_template"] = loaded.chat_template
    return md, {"tokenizer.ggml.token_type": "ARRAY[INT32]"}
