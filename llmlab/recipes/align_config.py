"""The config of ``llmlab align rm|dpo|ppo|grpo``: one `AlignConfig` for the four objectives (base model, method
and ``peft:`` as in ``llmlab finetune``, the data, one section per objective, the shared rollout and reward
sections, and the ``train``/``optim``/``schedule`` sections of `llmlab.train.config`), with its static validation
(no torch, no files written: the recipes check models and data before writing anything).

    llmlab align dpo --config configs/align/dpo-lora.yaml data.train=pairs.jsonl dpo.beta=0.1
    llmlab align grpo --config configs/align/grpo-arithmetic.yaml grpo.num_generations=8

The objective is the sub-command (``objective`` in the saved ``config.yaml``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from llmlab.config import load_config
from llmlab.config.checks import check_choice, check_minimum
from llmlab.data.templates import RECORD_FORMATS, TEMPLATE_NAMES
from llmlab.peft.methods import PEFT_METHODS
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig, check_renamed_keys, validate_training

OBJECTIVES = ("rm", "dpo", "ppo", "grpo")
ALIGN_METHODS = ("full", *PEFT_METHODS)
REFERENCE_MODES = ("auto", "adapters", "copy")  # llmlab.align.reference (kept in sync; tested)
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "simpo", "orpo")
GRPO_LOSSES = ("grpo", "bnpo", "dr_grpo")
ALIGN_DISTRIBUTED = ("auto", "none", "ddp")


@dataclass
class AlignDataConfig:
    """The data: preference pairs (``rm``, ``dpo``) or prompts (``ppo``, ``grpo``), JSONL.

    Pairs: ``{"prompt": ..., "chosen": ..., "rejected": ...}`` with strings, or ``messages`` lists (the prompt a
    conversation, chosen/rejected the assistant turn(s)); an optional ``margin`` (reward models). Prompts:
    ``{"prompt": ...}`` (string or messages) plus any fields a reward function reads (e.g. ``answer``).

    Attributes:
        train: training JSONL.
        val: held-out JSONL (None: hold out `val_fraction` of `train`).
        val_fraction: share held out when there is no `val` file.
        template: how a string prompt is rendered: alpaca | alpaca-zh | chat | plain (`llmlab.data.templates`).
        chat_template: a template name (chatml, llama3, zh, llama2) or Jinja source; None = the model's own.
        format: auto | alpaca | messages | prompt_completion (prompt records, as `llmlab finetune`).
        max_length: longest prompt + response in tokens (the response is cut at the end).
        max_prompt_length: longest prompt in tokens; a longer one keeps its END (the part next to the response).
        add_bos: start every sequence with the tokenizer's BOS token.
        add_eos: end chosen/rejected responses with EOS.
    """

    train: str | None = None
    val: str | None = None
    val_fraction: float = 0.1
    template: str = "chat"
    chat_template: str | None = None
    format: str = "auto"
    max_length: int = 256
    max_prompt_length: int = 128
    add_bos: bool = False
    add_eos: bool = True


@dataclass
class RMConfig:
    """``llmlab align rm``: a scalar head on an LM backbone trained with the Bradley-Terry loss
    (Ouyang et al. 2022, https://arxiv.org/abs/2203.02155).

    Attributes:
        use_margin: subtract each pair's ``margin`` field inside the sigmoid (Llama 2, https://arxiv.org/abs/2307.09288).
        center_rewards_coefficient: weight of the mean squared reward (keeps rewards centred, as trl).
    """

    use_margin: bool = False
    center_rewards_coefficient: float = 0.0


@dataclass
class DPOConfig:
    """``llmlab align dpo``: preference optimisation without a reward model.

    Attributes:
        loss: sigmoid (DPO, Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) | ipo (Azar et al. 2023,
            https://arxiv.org/abs/2310.12036) | hinge (SLiC, https://arxiv.org/abs/2305.10425) | simpo (Meng et al.
            2024, https://arxiv.org/abs/2405.14734, reference-free) | orpo (Hong et al. 2024,
            https://arxiv.org/abs/2403.07691, reference-free).
        beta: the KL strength (DPO's beta; IPO's tau; SimPO's beta; ORPO's lambda).
        label_smoothing: conservative DPO (cDPO): the assumed probability that a pair's label is flipped.
        simpo_gamma: SimPO's target reward margin gamma (the loss uses gamma / beta, as the paper's ratio).
        precompute_ref_logprobs: compute the reference log-probabilities of every pair once before training
            (then no reference forward per step, and no reference copy kept for full fine-tuning).
        sft_weight: add this times the NLL of the chosen response (RPO, https://arxiv.org/abs/2404.19733); 0 = off.
    """

    loss: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    precompute_ref_logprobs: bool = False
    sft_weight: float = 0.0


@dataclass
class RolloutConfig:
    """How PPO/GRPO (and DPO pair building) sample completions: llmlab's batched generator with a KV cache.

    Attributes:
        max_new_tokens: the longest completion.
        temperature: sampling temperature (log-probs are scored at the same temperature).
        top_k: keep the k most likely tokens (0 = all).
        top_p: nucleus mass (1.0 = off).
        batch_size: rows generated at once (0 = all of a rollout).
    """

    max_new_tokens: int = 48
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 0


@dataclass
class RewardConfig:
    """Where PPO/GRPO rewards come from (summed with `weights` when several are given).

    Attributes:
        model: a reward model folder written by ``llmlab align rm`` (scores prompt + completion).
        functions: verifiable reward functions: a built-in name (`llmlab.align.rewards.REWARD_FUNCTIONS`, e.g.
            ``arithmetic``) or ``module:function`` (``f(prompts, completions, records) -> list[float]``).
        weights: one weight per source, the model first (default all 1).
        missing_eos_penalty: subtract this from the reward of a completion cut at max_new_tokens (0 = off).
    """

    model: str | None = None
    functions: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    missing_eos_penalty: float = 0.0


@dataclass
class PPOConfig:
    """``llmlab align ppo``: RLHF with PPO (Schulman et al. 2017, https://arxiv.org/abs/1707.06347; Ziegler et al.
    2019, https://arxiv.org/abs/1909.08593; Ouyang et al. 2022).

    Attributes:
        prompts_per_rollout: prompts sampled per rollout (per process, like train.batch_size; one completion each).
        ppo_epochs: passes over each rollout.
        minibatch_size: rows per optimizer step per process (the rollout is split into prompts_per_rollout /
            minibatch_size minibatches, each into train.grad_accum micro-batches).
        clip_range: policy ratio clip epsilon.
        clip_range_value: value prediction clip.
        vf_coef: value loss weight.
        gamma: discount.
        lam: GAE lambda (Schulman et al. 2015, https://arxiv.org/abs/1506.02438).
        kl_coef: initial per-token KL penalty coefficient.
        adaptive_kl: adapt kl_coef towards `target_kl` (Ziegler et al. 2019's controller).
        target_kl: the KL (per sequence, nats) the adaptive controller aims at.
        kl_horizon: the controller's horizon.
        whiten_advantages: normalise advantages to mean 0, std 1 per rollout.
        whiten_rewards: normalise rewards per rollout.
        value_head_init_std: std of the value head's initial weights.
    """

    prompts_per_rollout: int = 16
    ppo_epochs: int = 2
    minibatch_size: int = 8
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05
    adaptive_kl: bool = False
    target_kl: float = 6.0
    kl_horizon: int = 10000
    whiten_advantages: bool = True
    whiten_rewards: bool = False
    value_head_init_std: float = 0.0


@dataclass
class GRPOConfig:
    """``llmlab align grpo``: group relative policy optimisation (Shao et al. 2024, https://arxiv.org/abs/2402.03300).

    Attributes:
        prompts_per_step: prompts per rollout.
        num_generations: completions sampled per prompt (the group).
        beta: KL coefficient to the reference (k3 estimator); 0 = no reference model needed.
        epsilon: ratio clip.
        num_iterations: optimisation passes over each rollout (mu; 1 = the ratio is 1 and only the clip-free
            gradient acts).
        minibatch_size: rows per optimizer step (0 = the whole rollout).
        loss_type: grpo (mean over each sequence, then over sequences) | bnpo (mean over all tokens) |
            dr_grpo (Dr. GRPO, Liu et al. 2025, https://arxiv.org/abs/2503.20783: sum / (rows * max_new_tokens)).
        scale_rewards: divide advantages by the group's reward std (Dr. GRPO turns this off).
    """

    prompts_per_step: int = 8
    num_generations: int = 4
    beta: float = 0.04
    epsilon: float = 0.2
    num_iterations: int = 1
    minibatch_size: int = 0
    loss_type: str = "grpo"
    scale_rewards: bool = True


def align_train_defaults() -> TrainConfig:
    """`TrainConfig` with alignment's defaults (short runs, small batches, checkpoints only at the end)."""
    return TrainConfig(batch_size=4, max_iters=100, eval_interval=25, save_interval=0, log_interval=1)


@dataclass
class AlignConfig:
    """Everything ``llmlab align <objective>`` needs (see `configs/align/*.yaml`).

    Attributes:
        objective: rm | dpo | ppo | grpo (set by the sub-command).
        base: the model to align (llmlab/HF folder, run folder, .gguf); None = SmolLM2-135M-Instruct.
        method: full or a PEFT method (`llmlab.peft`); its settings go in `peft`.
        peft: keyword arguments of the method's config class (e.g. ``{r: 8, lora_alpha: 16}``).
        reference: auto | adapters | copy (`llmlab.align.reference.ReferencePolicy`).
        data: the data.
        rm / dpo / ppo / grpo: the objective's settings.
        rollout: how completions are sampled (ppo, grpo).
        reward: where rewards come from (ppo, grpo).
        train / optim / schedule: the shared loop sections.
        out_dir: the run folder.
        overwrite: replace an earlier llmlab run folder at out_dir (never a foreign folder).
        resume: continue out_dir/checkpoints/last exactly.
    """

    objective: str = "dpo"
    base: str | None = None
    method: str = "lora"
    peft: dict[str, Any] = field(default_factory=dict)
    reference: str = "auto"
    data: AlignDataConfig = field(default_factory=AlignDataConfig)
    rm: RMConfig = field(default_factory=RMConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=align_train_defaults)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, weight_decay=0.0, betas=[0.9, 0.999]))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_iters=5, min_lr=0.0))
    out_dir: str = "runs/align"
    overwrite: bool = False
    resume: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first impossible setting."""
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("method", self.method, ALIGN_METHODS)
        check_choice("reference", self.reference, REFERENCE_MODES)
        d = self.data
        check_choice("data.template", d.template, TEMPLATE_NAMES)
        check_choice("data.format", d.format, RECORD_FORMATS)
        if not d.train:
            raise ValueError(f"no training data: set data.train=<file.jsonl> for llmlab align {self.objective}")
        if d.max_prompt_length < 1 or d.max_length <= d.max_prompt_length:
            raise ValueError(
                f"need 1 <= data.max_prompt_length < data.max_length, got {d.max_prompt_length} and {d.max_length}"
            )
        if not 0 <= d.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
        if self.method not in PEFT_METHODS and self.peft:
            raise ValueError(f"peft settings are only for {', '.join(PEFT_METHODS)}, not method {self.method!r}")
        if self.method in PEFT_METHODS:
            from llmlab.peft import build_peft_config

            build_peft_config(self.method, dict(self.peft))
        if self.reference == "adapters" and self.method not in PEFT_METHODS:
            raise ValueError("reference=adapters needs a PEFT method (lora, ia3, ...); use reference=auto or copy")
        self._validate_objective()
        validate_training(self.train, self.optim, self.schedule)
        check_choice("train.distributed", self.train.distributed, ALIGN_DISTRIBUTED)
        if self.train.compile:
            raise ValueError("train.compile is not supported for alignment yet; set train.compile=false")

    def _validate_objective(self) -> None:
        dpo, ppo, grpo, r = self.dpo, self.ppo, self.grpo, self.rollout
        check_choice("dpo.loss", dpo.loss, DPO_LOSSES)
        _positive("dpo.beta", dpo.beta)
        if not 0 <= dpo.label_smoothing < 0.5:
            raise ValueError(f"dpo.label_smoothing must be in [0, 0.5), got {dpo.label_smoothing}")
        check_minimum("rollout", r, ("max_new_tokens",), 1)
        check_minimum("rollout", r, ("top_k", "batch_size"), 0)
        if not (math.isfinite(r.temperature) and r.temperature > 0):
            raise ValueError(f"rollout.temperature must be > 0 (sampling), got {r.temperature}")
        if not 0 < r.top_p <= 1:
            raise ValueError(f"rollout.top_p must be in (0, 1], got {r.top_p}")
        check_minimum("ppo", ppo, ("prompts_per_rollout", "ppo_epochs", "minibatch_size"), 1)
        for name in ("clip_range", "clip_range_value", "target_kl"):
            _positive(f"ppo.{name}", getattr(ppo, name))
        if self.objective == "ppo" and ppo.prompts_per_rollout % ppo.minibatch_size:
            raise ValueError(
                f"ppo.prompts_per_rollout ({ppo.prompts_per_rollout}) must be a multiple of ppo.minibatch_size "
                f"({ppo.minibatch_size})"
            )
        if self.objective == "ppo" and ppo.minibatch_size % self.train.grad_accum:
            raise ValueError(
                f"ppo.minibatch_size ({ppo.minibatch_size}) must be a multiple of train.grad_accum "
                f"({self.train.grad_accum}): each optimizer step splits its minibatch into grad_accum micro-batches"
            )
        check_minimum("grpo", grpo, ("prompts_per_step", "num_iterations"), 1)
        check_minimum("grpo", grpo, ("num_generations",), 2)
        check_minimum("grpo", grpo, ("minibatch_size",), 0)
        check_choice("grpo.loss_type", grpo.loss_type, GRPO_LOSSES)
        if grpo.beta < 0:
            raise ValueError(f"grpo.beta must be >= 0, got {grpo.beta}")
        if self.objective in ("ppo", "grpo") and not self.reward.model and not self.reward.functions:
            raise ValueError(
                f"llmlab align {self.objective} needs a reward: reward.model=<llmlab align rm run> and/or "
                "reward.functions=[arithmetic]"
            )
        n_sources = int(bool(self.reward.model)) + len(self.reward.functions)
        if self.reward.weights and len(self.reward.weights) != n_sources:
            raise ValueError(f"reward.weights has {len(self.reward.weights)} values for {n_sources} reward source(s)")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def load_align_config(path: str | os.PathLike | None, overrides: list[str] | None, objective: str) -> AlignConfig:
    """Defaults, then the YAML, then `key=value` overrides; `objective` (the sub-command) wins over all."""
    overrides = list(overrides or [])
    check_renamed_keys(path, overrides)
    return load_config(AlignConfig, path, [*overrides, f"objective={objective}"])
