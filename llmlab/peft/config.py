"""Configurations of the parameter-efficient fine-tuning methods (no torch import).

Field names follow Hugging Face `peft` where the method exists there (`r`, `lora_alpha`, `lora_dropout`,
`target_modules`, `use_rslora`, `use_dora`, `bias`, `modules_to_save`, `num_virtual_tokens`, ...), so an
`adapter_config.json` written by `llmlab.peft.io.save_adapter` reads like peft's and loads with peft.

`target_modules` semantics (as peft's):
- a list of names: a module matches when its full name equals an entry or ends with `"." + entry`
  (`["c_attn", "q_proj"]`, `["attn.c_proj"]`);
- a string: a regular expression that must match the full module name (`r".*\\.(q|v)_proj"`);
- `"all-linear"`: every `nn.Linear` except the output layer `lm_head`;
- None: the method's default, from the module-name groups the model class declares (`peft_targets`, see
  `llmlab.peft.targets`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TASK_TYPE = "CAUSAL_LM"
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")  # QLoRA: names of torch dtypes


@dataclass
class PeftConfigBase:
    """Fields every method shares.

    Attributes:
        base_model_name_or_path: where the base model comes from (recorded in `adapter_config.json`).
        task_type: always "CAUSAL_LM" here.
        modules_to_save: extra modules trained in full and saved with the adapter (e.g. `["lm_head"]`).
    """

    base_model_name_or_path: str | None = None
    task_type: str = TASK_TYPE
    modules_to_save: list[str] | None = None

    peft_type = ""  # set by each subclass (class attribute, not a field)

    def validate(self) -> None:
        """Raise ValueError on an impossible setting (subclasses extend this)."""
        if self.task_type != TASK_TYPE:
            raise ValueError(f"task_type={self.task_type!r} is not supported; llmlab.peft only does {TASK_TYPE!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable dict saved as `adapter_config.json` (with `peft_type`)."""
        d = dataclasses.asdict(self)
        d["peft_type"] = self.peft_type
        return d

    def reserved_positions(self) -> int:
        """Positions the method puts before the real tokens (prompt/prefix tuning: P; they count against the
        model's context)."""
        return 0

    def tokenize_init_text(self, encode: Callable[[str], list[int]]) -> None:
        """Fill `init_token_ids` from the method's init text with `encode` (a tokenizer's), if it has one."""


