"""Reward models: an LM backbone with a scalar head on the last real token, trained on preference pairs with the
Bradley-Terry loss (Ouyang et al. 2022, "Training language models to follow instructions with human feedback",
https://arxiv.org/abs/2203.02155; Bradley & Terry 1952), as `transformers`' ``LlamaForSequenceClassification(
num_labels=1)`` computes it (tested).

    rm = RewardModel(llama, pad_id=0)
    rewards = rm(input_ids, attention_mask)                 # (B,) float32
    loss = bradley_terry_loss(rewards[:B], rewards[B:])     # chosen rows first (`collate_pairs`)

    scorer = load_reward_model("runs/rm")                   # the run folder or its reward_model/
    scorer.score(["The movie was"], [" wonderful"])         # tensor([r])

A saved reward model (`save_reward_model`) is a self-contained folder: the backbone in llmlab format with any
LoRA/IA3 update merged, its tokenizer, ``score.safetensors`` (the head) and ``reward_model.json`` (how text was
rendered in training: template, chat template, lengths), so `RewardScorer.score` renders prompts and completions
exactly as the pairs were (`llmlab.data.preference.encode_pair`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.data.preference import encode_pair, pad_right
from llmlab.models.heads import SequenceClassifier

REWARD_MODEL_DIR = "reward_model"
REWARD_MODEL_JSON = "reward_model.json"
HEAD_WEIGHTS = "score.safetensors"


class RewardModel(SequenceClassifier):
    """A backbone (llmlab GPT or Llama, full or with PEFT layers) and ``score = Linear(hidden, 1, bias=False)``
    on the final hidden state of each row's last real token (`SequenceClassifier` with one label: the one
    last-token pooling of llmlab).

    Args:
        backbone: the LM (kept as ``self.base``; only its final hidden states are used).
        pad_id: finds the last real token when no attention mask is given.
    """

    def __init__(self, backbone: nn.Module, pad_id: int | None = None) -> None:
        super().__init__(backbone, num_labels=1, pad_id=pad_id)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """input_ids (B, T) right- or left-padded, attention_mask (B, T) -> rewards (B,) float32."""
        return super().forward(input_ids, attention_mask=attention_mask).logits[:, 0].float()  # (B,)


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected - margin)`` over pairs (B,) -> scalar float32.

    `margin` (B,): how much better chosen is known to be (Llama 2, Touvron et al. 2023,
    https://arxiv.org/abs/2307.09288, section 3.2.2); None = 0.
    """
    diff = chosen.float() - rejected.float()  # (B,)
    if margin is not None:
        diff = diff - margin.float()
    return -F.logsigmoid(diff).mean()


@dataclass
class RewardModelInfo:
    """``reward_model.json``: how the reward model reads text (the data settings it was trained with).

    Attributes:
        template / chat_template / max_length / max_prompt_length / add_bos / add_eos: as `AlignDataConfig`.
        pad_id: the padding id.
        base: the backbone it was trained from.
        method: full or the PEFT method (merged into the saved backbone).
    """

    template: str = "chat"
    chat_template: str | None = None
    max_length: int = 256
    max_prompt_length: int = 128
    add_bos: bool = False
    add_eos: bool = True
    pad_id: int = 0
    base: str = ""
    method: str = "full"

    def encoding(self) -> dict[str, Any]:
        """The keyword arguments of `encode_pair`."""
        keys = ("template", "chat_template", "max_length", "max_prompt_length", "add_bos", "add_eos")
        return {k: getattr(self, k) for k in keys}


