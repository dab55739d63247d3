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
import re
from collections.abc import Iterator

import torch
from torch import nn

from llmlab.nn.virtual import reserved_positions

from llmlab.nn.attention import Attention
from llmlab.peft.adapter import BottleneckLinear
from llmlab.peft.base import PeftLinear
from llmlab.peft.config import (
    AdapterConfig,
    IA3Config,
    LoraConfig,
    PeftConfigBase,
    PrefixConfig,
    PromptConfig,
    QLoraConfig,
)
from llmlab.peft.ia3 import IA3Linear
from llmlab.peft.lora import LoRALinear
from llmlab.peft.prefix import PrefixEncoder, attach_prefix, text_prefixes
from llmlab.peft.prompt import PromptEmbedding, PromptHooks
from llmlab.peft.qlora import QLoRALinear
from llmlab.peft.targets import (
    DEFAULT_FEEDFORWARD,
    attention_layers,
    default_targets,
    find_targets,
    input_embedding,
    name_matches,
    output_projection,
    set_module,
)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------- apply
def get_peft_model(model: nn.Module, config: PeftConfigBase) -> nn.Module:
    """Freeze `model` and add the adapters described by `config` (in place); return the model.

    Args:
        model: an llmlab model (`GPT`, `Llama`, ...), with its base weights already loaded.
        config: a `LoraConfig`, `QLoraConfig`, `IA3Config`, `AdapterConfig`, `PrefixConfig` or `PromptConfig`.

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
    if isinstance(config, LoraConfig):
        _apply_lora(model, config)
    elif isinstance(config, IA3Config):
        _apply_ia3(model, config)
    elif isinstance(config, AdapterConfig):
        _apply_bottleneck(model, config)
    elif isinstance(config, PrefixConfig):
        _apply_prefix(model, config)
    elif isinstance(config, PromptConfig):
        _apply_prompt(model, config)
    else:
        raise ValueError(f"unsupported PEFT config {type(config).__name__}")
    if config.modules_to_save:
        for name in find_targets(model, config.modules_to_save, kind=nn.Module):
            model.get_submodule(name).requires_grad_(True)
    model.peft_config = config
    return model


def _apply_lora(model: nn.Module, config: LoraConfig) -> None:
    if config.target_modules is None:
        config.target_modules = default_targets(model, "LORA")
    names = find_targets(model, config.target_modules)
    kw = dict(r=config.r, scaling=config.scaling, dropout=config.lora_dropout, use_dora=config.use_dora)
    for name in names:
        base = model.get_submodule(name)
        if isinstance(config, QLoraConfig):
            layer = QLoRALinear(
                base,
                **kw,
                init_zero=config.init_lora_weights,
                blocksize=config.blocksize,
                double_quant=config.double_quant,
                compute_dtype=_DTYPES[config.compute_dtype],
            )
        else:
            layer = LoRALinear(base, **kw, init_zero=config.init_lora_weights)
        layer.requires_grad_(False)
        for p in layer.adapter_parameters():
            p.requires_grad_(True)
        if config.bias == "lora_only" and layer.bias is not None:
            layer.bias.requires_grad_(True)
        set_module(model, name, layer)
    if config.bias == "all":
        for pname, p in model.named_parameters():
            if pname.endswith(".bias") and "lora_" not in pname:
                p.requires_grad_(True)


def _apply_ia3(model: nn.Module, config: IA3Config) -> None:
    if config.target_modules is None:
        config.target_modules = default_targets(model, "IA3")
        if config.feedforward_modules is None:
            config.feedforward_modules = [t for t in DEFAULT_FEEDFORWARD if t in config.target_modules]
    ff = config.feedforward_modules or []
    for name in find_targets(model, config.target_modules):
        layer = IA3Linear(
            model.get_submodule(name), feedforward=name_matches(name, ff), init_ones=config.init_ia3_weights
        )
        layer.weight.requires_grad_(False)
        set_module(model, name, layer)


def _apply_bottleneck(model: nn.Module, config: AdapterConfig) -> None:
    if config.target_modules is not None:
        names = find_targets(model, config.target_modules)
    else:  # the output projections of the attention and/or MLP of every block
        names = []
        for name, m in model.named_modules():
            is_attn = isinstance(m, Attention) and not m.cross
            is_mlp = name.split(".")[-1] == "mlp" and output_projection(m) is not None
            if (is_attn and "attn" in config.locations) or (is_mlp and "mlp" in config.locations):
                names.append(f"{name}.{output_projection(m)}")
        if not names:
            raise ValueError("found no attention/MLP output projections; set AdapterConfig.target_modules")
    for name in names:
        base = model.get_submodule(name)
        if not isinstance(base, nn.Linear):
            raise ValueError(f"{name} is a {type(base).__name__}, not an nn.Linear; set target_modules")
        layer = BottleneckLinear(base, config.bottleneck_size, config.non_linearity, config.adapter_dropout)
        layer.weight.requires_grad_(False)
        set_module(model, name, layer)


def _apply_prefix(model: nn.Module, config: PrefixConfig) -> None:
    layers = attention_layers(model)
    if not layers:
        raise ValueError("prefix tuning needs llmlab.nn.attention.Attention layers; this model has none")
    if any(a.backend == "linear" for a in layers):
        raise ValueError("prefix tuning does not work with attention='linear'; use 'sdpa' or 'eager'")
    a = layers[0]
    p = next(model.parameters())
    encoder = PrefixEncoder(
        len(layers),
        a.n_kv_head,
        a.head_dim,
        config.num_virtual_tokens,
        config.prefix_projection,
        config.encoder_hidden_size,
        config.prefix_init_std,
    ).to(device=p.device, dtype=p.dtype)
    if config.prefix_tuning_init == "TEXT":
        prefixes = text_prefixes(model, config.init_token_ids or [], config.num_virtual_tokens)
        encoder.load_prefixes(prefixes)
    attach_prefix(model, encoder, layers)


def _apply_prompt(model: nn.Module, config: PromptConfig) -> None:
    name, base = input_embedding(model)
    ids = config.init_token_ids if config.prompt_tuning_init == "TEXT" else None
    emb = PromptEmbedding(base, config.num_virtual_tokens, ids)
    emb.weight.requires_grad_(False)
    set_module(model, name, emb)
    hooks = PromptHooks(emb)
    hooks.attach(model)
    model._peft_prompt_hooks = hooks


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


def virtual_tokens(model: nn.Module) -> tuple[int, int]:
    """(positions, cache entries) an enabled prompt/prefix adapter puts before the real tokens; see
    `llmlab.nn.virtual.reserved_positions`, which decoding and evaluation call directly."""
    return reserved_positions(model)


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
    if hasattr(model, "prefix_encoder") or hasattr(model, "_peft_prompt_hooks"):
        raise ValueError("prefix/prompt tuning cannot be merged into the weights; keep the adapted model instead")
    model.requires_grad_(True)
    model.peft_config = None
    return model


def _require_peft(model: nn.Module) -> None:
    if getattr(model, "peft_config", None) is None:
        raise ValueError("this model has no adapters; call get_peft_model(model, config) first")


# ---------------------------------------------------------------------------------------------- full / partial
def freeze_except(model: nn.Module, names: list[str]) -> list[str]:
    """Freeze every parameter except those under the given module/parameter names; return the trainable names.

    An entry matches a parameter when it is a dotted part of its name: `"lm_head"`, `"ln_f"`,
    `"transformer.h.3"`, `"mlp.c_fc.weight"`. (Full fine-tuning needs no helper: every parameter trains.)

    Raises:
        ValueError: an entry matches no parameter (the message lists a few names).
    """
    params = list(model.named_parameters(remove_duplicate=False))  # tied weights under each of their names

    def hit(pname: str, entry: str) -> bool:
        return re.search(rf"(^|\.){re.escape(entry)}(\.|$)", pname) is not None

    for entry in names:
        if not any(hit(n, entry) for n, _ in params):
            raise ValueError(f"{entry!r} matches no parameter; examples: {', '.join(n for n, _ in params[:4])}")
    keep = {id(p) for n, p in params if any(hit(n, e) for e in names)}
    for _, p in params:
        p.requires_grad_(id(p) in keep)
    return [n for n, p in model.named_parameters() if id(p) in keep]


def train_last_n_layers(model: nn.Module, n: int, include_head: bool = True) -> list[str]:
    """Train only the last `n` Transformer layers (plus the final norm and output layer if `include_head`).

    With tied embeddings the output layer *is* the input embedding, so that is trained too.
    """
    stacks = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and any(isinstance(x, Attention) for x in m.modules())
    ]
    if not stacks:
        raise ValueError("found no list of Transformer layers in this model")
    name, layers = max(stacks, key=lambda s: len(s[1]))
    if not 0 <= n <= len(layers):
        raise ValueError(f"n={n} must be between 0 and the number of layers ({len(layers)})")
    entries = [f"{name}.{i}" for i in range(len(layers) - n, len(layers))]
    if include_head:
        modules = dict(model.named_modules())
        entries += [h for h in ("transformer.ln_f", "model.norm", "lm_head") if h in modules]
    if not entries:
        model.requires_grad_(False)
        return []
    return freeze_except(model, entries)
