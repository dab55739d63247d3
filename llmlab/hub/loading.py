"""Load a resolved `Source` into a model, its tokenizer and chat template: `load_for_inference`.

The model itself comes from the format level (`llmlab.models.load_model` / `load_gguf_model`); this adds the
tokenizer (a `tokenizer.json` found by `llmlab.hub.tokenizer_files`, or GGUF `tokenizer.ggml.*` metadata), the
chat template (`tokenizer.chat_template` in GGUF, `chat_template.jinja` or `tokenizer_config.json` in folders)
and adapters, which are loaded onto their base unmerged, as peft's `PeftModel.from_pretrained` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmlab.hub.sources import Source, resolve_source
from llmlab.hub.tokenizer_files import folder_chat_template, missing_tokenizer_message


@dataclass
class LoadedModel:
    """What inference needs: the model (eval mode), its tokenizer, and its own chat template if it has one.

    Attributes:
        model: an llmlab `GPT` or `Llama` in eval mode.
        tokenizer: an llmlab `Tokenizer` (None only when loaded with `require_tokenizer=False` and none exists).
        chat_template: Jinja source of the model's chat template (None: the checkpoint has none).
        source: a short description of what was loaded (for messages): the path, the default model's name, or
            "<base> + adapter <folder>" with the base path that was used.
        info: the resolved source (kind, format, weights folder, tokenizer file, run/adapter folders, notes).
        family: "gpt" or "llama".
        gguf_tokenizer: for a GGUF source, its `tokenizer.*` metadata and their value types, so that a GGUF to
            GGUF conversion copies them verbatim (None otherwise).
    """

    model: Any
    tokenizer: Any
    chat_template: str | None
    source: str
    info: Source | None = None
    family: str | None = None
    gguf_tokenizer: tuple[dict[str, Any], dict[str, str]] | None = None

    @property
    def note(self) -> str | None:
        """One line on the metadata paths that were followed (which file named them, which path was used)."""
        return self.info.note if self.info is not None else None


def load_for_inference(
    path: str | Path | Source | None = None,
    device: str = "cpu",
    *,
    base: str | Path | None = None,
    require_tokenizer: bool = True,
    with_tokenizer: bool = True,
    quantized: bool = False,
) -> LoadedModel:
    """Load model, tokenizer and chat template from any source (None: SmolLM2-135M-Instruct).

    Args:
        path: a `.gguf` file, an llmlab checkpoint or run folder, a Hugging Face folder, an adapter folder or a
            `llmlab finetune` run folder, None, or a `Source` from `resolve_source`.
        device: torch device for the model.
        base: for an adapter: this base model instead of the one its `adapter_config.json` records.
        require_tokenizer: False: a source without a tokenizer loads with `tokenizer=None` (weights only).
        with_tokenizer: False: do not load a tokenizer at all (`tokenizer=None`, no chat template).
        quantized: a Q8_0/Q4_0/Q4_1 GGUF file keeps its quantized matrices (`Int8Linear`/`Int4Linear` layers,
            `llmlab.compress.quant.load_gguf_quantized`) instead of being dequantised to float32. Folders written
            by `llmlab quantize` always load quantized.

    Raises:
        FileNotFoundError: nothing at `path`, no tokenizer for it, or SmolLM2's package is not installed.
        ValueError: an unsupported architecture, an adapter made for another base, or a tokenizer that does
            not fit the model.
    """
    source = resolve_source(path, base=base)
    if with_tokenizer and require_tokenizer and source.tokenizer_file is None and source.format != "gguf":
        folder = source.weights if source.adapter_dir is None else source.adapter_dir
        raise FileNotFoundError(missing_tokenizer_message(folder, source.format))  # before any weight is read
    if source.adapter_dir is not None:
        loaded = _load_adapter_source(source, device, with_tokenizer)
    else:
        loaded = _load_weights(source, device, with_tokenizer, quantized)
    if loaded.tokenizer is None and with_tokenizer and require_tokenizer:
        raise FileNotFoundError(missing_tokenizer_message(source.weights, source.format))
    _check_vocab(loaded, source.path or source.weights)
    return loaded


def load_model_and_tokenizer(path: str | Path | None = None, device: str = "cpu") -> tuple[Any, Any]:
    """Load `(model in eval mode, llmlab Tokenizer)`; see `load_for_inference` for what `path` may be."""
    loaded = load_for_inference(path, device)
    return loaded.model, loaded.tokenizer


def _load_weights(source: Source, device: str, with_tokenizer: bool, quantized: bool = False) -> LoadedModel:
    """A source that is not an adapter: its model, and its tokenizer when asked for and present."""
    from llmlab.compress.quant import is_quantized_folder, load_quantized
    from llmlab.models import load_model, model_family
    from llmlab.tokenizers import load_tokenizer

    if source.format == "gguf":
        loaded = _load_gguf(source.weights, device, with_tokenizer, quantized)
    else:
        tokenizer = template = None
        if with_tokenizer and source.tokenizer_file is not None:
            tokenizer = load_tokenizer(source.tokenizer_file)
            template = folder_chat_template(source.tokenizer_file.parent)
        load = load_quantized if is_quantized_folder(source.weights) else load_model
        loaded = LoadedModel(load(source.weights, device=device), tokenizer, template, "")
    loaded.source, loaded.info, loaded.family = source.label, source, model_family(loaded.model)
    return loaded


def _load_gguf(path: Path, device: str, with_tokenizer: bool, quantized: bool = False) -> LoadedModel:
    """Model (dequantised; `quantized`: blocks kept), tokenizer and chat template from one read of a GGUF file."""
    from llmlab.compress.quant import load_gguf_quantized
    from llmlab.io.gguf import read_gguf
    from llmlab.models import load_gguf_model
    from llmlab.tokenizers.gguf import load_gguf_tokenizer

    f = read_gguf(path)
    model = (load_gguf_quantized(f) if quantized else load_gguf_model(f)).to(device).eval()
    md = f.metadata
    if not with_tokenizer or "tokenizer.ggml.tokens" not in md:
        return LoadedModel(model, None, None, str(path))
    keep = {k: v for k, v in md.items() if k.startswith("tokenizer.")}
    types = {k: f.metadata_types[k] for k in keep if k in f.metadata_types}
    template = md.get("tokenizer.chat_template") or None
    return LoadedModel(
        model, load_gguf_tokenizer(md), str(template) if template else None, str(path), None, None, (keep, types)
    )


def _load_adapter_source(source: Source, device: str, with_tokenizer: bool) -> LoadedModel:
    """The base model with the adapter loaded onto it (unmerged); the run's tokenizer/template when it has one."""
    from llmlab.peft import load_adapter
    from llmlab.tokenizers import load_tokenizer

    assert source.base is not None and source.adapter_dir is not None
    loaded = _load_weights(source.base, device, with_tokenizer)
    load_adapter(loaded.model, source.adapter_dir)  # checks the adapter was made for this base
    loaded.model.to(device).eval()
    own = source.tokenizer_file
    if with_tokenizer and own is not None and own != source.base.tokenizer_file:
        loaded.tokenizer = load_tokenizer(own)
        loaded.chat_template = folder_chat_template(own.parent) or loaded.chat_template
        loaded.gguf_tokenizer = None  # the tokenizer now comes from the run, not from the base's GGUF
    loaded.source, loaded.info = source.label, source
    return loaded


def _check_vocab(loaded: LoadedModel, path: Path) -> None:
    vocab = loaded.model.config.vocab_size
    if loaded.tokenizer is not None and loaded.tokenizer.vocab_size > vocab:
        raise ValueError(
            f"the tokenizer has {loaded.tokenizer.vocab_size} tokens but the model only {vocab}; "
            f"use the tokenizer the model in {path} was trained with"
        )
