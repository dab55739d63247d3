"""llmlab.peft: parameter-efficient fine-tuning for any llmlab model (every family that declares `peft_targets`).

Methods (`llmlab.peft.methods.PEFT_METHODS`, each a typed config): LoRA / rsLoRA / DoRA (`LoraConfig`), QLoRA
(`QLoraConfig`), bottleneck adapters (`AdapterConfig`), prefix tuning (`PrefixConfig`), prompt tuning
(`PromptConfig`) and (IA)^3 (`IA3Config`), all through `get_peft_model(model, config)`;
`build_peft_config(method, values)` types a config's `peft:` section. Adapters are saved in the Hugging Face
PEFT format (`save_adapter`, `load_adapter`). Partial fine-tuning without adapters: `freeze_except`,
`train_last_n_layers`. See `llmlab.peft.model` for the API and each method's module for the maths.
"""

from llmlab.peft.config import (
    AdapterConfig,
    IA3Config,
    LoraConfig,
    PeftConfigBase,
    PrefixConfig,
    PromptConfig,
    QLoraConfig,
)
from llmlab.peft.io import adapter_base_model, adapter_state_dict, load_adapter, read_adapter, save_adapter
from llmlab.peft.methods import PEFT_METHODS, PeftMethod, build_peft_config, register_peft_method
from llmlab.peft.model import (
    adapter_params,
    adapters_disabled,
    base_weight_bytes,
    count_parameters,
    disable_adapters,
    enable_adapters,
    get_peft_model,
    merge_adapters,
    merge_and_unload,
    peft_layers,
    print_trainable_parameters,
    trainable_parameters,
    unmerge_adapters,
)
from llmlab.peft.partial import freeze_except, train_last_n_layers

__all__ = [
    "PEFT_METHODS", "AdapterConfig", "IA3Config", "LoraConfig", "PeftConfigBase", "PeftMethod", "PrefixConfig",
    "PromptConfig", "QLoraConfig", "adapter_base_model", "adapter_params", "adapter_state_dict", "adapters_disabled",
    "base_weight_bytes", "build_peft_config", "count_parameters", "disable_adapters", "enable_adapters",
    "freeze_except", "get_peft_model", "load_adapter", "merge_adapters", "merge_and_unload", "peft_layers",
    "print_trainable_parameters", "read_adapter", "register_peft_method", "save_adapter", "train_last_n_layers",
    "trainable_parameters", "unmerge_adapters",
]  # fmt: skip