def save_reward_model(model: RewardModel, tokenizer: Any, directory: str | Path, info: RewardModelInfo) -> Path:
    """Write `model` as a self-contained folder at `directory` (atomically replaced); returns it.

    PEFT layers are merged into a copy of the backbone first (prefix/prompt tuning and bottleneck adapters cannot
    be merged: ValueError), so the folder loads without the base model.
    """
    import copy

    from safetensors.torch import save_file

    from llmlab.hub import save_tokenizer
    from llmlab.io import atomic_write_text, make_temp_dir, replace_path
    from llmlab.models import save_llmlab
    from llmlab.peft import merge_and_unload

    directory = Path(directory)
    backbone = copy.deepcopy(model.base).cpu()
    if getattr(backbone, "peft_config", None) is not None:
        backbone = merge_and_unload(backbone)
    tmp = make_temp_dir(directory)
    try:
        save_llmlab(backbone, tmp)
        save_tokenizer(tokenizer, tmp, info.chat_template)
        head = {"weight": model.score.weight.detach().cpu().float().contiguous()}  # (1, C)
        save_file(head, str(tmp / HEAD_WEIGHTS), metadata={"format": "pt"})
        atomic_write_text(tmp / REWARD_MODEL_JSON, json.dumps(asdict(info), indent=2, ensure_ascii=False) + "\n")
        replace_path(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after the exchange
    return directory


def find_reward_model_dir(path: str | Path) -> Path:
    """The reward model folder of `path` (a ``llmlab align rm`` run folder or its ``reward_model/``).

    Raises:
        FileNotFoundError: no reward model there.
    """
    path = Path(path)
    for candidate in (path, path / REWARD_MODEL_DIR):
        if (candidate / REWARD_MODEL_JSON).is_file() and (candidate / HEAD_WEIGHTS).is_file():
            return candidate
    raise FileNotFoundError(
        f"no reward model at {path} (expected {REWARD_MODEL_JSON} and {HEAD_WEIGHTS}); train one with llmlab align rm"
    )


class RewardScorer:
    """A loaded reward model that scores text (`load_reward_model`).

    Attributes:
        model: the `RewardModel` in eval mode.
        tokenizer: its tokenizer.
        info: how it renders text (`RewardModelInfo`).
        device: where it runs.
    """

    def __init__(self, model: RewardModel, tokenizer: Any, info: RewardModelInfo, device: torch.device) -> None:
        self.model, self.tokenizer, self.info, self.device = model.eval(), tokenizer, info, device

    @torch.no_grad()
    def score_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards (N,) float32 on the CPU of padded token rows (N, T) (right or left padding)."""
        return self.model(input_ids.to(self.device), attention_mask.to(self.device)).cpu()

    def encode(self, prompt: str | list[dict[str, str]], completion: str) -> list[int]:
        """The token row of one (prompt, completion), rendered and truncated as in training."""
        prompt_ids, response_ids = encode_pair(self.tokenizer, prompt, completion, **self.info.encoding())
        return prompt_ids + response_ids

    def score(
        self, prompts: Sequence[str | list[dict[str, str]]], completions: Sequence[str], batch_size: int = 16
    ) -> torch.Tensor:
        """Rewards (N,) float32 of each prompt followed by its completion (the prompt a string or messages).

        Raises:
            ValueError: the lists differ in length, or a row renders to no tokens.
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        rows = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        out = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = pad_right(chunk, [0] * len(chunk), self.info.pad_id)
            out.append(self.score_ids(batch["input_ids"], batch["attention_mask"]))
        return torch.cat(out) if out else torch.zeros(0)

    __call__ = score


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> RewardScorer:
    """Load a reward model saved by ``llmlab align rm`` (`save_reward_model`): the run folder or its
    ``reward_model/``.

    Raises:
        FileNotFoundError: no reward model at `path`.
    """
    from safetensors.torch import load_file

    from llmlab.hub import load_for_inference
    from llmlab.nn.device import resolve_device

    folder = find_reward_model_dir(path)
    info = RewardModelInfo(**json.loads((folder / REWARD_MODEL_JSON).read_text(encoding="utf-8")))
    dev = resolve_device(str(device))
    loaded = load_for_inference(folder, str(dev))
    model = RewardModel(loaded.model, pad_id=info.pad_id)
    head = load_file(str(folder / HEAD_WEIGHTS))["weight"]
    with torch.no_grad():
        model.score.weight.copy_(head.to(model.score.weight.dtype))
    model.to(dev)
    return RewardScorer(model, loaded.tokenizer, info, dev)
