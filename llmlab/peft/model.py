"""One API for every method: add adapters to any llmlab model, count, switch, merge and unload them.

    model = GPT.from_pretrained("runs/base/checkpoints/last")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"]))
    print_trainable_parameters(model)   # trainable params: 147,456 || all params: 124,587,264 || trainable%: 0.1184
    ... train only `trainable_parameters(model)` ...
    with adapters_disabled(model):      # the frozen base model, e.g. a DPO reference model for free
        ref_logits = model(x).logits
    save_adapter(model, "adapters/my-lora")   # HF peft format (llmlab.peft.io)

`get_peft_model` modifies the model in place (and returns it): `nn.Linear` targets are replaced by layers
that keep the base parameter names (`llmlab.peft.base.PeftLinear`), so base checkpoints still load,
`model.config`, `make_kv_cache` and the forward signature are unchanged, and the model still works with
llmlab's training loop and generation. The config is kept as `model.peft_config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from torch import nn

from llmlab.peft.base import PeftLinear
from llmlab.peft.config import PeftConfigBase, VirtualTokensConfig
from llmlab.peft.ia3 import IA3Linear
from llmlab.peft.lora import LoRALinear
from llmlab.peft.methods import method_of
from llmlab.peft.prefix import PrefixEncoder
from llmlab.peft.prompt import PromptEmbedding
from llmlab.peft.qlora import QLoRALinear
from llmlab.peft.targets import find_targets, set_module


# ---------------------------------------------------------------------------------------------- apply
def get_peft_model(model: nn.Module, config: PeftConfigBase) -> nn.Module:
    """Freeze `model` and add the adapters described by `config` (in place); return the model.

    Args:
        model: an llmlab model (`GPT`, `Llama`, ...), with its base weights already loaded.
        config: the config of a registered method (`llmlab.peft.methods.PEFT_METHODS`): a `LoraConfig`,
            `QLoraConfig`, `IA3Config`, `AdapterConfig`, `PrefixConfig` or `PromptConfig`.

    Returns:
        The same model, with `model.peft_config` set (a copy of `config` with defaults resolved).

    Raises:
        ValueError: bad config, a target that matches nothing, or a model that already has adapters.
    """
    if getattr(model, "peft_config", None) is not None:
        raise ValueError("this model already has adapters; call merge_and_unload(model) first or use a fresh model")
    config = dataclasses.replace(config)
    config.validate()
    model.requires_grad_(False)
    method_of(config).apply(model, config)
    if config.modules_to_save:
        for name in find_targets(model, config.modules_to_save, kind=nn.Module):
            model.get_submodule(name).requires_grad_(True)
    model.peft_config = config
    return model


# ---------------------------------------------------------------------------------------------- inspect
def peft_layers(model: nn.Module) -> Iterator[tuple[str, PeftLinear]]:
    """(name, layer) for every adapted linear layer."""
    for name, m in model.named_modules():
        if isinstance(m, PeftLinear):
            yield name, m


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs with `requires_grad=True` — pass `[p for _, p in ...]` to the optimizer."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters a PEFT method added (LoRA A/B, DoRA magnitudes, IA3 vectors, adapters, prefixes, prompts)."""
    out = {}
    for name, p in model.named_parameters():
        leaf = name.split(".")
        if any(k.startswith(("lora_", "ia3_", "adapter_", "prompt_")) for k in leaf) or leaf[0] == "prefix_encoder":
            out[name] = p
    return out


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights once, 4-bit base weights by their element count."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    total += sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, QLoRALinear))
    return trainable, total


def print_trainable_parameters(model: nn.Module) -> None:
    """Print `trainable params: 1,234 || all params: 5,678 || trainable%: 21.7326`, exactly as HF peft."""
    trainable, total = count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")


def base_weight_bytes(model: nn.Module) -> int:
    """Bytes of the frozen base weights of the adapted linear layers (4-bit ones count their packed size)."""
    total = 0
    for _, m in peft_layers(model):
        if isinstance(m, QLoRALinear):
            total += m.base_weight_bytes()
        else:
            total += m.weight.numel() * m.weight.element_size()
    return total


# ---------------------------------------------------------------------------------------------- switch
def _set_disabled(model: nn.Module, disabled: bool) -> None:
    _require_peft(model)
    for m in model.modules():
        if isinstance(m, (PeftLinear, PrefixEncoder, PromptEmbedding)):
            m.disabled = disabled


def disable_adapters(model: nn.Module) -> None:
    """Run the base model only (adapters kept). Merged LoRA/IA3 layers are unmerged first.

    `modules_to_save` are trained in place, so they stay as trained.
    """
    if any(m.merged for _, m in peft_layers(model)):
        unmerge_adapters(model)
    _set_disabled(model, True)


def enable_adapters(model: nn.Module) -> None:
    """Undo `disable_adapters`."""
    _set_disabled(model, False)


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """`with adapters_disabled(model): ...` runs the frozen base model (e.g. a DPO reference model)."""
    disable_adapters(model)
    try:
        yield model
    finally:
        enable_adapters(model)


# ---------------------------------------------------------------------------------------------- merge
def _mergeable_layers(model: nn.Module) -> list[PeftLinear]:
    _require_peft(model)
    layers = [m for _, m in peft_layers(model)]
    if not layers or not all(isinstance(m, (LoRALinear, IA3Linear)) for m in layers):
        raise ValueError(f"only LoRA and IA3 adapters can be merged, not {model.peft_config.peft_type}")
    return layers


def merge_adapters(model: nn.Module) -> None:
    """Fold LoRA/IA3 updates into the base weights (faster inference; `unmerge_adapters` undoes it)."""
    for m in _mergeable_layers(model):
        m.merge()


def unmerge_adapters(model: nn.Module) -> None:
    """Subtract the merged updates again, restoring the base weights (up to float rounding)."""
    for m in _mergeable_layers(model):
        m.unmerge()


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge LoRA/QLoRA/IA3 adapters and return the plain model (adapted layers become `nn.Linear` again).

    QLoRA layers become full-precision linears holding dequant(W) + s B A. All parameters are made
    trainable again, as in a freshly built model; `model.peft_config` is removed.
    """
    for name, m in list(peft_layers(model)):
        if isinstance(m, QLoRALinear):
            set_module(model, name, m.to_linear())
            continue
        if not isinstance(m, (LoRALinear, IA3Linear)):
            raise ValueError(f"{type(m).__name__} adapters cannot be merged; keep the adapted model instead")
        m.merge()
        set_module(model, name, m.to_linear())
    if isinstance(getattr(model, "peft_config", None), VirtualTokensConfig):
        raise ValueError("prefix/prompt tuning cannot be merged into the weights; keep the adapted model instead")
    model.requires_grad_(True)
    model.peft_config = None
    return model


def _require_peft(model: nn.Module) -> None:
    if getattr(model, "peft_config", None) is None:
        raise ValueError("this model has no adapters; call get_peft_model(model, config) first")