@dataclass
class LoraConfig(PeftConfigBase):
    """LoRA: a trainable low-rank update `W + (alpha / r) * B A` (Hu et al. 2021, https://arxiv.org/abs/2106.09685).

    Attributes:
        r: rank of the update.
        lora_alpha: scaling numerator; the update is scaled by `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
        lora_dropout: dropout on the input of the low-rank path.
        target_modules: which `nn.Linear` layers get LoRA (see the module docstring).
        use_rslora: rank-stabilised scaling `lora_alpha / sqrt(r)` (Kalajdzievski 2023,
            https://arxiv.org/abs/2312.03732).
        use_dora: weight-decomposed LoRA (DoRA, Liu et al. 2024, https://arxiv.org/abs/2402.09353).
        bias: "none" (biases frozen), "all" (every bias trainable) or "lora_only" (biases of LoRA layers).
        init_lora_weights: True = A Kaiming-uniform, B zero (output unchanged at init); False = B random too
            (only useful in tests).
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None
    use_rslora: bool = False
    use_dora: bool = False
    bias: str = "none"
    init_lora_weights: bool = True
    fan_in_fan_out: bool = False

    peft_type = "LORA"

    def validate(self) -> None:
        super().validate()
        if self.r <= 0:
            raise ValueError(f"LoRA rank r={self.r} must be positive")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout={self.lora_dropout} must be in [0, 1)")
        if self.bias not in ("none", "all", "lora_only"):
            raise ValueError(f"bias={self.bias!r}; choose 'none', 'all' or 'lora_only'")

    @property
    def scaling(self) -> float:
        """The factor applied to `B A x`: `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA."""
        return self.lora_alpha / (self.r**0.5 if self.use_rslora else self.r)


@dataclass
class QLoraConfig(LoraConfig):
    """QLoRA: LoRA on top of a frozen 4-bit NormalFloat (NF4) base (Dettmers et al. 2023,
    https://arxiv.org/abs/2305.14314). Saved adapters are plain LoRA adapters (`peft_type: LORA`).

    Attributes:
        quant_type: "nf4" (the paper's 4-bit NormalFloat; the only type implemented).
        blocksize: number of weights sharing one absmax scale.
        double_quant: also quantize the absmax scales to int8 (blocks of 256), saving ~0.4 bit/parameter.
        compute_dtype: dtype name the base weight is dequantized to in forward ("float32", "bfloat16", ...).
    """

    quant_type: str = "nf4"
    blocksize: int = 64
    double_quant: bool = True
    compute_dtype: str = "float32"

    def validate(self) -> None:
        super().validate()
        if self.quant_type != "nf4":
            raise ValueError(f"quant_type={self.quant_type!r} is not implemented; use 'nf4'")
        if self.blocksize <= 0 or self.blocksize % 2:
            raise ValueError(f"blocksize={self.blocksize} must be a positive even number")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype={self.compute_dtype!r}; choose {', '.join(COMPUTE_DTYPES)}")


@dataclass
class AdapterConfig(PeftConfigBase):
    """Bottleneck adapters after the attention and/or MLP output projections (Houlsby et al. 2019,
    https://arxiv.org/abs/1902.00751). Not part of HF peft: saved with `peft_type: BOTTLENECK`.

    Attributes:
        bottleneck_size: width of the down-projection.
        non_linearity: "relu", "gelu", "silu" or "tanh".
        locations: where to insert: any of "attn" (after the attention output projection) and "mlp".
        adapter_dropout: dropout inside the adapter.
        target_modules: explicit output projections to wrap instead of `locations` (names as for LoRA).
    """

    bottleneck_size: int = 16
    non_linearity: str = "relu"
    locations: list[str] = field(default_factory=lambda: ["attn", "mlp"])
    adapter_dropout: float = 0.0
    target_modules: list[str] | str | None = None

    peft_type = "BOTTLENECK"

    def validate(self) -> None:
        super().validate()
        if self.bottleneck_size <= 0:
            raise ValueError(f"bottleneck_size={self.bottleneck_size} must be positive")
        if self.non_linearity not in ("relu", "gelu", "silu", "tanh"):
            raise ValueError(f"non_linearity={self.non_linearity!r}; choose relu, gelu, silu or tanh")
        bad = set(self.locations) - {"attn", "mlp"}
        if bad or not self.locations:
            raise ValueError(f"locations={self.locations}; use a non-empty subset of ['attn', 'mlp']")


@dataclass
class VirtualTokensConfig(PeftConfigBase):
    """Fields of the methods that put P virtual tokens before the input (prefix and prompt tuning).

    Attributes:
        num_virtual_tokens: P.
        init_token_ids: token ids of the init text (required for "TEXT" init; repeated/cropped to P).
    """

    num_virtual_tokens: int = 8
    init_token_ids: list[int] | None = None

    init_field = ""  # the subclass's "RANDOM"/"TEXT" field (peft's name), e.g. "prompt_tuning_init"

    def validate(self) -> None:
        super().validate()
        if self.num_virtual_tokens <= 0:
            raise ValueError(f"num_virtual_tokens={self.num_virtual_tokens} must be positive")
        init = getattr(self, self.init_field)
        if init not in ("RANDOM", "TEXT"):
            raise ValueError(f"{self.init_field}={init!r}; choose 'RANDOM' or 'TEXT'")
        if init == "TEXT" and not self.init_token_ids and not self.init_text:
            raise ValueError(f"{self.init_field}='TEXT' needs init_token_ids or {self.init_field}_text")

    @property
    def init_text(self) -> str | None:
        """The init text (`prefix_tuning_init_text` / `prompt_tuning_init_text`)."""
        return getattr(self, f"{self.init_field}_text")

    def text_init_ids(self) -> list[int] | None:
        """The token ids to initialise from (a "TEXT" init), None for a random init.

        Raises:
            ValueError: a "TEXT" init whose text was not tokenized yet.
        """
        if getattr(self, self.init_field) != "TEXT":
            return None
        if not self.init_token_ids:
            raise ValueError(
                f"{self.init_field}='TEXT' needs init_token_ids; tokenize the text first "
                "(config.tokenize_init_text(tokenizer.encode))"
            )
        return list(self.init_token_ids)

    def reserved_positions(self) -> int:
        return self.num_virtual_tokens

    def tokenize_init_text(self, encode: Callable[[str], list[int]]) -> None:
        if self.init_text and not self.init_token_ids:
            self.init_token_ids = list(encode(self.init_text))


@dataclass
class PrefixConfig(VirtualTokensConfig):
    """Prefix tuning: trainable key/value prefixes in every attention layer (Li & Liang 2021,
    https://arxiv.org/abs/2101.00190). Saved like peft's `PREFIX_TUNING`.

    Attributes:
        num_virtual_tokens: prefix length P.
        prefix_projection: train through the reparameterisation MLP (embedding -> tanh MLP -> prefixes).
        encoder_hidden_size: hidden width of that MLP.
        prefix_init_std: std of the random initial prefixes (peft uses N(0, 1) embeddings).
        prefix_tuning_init: "RANDOM" or "TEXT": start from the keys/values the frozen model computes for a real
            text (Li & Liang 2021, section 7.2: "initializing the prefix with activations of real words"), so
            the untrained adapter behaves exactly as if that text were prepended to every input.
        prefix_tuning_init_text: the text itself (`llmlab finetune` tokenizes it into `init_token_ids`).
    """

    num_virtual_tokens: int = 10
    prefix_projection: bool = False
    encoder_hidden_size: int = 64
    prefix_init_std: float = 1.0
    prefix_tuning_init: str = "RANDOM"
    prefix_tuning_init_text: str | None = None

    peft_type = "PREFIX_TUNING"
    init_field = "prefix_tuning_init"

    def validate(self) -> None:
        super().validate()
        if self.prefix_tuning_init == "TEXT" and self.prefix_projection:
            raise ValueError("prefix_tuning_init='TEXT' sets the prefixes directly; use prefix_projection=false")


@dataclass
class PromptConfig(VirtualTokensConfig):
    """Prompt tuning: trainable soft-prompt embeddings prepended to the input (Lester et al. 2021,
    https://arxiv.org/abs/2104.08691). Saved like peft's `PROMPT_TUNING`.

    Attributes:
        num_virtual_tokens: number of soft-prompt vectors P.
        prompt_tuning_init: "RANDOM" (copies of random vocabulary embeddings) or "TEXT".
        prompt_tuning_init_text: the text itself, recorded in the config (`llmlab finetune` tokenizes it into
            `init_token_ids`).
    """

    num_virtual_tokens: int = 8
    prompt_tuning_init: str = "RANDOM"
    prompt_tuning_init_text: str | None = None

    peft_type = "PROMPT_TUNING"
    init_field = "prompt_tuning_init"


@dataclass
class IA3Config(PeftConfigBase):
    """(IA)^3: learned vectors rescaling keys, values and FFN activations (Liu et al. 2022,
    https://arxiv.org/abs/2205.05638).

    Attributes:
        target_modules: layers whose output (or, for feed-forward modules, input) is rescaled.
        feedforward_modules: the subset of targets whose *input* is rescaled (the FFN down projection).
    """

    target_modules: list[str] | str | None = None
    feedforward_modules: list[str] | str | None = None
    init_ia3_weights: bool = True
    fan_in_fan_out: bool = False

    peft_type = "IA3"
