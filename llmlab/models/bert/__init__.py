"""llmlab.models.bert: the BERT encoder family (BERT, RoBERTa, ALBERT): config, model, presets, HF conversion,
and the packaged all-MiniLM-L6-v2 (`minilm`)."""

from llmlab.models.bert.config import BertConfig
from llmlab.models.bert.hf import (
    HF_ARCHITECTURES,
    HF_MODEL_TYPES,
    config_from_hf,
    config_to_hf,
    load_hf_bert,
    save_hf_bert,
)
from llmlab.models.bert.minilm import DEFAULT_ENCODER_NAME, minilm_path, resolve_encoder_path
from llmlab.models.bert.model import Bert, BertEmbeddings, EncoderOutput, MLMHead
from llmlab.models.bert.presets import PRESETS
from llmlab.models.registry import HFFormat, ModelFamily, register_family

FAMILY = register_family(ModelFamily.of(Bert, hf=HFFormat(HF_ARCHITECTURES, HF_MODEL_TYPES, load_hf_bert, save_hf_bert)))

__all__ = [
    "Bert",
    "BertConfig",
    "BertEmbeddings",
    "DEFAULT_ENCODER_NAME",
    "EncoderOutput",
    "FAMILY",
    "HF_ARCHITECTURES",
    "HF_MODEL_TYPES",
    "MLMHead",
    "PRESETS",
    "config_from_hf",
    "config_to_hf",
    "load_hf_bert",
    "minilm_path",
    "resolve_encoder_path",
    "save_hf_bert",
]
