"""Load any supported checkpoint by what it is, and write models in other formats.

`load_model(path)` looks at what `path` holds and picks the family:

| path holds                                  | decided by                                  | family            |
|---------------------------------------------|---------------------------------------------|-------------------|
| `model_config.json` (llmlab save_pretrained) | its `"family"` key (absent = `"gpt"`)       | GPT or Llama      |
| `config.json` (Hugging Face save_pretrained) | `architectures` / `model_type`              | GPT-2 or Llama    |
| a `.gguf` file (or a folder with exactly one) | `general.architecture`                      | GPT-2 or Llama    |

An architecture llmlab does not implement is a ValueError that names it and lists the supported ones.
The writers (`save_hf`, `save_gguf`) dispatch on the model's class. GPT-2 conversion here is the inverse of
`llmlab.models.gpt.hf` (HF GPT-2 stores `Conv1D` weights transposed relative to `nn.Linear`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

# HF `architectures[0]` / `model_type` -> llmlab family.
HF_ARCHITECTURES = {"GPT2LMHeadModel": "gpt", "LlamaForCausalLM": "llama"}
HF_MODEL_TYPES = {"gpt2": "gpt", "llama": "llama"}
GGUF_ARCHITECTURES = {"gpt2": "gpt", "llama": "llama"}
FAMILIES = ("gpt", "llama")

# nn.Linear weights that HF GPT-2 stores transposed (Conv1D).
_GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _supported() -> str:
    return (
        f"supported: llmlab families {', '.join(FAMILIES)}; HF architectures {', '.join(HF_ARCHITECTURES)}; "
        f"GGUF architectures {', '.join(GGUF_ARCHITECTURES)}"
    )


def detect_format(path: str | os.PathLike) -> tuple[str, Path]:
    """What kind of checkpoint `path` is: ("llmlab" | "hf" | "gguf", the folder or file to read).

    Raises:
        FileNotFoundError: nothing there, or a folder without any known checkpoint file.
        ValueError: a folder with several `.gguf` files (ambiguous).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if p.is_file():
        if p.suffix == ".gguf":
            return "gguf", p
        p = p.parent  # e.g. the path of config.json or model.safetensors
    if (p / "model_config.json").is_file():
        return "llmlab", p
    if (p / "config.json").is_file():
        return "hf", p
    ggufs = sorted(p.glob("*.gguf"))
    if len(ggufs) == 1:
        return "gguf", ggufs[0]
    if len(ggufs) > 1:
        raise ValueError(f"{p} holds several .gguf files ({', '.join(g.name for g in ggufs)}); pass one of them")
    raise FileNotFoundError(
        f"{p} is not a checkpoint: expected model_config.json (llmlab), config.json (Hugging Face) or a .gguf file"
    )


