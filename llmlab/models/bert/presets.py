"""Named BERT-family presets: `PRESETS.get(name, **overrides) -> BertConfig` (a fresh, validated copy each time).

Random weights when built from a preset; the real all-MiniLM-L6-v2 weights load with
`llmlab.models.bert.minilm.load_minilm()` (or `llmlab.models.load_model(path)` on any HF BERT folder).
"""

from __future__ import annotations

from llmlab.models.bert.config import BertConfig
from llmlab.models.registry import PresetRegistry

PRESETS: PresetRegistry[BertConfig] = PresetRegistry("bert preset")

_WORDPIECE_VOCAB = 30522  # bert-base-uncased's vocabulary (MiniLM uses it too)
# fmt: off
# BERT-Tiny / BERT-Mini (Turc et al. 2019, https://arxiv.org/abs/1908.08962): 2 x 128 and 4 x 256.
PRESETS.add("bert-tiny", BertConfig(vocab_size=_WORDPIECE_VOCAB, hidden_size=128, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=512))
PRESETS.add("bert-mini", BertConfig(vocab_size=_WORDPIECE_VOCAB, hidden_size=256, num_hidden_layers=4,
                                    num_attention_heads=4, intermediate_size=1024))
# all-MiniLM-L6-v2's shape (Wang et al. 2020, https://arxiv.org/abs/2002.10957): 6 x 384, 12 heads.
PRESETS.add("minilm-l6", BertConfig(vocab_size=_WORDPIECE_VOCAB, hidden_size=384, num_hidden_layers=6,
                                    num_attention_heads=12, intermediate_size=1536))
# bert-base (Devlin et al. 2019): 12 x 768.
PRESETS.add("bert-base", BertConfig(vocab_size=_WORDPIECE_VOCAB, hidden_size=768, num_hidden_layers=12,
                                    num_attention_heads=12, intermediate_size=3072))
# RoBERTa-shaped tiny model: one token type, positions from pad + 1 (pad = 1, <s> = 0, </s> = 2).
PRESETS.add("roberta-tiny", BertConfig(variant="roberta", vocab_size=1024, hidden_size=128, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=512, type_vocab_size=1,
                                       max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                                       eos_token_id=2, layer_norm_eps=1e-5))
# ALBERT-shaped tiny model: E = 32 projected to 128, one layer shared by 4 depths, tanh GELU, SOP head.
PRESETS.add("albert-tiny", BertConfig(variant="albert", vocab_size=1024, hidden_size=128, num_hidden_layers=4,
                                      num_attention_heads=2, intermediate_size=512, embedding_size=32,
                                      hidden_act="gelu_new", hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0, sentence_head=True))
# fmt: on
