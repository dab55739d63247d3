"""Finding the modules a PEFT method acts on, by name, for any llmlab model.

Nothing here knows a model class: targets are module *names* (GPT-2 names such as
`transformer.h.0.attn.c_attn`, HF Llama names such as `model.layers.0.self_attn.q_proj`) and a few small
protocols — attention layers are `llmlab.nn.attention.Attention` modules, the input embedding is the
`nn.Embedding` called `wte`/`embed_tokens`, and a model's forward takes `(input_ids, targets, *,
attention_mask, kv_cache)`.
"""

from __future__ import annotations

import re

from torch import nn

from llmlab.nn.attention import Attention

# Defaults per method when `target_modules` is None (the same choices as HF peft's defaults).
DEFAULT_TARGETS: dict[str, list[str]] = {
    "LORA": ["c_attn", "q_proj", "v_proj"],
    "IA3": ["c_attn", "mlp.c_proj", "k_proj", "v_proj", "down_proj"],
}
DEFAULT_FEEDFORWARD: list[str] = ["mlp.c_proj", "down_proj"]
EMBEDDING_NAMES = ("transformer.wte", "model.embed_tokens")
OUTPUT_LAYER = "lm_head"


def name_matches(name: str, target: list[str] | str) -> bool:
    """peft's rule: a regex string must fully match `name`; a list entry must equal it or be a dotted suffix."""
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return any(name == t or name.endswith("." + t) for t in target)


def find_targets(model: nn.Module, target: list[str] | str, kind: type[nn.Module] = nn.Linear) -> list[str]:
    """Names of the `kind` modules of `model` selected by `target` (see `llmlab.peft.config`).

    Raises:
        ValueError: an entry (or the regex) matches no module, or matches a module that is not a `kind`;
            the message lists a few valid names.
    """
    modules = dict(model.named_modules())
    candidates = [n for n, m in modules.items() if isinstance(m, kind)]
    if target == "all-linear":
        return [n for n in candidates if n.split(".")[-1] != OUTPUT_LAYER]
    examples = ", ".join(_examples(candidates))
    entries = [target] if isinstance(target, str) else list(target)
    if not entries:
        raise ValueError("target_modules is empty; name at least one module, e.g. ['c_attn'] or ['q_proj', 'v_proj']")
    for entry in entries:
        hits = [n for n in modules if n and name_matches(n, entry if isinstance(target, str) else [entry])]
        if not hits:
            raise ValueError(f"target module {entry!r} matches no module of the model; valid names: {examples}")
        wrong = [n for n in hits if not isinstance(modules[n], kind)]
        if wrong and len(wrong) == len(hits):
            raise ValueError(
                f"target module {entry!r} matches {wrong[0]} ({type(modules[wrong[0]]).__name__}), "
                f"not a {kind.__name__}; valid names: {examples}"
            )
    return [n for n in candidates if name_matches(n, target)]


def default_targets(model: nn.Module, method: str) -> list[str]:
    """The default `target_modules` entries of `method` that exist in `model` (GPT-2 or Llama names)."""
    names = [n for n, _ in model.named_modules()]
    found = [t for t in DEFAULT_TARGETS[method] if any(name_matches(n, [t]) for n in names)]
    if not found:
        raise ValueError(f"no default {method} targets in this model; set target_modules (e.g. 'all-linear')")
    return found


def _examples(names: list[str], k: int = 6) -> list[str]:
    """A few distinct suffixes from the first layer, e.g. `transformer.h.0.attn.c_attn`."""
    seen, out = set(), []
    for n in names:
        key = re.sub(r"\.\d+\.", ".N.", n)
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out[:k]


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called `name` (dotted) by `module`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def attention_layers(model: nn.Module) -> list[Attention]:
    """The self-attention layers in forward order (cross-attention layers excluded)."""
    return [m for m in model.modules() if isinstance(m, Attention) and not m.cross]


def input_embedding(model: nn.Module) -> tuple[str, nn.Embedding]:
    """The token embedding: `transformer.wte` (GPT) or `model.embed_tokens` (Llama), else the first nn.Embedding."""
    modules = dict(model.named_modules())
    for name in EMBEDDING_NAMES:
        if isinstance(modules.get(name), nn.Embedding):
            return name, modules[name]
    for name, m in modules.items():
        if isinstance(m, nn.Embedding):
            return name, m
    raise ValueError("the model has no nn.Embedding input layer; prompt tuning needs one")


def output_projection(module: nn.Module) -> str | None:
    """Name of the output projection inside an attention or MLP module (`c_proj`, `o_proj`, `down_proj`)."""
    for name in ("c_proj", "o_proj", "down_proj"):
        if isinstance(getattr(module, name, None), nn.Module):
            return name
    return None


def model_config_dict(model: nn.Module) -> dict:
    """The model's config as a plain dict (dataclass configs), or {} when the model has none."""
    import dataclasses

    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return {}
