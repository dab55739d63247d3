"""llmlab.peft: parameter-efficient fine-tuning for any llmlab model (GPT and Llama families).

Methods: LoRA / rsLoRA / DoRA (`LoraConfig`), QLoRA (`QLoraConfig`), bottleneck adapters (`AdapterConfig`),
prefix tuning (`PrefixConfig`), prompt tuning (`PromptConfig`) and (IA)^3 (`IA3Config`), all through
`get_peft_model(model, config)`. Adapters are saved in the Hugging Face PEFT format (`save_adapter`,
`load_adapter`). See `llmlab.peft.model` for the API and each method's module for the maths.
"""

from llmlab.peft.config import (
    AdapterConfig,
    IA3Config,
    LoraConfig,
    PeftConfigBase,
    PrefixConfig,
    PromptConfig,
    QLoraConfig,
    config_from_dict,
)
from llmlab.peft.io import adapter_base_model, adapter_state_dict, load_adapter, read_adapter, save_adapter
from llmlab.peft.model import (
    adapter_params,
    adapters_disabled,
    base_weight_bytes,
    count_parameters,
    disable_adapters,
    enable_adapters,
    freeze_except,
    get_peft_model,
    merge_adapters,
    merge_and_unload,
    print_trainable_parameters,
    train_last_n_layers,
    trainable_parameters,
    unmerge_adapters,
    virtual_tokens,
)

__all__ = [
    "AdapterConfig",
    "IA3Config",
    "LoraConfig",
    "PeftConfigBase",
    "PrefixConfig",
    "PromptConfig",
    "QLoraConfig",
    "adapter_base_model",
    "adapter_params",
    "adapter_state_dict",
    "adapters_disabled",
    "base_weight_bytes",
    "config_from_dict",
    "count_parameters",
    "disable_adapters",
    "enable_adapters",
    "freeze_except",
    "get_peft_model",
    "load_adapter",
    "merge_adapters",
    "merge_and_unload",
    "print_trainable_parameters",
    "read_adapter",
    "save_adapter",
    "train_last_n_layers",
    "trainable_parameters",
    "unmerge_adapters",
    "virtual_tokens",
]