def hf_family(hf_config: Mapping[str, Any]) -> str:
    """llmlab family for a HF `config.json` dict (ValueError naming the architecture when unsupported)."""
    archs = hf_config.get("architectures") or []
    for arch in archs:
        if arch in HF_ARCHITECTURES:
            return HF_ARCHITECTURES[arch]
    model_type = hf_config.get("model_type")
    if not archs and model_type in HF_MODEL_TYPES:
        return HF_MODEL_TYPES[model_type]
    name = ", ".join(archs) or model_type or "unknown"
    raise ValueError(f"llmlab does not implement the Hugging Face architecture '{name}'; {_supported()}")


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Load a llmlab, Hugging Face or GGUF checkpoint as an llmlab model (GPT or Llama) in eval mode.

    Args:
        path: a checkpoint folder, its config file, or a `.gguf` file.
        device: where to put the model.

    Raises:
        FileNotFoundError: missing files.
        ValueError: an architecture llmlab does not implement, or corrupt/truncated files.
    """
    kind, p = detect_format(path)
    if kind == "llmlab":
        model = _load_llmlab(p)
    elif kind == "hf":
        model = _load_hf(p)
    else:
        model = load_gguf_model(p)
    return model.to(device).eval()


def _load_llmlab(d: Path) -> nn.Module:
    cfg_path = d / "model_config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e}); re-save the model") from None
    family = cfg.get("family", "gpt") if isinstance(cfg, dict) else None
    if family == "llama":
        from llmlab.models.llama import Llama

        return Llama.from_pretrained(d)
    if family == "gpt":
        from llmlab.models.gpt import GPT

        return GPT.from_pretrained(d)
    raise ValueError(f"{cfg_path} names the model family {family!r}, which llmlab does not have; {_supported()}")


def _load_hf(d: Path) -> nn.Module:
    from llmlab.models.llama.hf import read_hf_config

    family = hf_family(read_hf_config(d))
    if family == "llama":
        from llmlab.models.llama import load_hf_llama

        return load_hf_llama(d)
    from llmlab.models.gpt.hf import load_hf_gpt2

    return load_hf_gpt2(d)


def load_gguf_model(source: str | os.PathLike | Any) -> nn.Module:
    """An llmlab model (float32, dequantised) from a `.gguf` path or an already-read `GGUFFile`."""
    from llmlab.models.formats import GGUFFile, read_gguf

    f = source if isinstance(source, GGUFFile) else read_gguf(source)
    family = GGUF_ARCHITECTURES.get(f.architecture)
    if family is None:
        raise ValueError(
            f"{f.path}: llmlab does not implement the GGUF architecture '{f.architecture}'; {_supported()}"
        )
    if family == "llama":
        from llmlab.models.llama.gguf import load_gguf_llama

        return load_gguf_llama(f)
    return _load_gguf_gpt2(f)


# ---------------------------------------------------------------------------------------------------- GPT-2


def _gpt2_check(config: Any) -> None:
    """Raise ValueError unless a GPTConfig is plain GPT-2 (what HF GPT2LMHeadModel and llama.cpp's gpt2 run)."""
    c = config
    problems = [
        f"{name}={value!r}"
        for name, value, ok in (
            ("position", c.position, c.position == "learned"),
            ("norm", c.norm, c.norm == "layernorm"),
            ("mlp", c.mlp, c.mlp == "gelu"),
            ("bias", c.bias, c.bias),
            ("pre_norm", c.pre_norm, c.pre_norm),
            ("n_kv_head", c.n_kv_head, c.n_kv_head in (None, c.n_head)),
            ("moe_num_experts", c.moe_num_experts, c.moe_num_experts == 0),
            ("attention", c.attention, c.attention in ("sdpa", "eager")),
            ("causal", c.causal, c.causal),
            ("cross_attention", c.cross_attention, not c.cross_attention),
        )
        if not ok
    ]
    if problems:
        raise ValueError(
            f"this GPT model is not plain GPT-2 ({', '.join(problems)}), so it has no GPT-2 equivalent in "
            "HF/GGUF; save it with --format llmlab"
        )


def gpt2_state_dict_to_hf(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """llmlab GPT state dict -> HF `GPT2LMHeadModel` names/layouts (Conv1D weights transposed, tied lm_head dropped)."""
    out: dict[str, torch.Tensor] = {}
    for name, w in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_embeddings:
            continue
        if name.endswith(_GPT2_CONV1D):
            w = w.t()
        w = w.detach().contiguous()
        out[name] = w.to(dtype) if dtype is not None else w
    return out


def gpt2_config_to_hf(config: Any, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """HF GPT-2 `config.json` dict for a (plain GPT-2) GPTConfig."""
    _gpt2_check(config)
    c = config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.mlp_hidden,
        "activation_function": "gelu_new",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "layer_norm_epsilon": c.norm_eps,
        "tie_word_embeddings": c.tie_embeddings,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def _load_gguf_gpt2(f: Any) -> nn.Module:
    from llmlab.models.checkpoint_io import skip_weight_init
    from llmlab.models.formats import gguf_to_hf_gpt2
    from llmlab.models.gpt import GPT, GPTConfig
    from llmlab.models.gpt.hf import gpt2_state_dict_from_hf
    from llmlab.models.gpt.model import load_state_dict_checked

    md = f.metadata
    try:
        n_embd = int(md["gpt2.embedding_length"])
        config = GPTConfig(
            vocab_size=f.tensor_shapes["token_embd.weight"][0],
            block_size=int(md["gpt2.context_length"]),
            n_layer=int(md["gpt2.block_count"]),
            n_head=int(md["gpt2.attention.head_count"]),
            n_embd=n_embd,
            norm_eps=float(md.get("gpt2.attention.layer_norm_epsilon", 1e-5)),
            mlp_hidden=int(md.get("gpt2.feed_forward_length", 4 * n_embd)),
        )
    except KeyError as e:
        raise ValueError(f"{f.path} lacks the GPT-2 metadata key {e}") from None
    hf_sd = gguf_to_hf_gpt2(f.tensors)
    out = hf_sd.get("lm_head.weight")
    config.tie_embeddings = out is None or torch.equal(out, hf_sd["transformer.wte.weight"])
    config.validate()
    sd = gpt2_state_dict_from_hf(hf_sd, config)
    with skip_weight_init():
        model = GPT(config)
    load_state_dict_checked(model, sd, str(f.path))
    return model


# ---------------------------------------------------------------------------------------------------- writers


def model_family(model: nn.Module) -> str:
    """'gpt' or 'llama' for an llmlab model (ValueError for anything else)."""
    from llmlab.models.gpt import GPT
    from llmlab.models.llama import Llama

    if isinstance(model, Llama):
        return "llama"
    if isinstance(model, GPT):
        return "gpt"
    raise ValueError(f"{type(model).__name__} is not an llmlab model; {_supported()}")


def save_llmlab(model: nn.Module, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
    """`save_pretrained` for either family, optionally storing the weights in `dtype`."""
    if model_family(model) == "llama":
        model.save_pretrained(directory, dtype=dtype)
        return
    if dtype is not None and dtype != torch.float32:
        model = model.to(dtype)  # GPT.save_pretrained stores the weights as they are
    model.save_pretrained(directory)


def save_hf(model: nn.Module, directory: str | os.PathLike, dtype: torch.dtype = torch.float32) -> None:
    """Write a HF checkpoint (`config.json` + `model.safetensors`) for `AutoModelForCausalLM.from_pretrained`."""
    from safetensors.torch import save_file

    if model_family(model) == "llama":
        from llmlab.models.llama import save_hf_llama

        save_hf_llama(model, directory, dtype)
        return
    config = gpt2_config_to_hf(model.config, dtype)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file(gpt2_state_dict_to_hf(model, dtype), str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def save_gguf(
    model: nn.Module,
    path: str | os.PathLike,
    dtype: str = "F32",
    extra_metadata: Mapping[str, Any] | None = None,
    metadata_types: Mapping[str, str] | None = None,
) -> None:
    """Write a GGUF file (`dtype` "F32" | "F16" | "Q8_0") with `extra_metadata` (e.g. the tokenizer)."""
    if model_family(model) == "llama":
        from llmlab.models.llama.gguf import save_gguf_llama

        save_gguf_llama(model, path, dtype, extra_metadata, metadata_types)
        return
    from llmlab.models.formats import hf_to_gguf_gpt2, write_gguf

    c = model.config
    _gpt2_check(c)
    hf_sd = gpt2_state_dict_to_hf(model)
    if c.tie_embeddings:
        hf_sd["lm_head.weight"] = hf_sd["transformer.wte.weight"]
    metadata: dict[str, Any] = {
        "general.name": "llmlab-gpt2",
        "gpt2.context_length": c.block_size,
        "gpt2.embedding_length": c.n_embd,
        "gpt2.feed_forward_length": c.hidden_size,
        "gpt2.block_count": c.n_layer,
        "gpt2.attention.head_count": c.n_head,
        "gpt2.attention.layer_norm_epsilon": float(c.norm_eps),
        **(extra_metadata or {}),
    }
    write_gguf(path, "gpt2", metadata, hf_to_gguf_gpt2(hf_sd), dtype, metadata_types=metadata_types)
