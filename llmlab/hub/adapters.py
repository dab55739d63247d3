"""Adapters as model sources: finding the adapter folder, its base model, and folding it into the weights.

An adapter (LoRA, QLoRA, IA3, bottleneck adapters, prefix or prompt tuning; Hugging Face PEFT format, see
`llmlab.peft.io`) records its base model as `base_model_name_or_path` in `adapter_config.json`:
`SmolLM2-135M-Instruct` means the packaged SmolLM2; any other value is a path, resolved by
`llmlab.hub.metadata` relative to the adapter folder, then the run folder around it, then the working
directory, and reported in a note. Merging (LoRA: `W' = W + (alpha / r) B A`, https://arxiv.org/abs/2106.09685;
IA3: `W' = W * l`, https://arxiv.org/abs/2205.05638) is possible only for the methods whose change a weight
can absorb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmlab.hub.metadata import resolve_metadata_path
from llmlab.models.smollm2 import DEFAULT_MODEL_NAME

ADAPTER_CONFIG = "adapter_config.json"
MERGEABLE = ("LORA", "IA3")  # QLoRA adapters are saved as LORA


def find_adapter_dir(path: Path) -> Path | None:
    """The adapter folder of `path` (itself, or `adapter/` of a `llmlab finetune` run), or None."""
    path = Path(path)
    for candidate in (path, path / "adapter"):
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    return None


def resolve_adapter_base(adapter_dir: Path, run_dir: Path | None = None) -> tuple[Path | None, list[str]]:
    """(the base model path of an adapter, or None for the packaged default; notes on how it was found).

    Raises:
        FileNotFoundError / ValueError: no or a broken `adapter_config.json`, or a base that is not found.
    """
    from llmlab.peft import adapter_base_model

    adapter_dir = Path(adapter_dir)
    recorded = adapter_base_model(adapter_dir)
    if recorded == DEFAULT_MODEL_NAME:
        return None, []
    holders = [(adapter_dir, "the adapter folder")]
    if run_dir is None and (adapter_dir.parent / "config.yaml").is_file():
        run_dir = adapter_dir.parent
    if run_dir is not None and run_dir != adapter_dir:
        holders.append((run_dir, "the run folder"))
    what = f"base model (base_model_name_or_path in {adapter_dir / ADAPTER_CONFIG})"
    found = resolve_metadata_path(recorded, holders, what)
    if found is None:
        raise FileNotFoundError(
            f"the base model of the adapter {adapter_dir}, '{recorded}' (base_model_name_or_path in "
            f"{ADAPTER_CONFIG}), is not found beside the adapter nor from the working directory; pass the base "
            "model explicitly (e.g. merge --base) or fix that path"
        )
    return found.path, [found.note]


def adapter_base_path(adapter_dir: str | Path) -> Path | None:
    """Where the base model of an adapter is (see `resolve_adapter_base`); None for the packaged SmolLM2."""
    return resolve_adapter_base(Path(adapter_dir))[0]


def require_mergeable(adapter_dir: Path) -> str:
    """The adapter's PEFT type if its change can be folded into the weights (LoRA, QLoRA, IA3).

    Raises:
        ValueError: a prefix/prompt/bottleneck adapter (they add computation no weight can absorb).
        FileNotFoundError: a missing adapter file.
    """
    from llmlab.peft import read_adapter

    config, _, _ = read_adapter(adapter_dir)
    if config.peft_type not in MERGEABLE:
        raise ValueError(
            f"{adapter_dir} holds a {config.peft_type} adapter; only LoRA, QLoRA and IA3 adapters can be merged "
            "into the weights (use the run folder with llmlab generate/chat/eval instead, which load it unmerged)"
        )
    return config.peft_type


def fold_adapter(model: Any) -> tuple[Any, int]:
    """Merge the loaded adapter into the base weights: (plain model in eval mode, number of layers merged)."""
    from llmlab.peft import merge_and_unload
    from llmlab.peft.model import peft_layers

    n_layers = sum(1 for _ in peft_layers(model))
    return merge_and_unload(model).eval(), n_layers
