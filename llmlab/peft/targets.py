"""Finding the modules a PEFT method acts on, for any llmlab model, without knowing its family.

What peft needs from a model:
- the structural accessors every llmlab family has: `model.embed_tokens` (the input `nn.Embedding`),
  `model.layers` (the Transformer blocks, in order), `model.final_norm` and `model.lm_head`;
- attention layers that are `llmlab.nn.attention.Attention` modules;
- the class attribute `peft_targets`: the family's module-name groups, by role —
    "query_value"      the projections LoRA adapts by default (HF peft's default: `c_attn`; `q_proj`, `v_proj`),
    "key_value"        the projections (IA)^3 rescales by default,
    "attention_output" the attention output projection (bottleneck adapters, `locations: [attn]`),
    "mlp_output"       the feed-forward output projection (bottleneck adapters; (IA)^3 feed-forward modules);
  entries are module-name suffixes, matched as `target_modules` are (see `llmlab.peft.config`); names that a
  model instance lacks (e.g. a GPT built with a SwiGLU MLP) are skipped;
- optionally `peft_fan_in_fan_out = True` when the family's Hugging Face class stores these layers as
  `Conv1D` (GPT-2), which peft records in the adapter config.

A new family (BERT, T5, ...) declares `peft_targets` and every method works on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from llmlab.nn.attention import Attention

TARGET_GROUPS = ("query_value", "key_value", "attention_output", "mlp_output")


def name_matches(name: str, target: list[str] | str) -> bool:
    """peft's rule: a regex string must fully match `name`; a list entry must equal it or be a dotted suffix."""
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return any(name == t or name.endswith("." + t) for t in target)


def find_targets(model: nn.Module, target: list[str] | str, kind: type[nn.Module] = nn.Linear) -> list[str]:
    """Names of the `kind` modules of `model` selected by `target` (see `llmlab.peft.config`).

    `"all-linear"` selects every `nn.Linear` except the output layer `model.lm_head`.

    Raises:
        ValueError: an entry (or the regex) matches no module, or matches a module that is not a `kind`;
            the message lists a few valid names.
    """
    modules = dict(model.named_modules())
    candidates = [n for n, m in modules.items() if isinstance(m, kind)]
    if target == "all-linear":
        head = getattr(model, "lm_head", None)
        return [n for n in candidates if modules[n] is not head]
    examples = ", ".join(_examples(candidates))
    entries = [target] if isinstance(target, str) else list(target)
    if not entries:
        raise ValueError(f"target_modules is empty; name at least one module, e.g. one of: {examples}")
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


def target_group(model: nn.Module, group: str) -> list[str]:
    """The entries of the model class's `peft_targets[group]` that name a module of this model (maybe none)."""
    declared = getattr(type(model), "peft_targets", None)
    if declared is None:
        raise ValueError(
            f"{type(model).__name__} declares no peft_targets; set target_modules explicitly (e.g. 'all-linear')"
        )
    names = [n for n, _ in model.named_modules()]
    return [t for t in declared.get(group, ()) if any(name_matches(n, [t]) for n in names)]


def default_targets(model: nn.Module, groups: Sequence[str], method: str) -> list[str]:
    """The target entries of `groups` (in order, no repeats) present in `model`: a method's default targets.

    Raises:
        ValueError: none of them exists in this model (the message says to set `target_modules`).
    """
    found: list[str] = []
    for group in groups:
        found += [t for t in target_group(model, group) if t not in found]
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


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name under which `module` sits in `model` (e.g. the name of `model.embed_tokens`)."""
    for name, m in model.named_modules():
        if m is module:
            return name
    raise ValueError(f"{type(module).__name__} is not a submodule of {type(model).__name__}")


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called `name` (dotted) by `module`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def attention_layers(model: nn.Module) -> list[Attention]:
    """The self-attention layers in forward order (cross-attention layers excluded)."""
    return [m for m in model.modules() if isinstance(m, Attention) and not m.cross]


def input_embedding(model: nn.Module) -> tuple[str, nn.Embedding]:
    """(name, module) of the model's token embedding, `model.embed_tokens`."""
    embedding = getattr(model, "embed_tokens", None)
    if not isinstance(embedding, nn.Embedding):
        raise ValueError(f"{type(model).__name__} has no nn.Embedding `embed_tokens`; prompt tuning needs one")
    return module_name(model, embedding), embedding
