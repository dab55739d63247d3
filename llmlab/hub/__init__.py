"""llmlab.hub: the one loader. Every verb (generate, chat, eval, finetune, merge, convert, ...) turns a model path
into a model, its tokenizer and chat template here.

    source = resolve_source("runs/sft")          # what the path is (kind, format, weights, tokenizer, notes)
    loaded = load_for_inference(source)           # LoadedModel(model, tokenizer, chat_template, source, ...)

Modules: `sources` (what a path is, without loading), `tokenizer_files` (where the tokenizer and chat template
are), `adapters` (adapter folders, their base model, merging), `metadata` (paths read from metadata files,
resolved relative to their folder and reported), `loading` (`load_for_inference`). The format level below
(weights only: llmlab / Hugging Face / GGUF) is `llmlab.models`.
"""

from llmlab.hub.adapters import adapter_base_path, find_adapter_dir, fold_adapter, require_mergeable
from llmlab.hub.loading import LoadedModel, load_for_inference, load_model_and_tokenizer
from llmlab.hub.sources import Source, default_source, resolve_source
from llmlab.hub.tokenizer_files import find_tokenizer_file, folder_chat_template, save_model_folder, save_tokenizer
from llmlab.models.smollm2 import DEFAULT_MODEL_NAME

__all__ = [
    "DEFAULT_MODEL_NAME",
    "LoadedModel",
    "Source",
    "adapter_base_path",
    "default_source",
    "find_adapter_dir",
    "find_tokenizer_file",
    "fold_adapter",
    "folder_chat_template",
    "load_for_inference",
    "load_model_and_tokenizer",
    "require_mergeable",
    "resolve_source",
    "save_model_folder",
    "save_tokenizer",
]
