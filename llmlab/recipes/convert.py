"""Convert checkpoints between llmlab, Hugging Face and GGUF (llama.cpp) formats, tokenizer included.

    llmlab convert --from SmolLM2-135M-Instruct.Q4_1.gguf --to smollm2/            # -> llmlab folder
    llmlab convert --from smollm2/ --to smollm2-hf/ --format hf                    # -> transformers folder
    llmlab convert --from smollm2-hf/ --to smollm2-q8.gguf --dtype q8_0            # -> llama.cpp file

What moves along:
- the weights (dequantised to float32 when read from a quantised GGUF; stored as `dtype` when written),
- the tokenizer: from GGUF metadata it is rebuilt as a `tokenizer.json` (`llmlab.tokenizers.gguf`); from a
  folder its `tokenizer.json` is copied. Into GGUF it is written as `tokenizer.ggml.*` metadata (byte-level
  BPE), or copied verbatim when the source was a GGUF file itself,
- the chat template: `tokenizer_config.json["chat_template"]` in folders, `tokenizer.chat_template` in GGUF.

Outputs are built in a temporary sibling path and renamed at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmlab.io.gguf import GGUFFile, read_gguf
from llmlab.models import detect_format, load_gguf_model, load_model, model_family, save_gguf, save_hf, save_llmlab

FORMATS = ("llmlab", "hf", "gguf")
DTYPES = ("f32", "f16", "q8_0")
_TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
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
        src: llmlab folder (`model_config.json`), HF folder (`config.json`) or `.gguf` file.
        dst: output folder (llmlab, hf) or `.gguf` file.
        out_format: "llmlab" | "hf" | "gguf"; default: "gguf" if `dst` ends in `.gguf`, else "llmlab".
        dtype: "f32" | "f16" (any format) or "q8_0" (GGUF only).
        overwrite: replace an existing `dst`.
        with_tokenizer: carry the tokenizer along (error if it cannot be); False writes weights only.

    Raises:
        ValueError / FileNotFoundError: one line naming the problem (unknown architecture, corrupt input, ...).
    """
    t0 = time.perf_counter()
    dst = Path(dst)
    out_format = out_format or ("gguf" if dst.suffix == ".gguf" else "llmlab")
    if out_format not in FORMATS:
        raise ValueError(f"unknown output format {out_format!r}; choose one of: {', '.join(FORMATS)}")
    dtype = dtype.lower()
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if dtype == "q8_0" and out_format != "gguf":
        raise ValueError("dtype q8_0 is a GGUF quantisation; use --format gguf, or f32/f16 for folders")
    if dst.exists() and not overwrite:
        raise ValueError(f"{dst} already exists; choose another --to or pass --overwrite")
    src_format, src_path = detect_format(src)
    if src_path.resolve() == dst.resolve():
        raise ValueError("--from and --to are the same path; write the conversion somewhere else")

    # ---- read
    gguf_file: GGUFFile | None = None
    if src_format == "gguf":
        gguf_file = read_gguf(src_path)
        model = load_gguf_model(gguf_file)
    else:
        model = load_model(src_path)
    family = model_family(model)
    tok = _read_tokenizer(src_format, src_path, gguf_file) if with_tokenizer else None
    notes: list[str] = []
    if with_tokenizer and tok is None:
        notes.append("the source has no tokenizer; only the weights were converted")

    # ---- write (into a temporary sibling, renamed at the end)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if out_format == "gguf":
        extra, types = ({}, {})
        if tok is not None:
            extra, types = _gguf_tokenizer_metadata(tok, model.config.vocab_size)
        tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-"))
        try:
            save_gguf(model, tmp / "model.gguf", dtype.upper(), extra, types)
            os.chmod(tmp / "model.gguf", 0o644)
            replace_output(tmp / "model.gguf", dst, overwrite)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-"))
        try:
            torch_dtype = _TORCH_DTYPES[dtype]
            if out_format == "hf":
                save_hf(model, tmp, torch_dtype)
            else:
                save_llmlab(model, tmp, torch_dtype)
            if tok is not None:
                _write_tokenizer(tok, tmp)
            os.chmod(tmp, 0o755)  # mkdtemp creates 0700
            replace_output(tmp, dst, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return ConvertReport(
        source=str(src_path),
        source_format=src_format,
        output=str(dst),
        output_format=out_format,
        family=family,
        dtype=dtype,
        num_parameters=sum(p.numel() for p in model.parameters()),
        tokenizer=tok is not None,
        chat_template=bool(tok and tok.get("chat_template")),
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def replace_output(tmp: Path, dst: Path, overwrite: bool, out_flag: str = "--to") -> None:
    """Move the finished `tmp` (file or folder) to `dst`, replacing an old `dst` only when asked (else a
    ValueError naming `out_flag`, the command's output option)."""
    if dst.exists():
        if not overwrite:
            raise ValueError(f"{dst} already exists; choose another {out_flag} or pass --overwrite")
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, dst)


# ---------------------------------------------------------------------------------------------------- tokenizer


def _read_tokenizer(src_format: str, src: Path, gguf_file: GGUFFile | None) -> dict[str, Any] | None:
    """The source's tokenizer as {"tokenizer": llmlab Tokenizer, "chat_template": str | None, "gguf": metadata}."""
    if gguf_file is not None:
        md = gguf_file.metadata
        if "tokenizer.ggml.tokens" not in md:
            return None
        from llmlab.tokenizers.gguf import load_gguf_tokenizer

        keep = {k: v for k, v in md.items() if k.startswith("tokenizer.")}
        types = {k: gguf_file.metadata_types[k] for k in keep if k in gguf_file.metadata_types}
        return {
            "tokenizer": load_gguf_tokenizer(md),
            "chat_template": md.get("tokenizer.chat_template"),
            "gguf": (keep, types),
        }
    if not (src / "tokenizer.json").is_file():
        return None
    from llmlab.tokenizers import load_tokenizer

    template = None
    sidecar = src / "tokenizer_config.json"
    if sidecar.is_file():
        try:
            template = json.loads(sidecar.read_text(encoding="utf-8")).get("chat_template")
        except json.JSONDecodeError as e:
            raise ValueError(f"{sidecar} is not valid JSON ({e})") from None
    return {"tokenizer": load_tokenizer(src / "tokenizer.json"), "chat_template": template, "gguf": None}


def _write_tokenizer(tok: dict[str, Any], directory: Path) -> None:
    """`tokenizer.json` + `tokenizer_config.json` (roles, chat template) into `directory`."""
    tok["tokenizer"].save(directory)
    if tok.get("chat_template"):
        sidecar = directory / "tokenizer_config.json"
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        meta["chat_template"] = tok["chat_template"]
        sidecar.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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


def _gguf_tokenizer_metadata(tok: dict[str, Any], vocab_size: int) -> tuple[dict[str, Any], dict[str, str]]:
    """GGUF `tokenizer.*` metadata (+ forced types) for a tokenizer; a GGUF source's own keys are reused as is."""
    if tok.get("gguf") is not None:
        return tok["gguf"]
    t = tok["tokenizer"]
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
    if tok.get("chat_template"):
        md["tokenizer.chat_template"] = tok["chat_template"]
    return md, {"tokenizer.ggml.token_type": "ARRAY[INT32]"}
