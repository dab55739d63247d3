"""The packaged all-MiniLM-L6-v2 in llmlab equals transformers' BertModel (hidden states) and
sentence-transformers (sentence embeddings: mean pooling + L2 normalisation) on 20 zh/en sentences."""

from __future__ import annotations

import pytest
import torch

from llmlab.embeddings import embed_texts
from llmlab.models.bert import Bert, minilm_path
from llmlab.tokenizers.encoder import encode_texts

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "A quick brown fox jumps over the lazy dog.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "I love this phone, the battery lasts two days!",
    "Terrible service, I will never come back to this restaurant.",
    "How do I reset my password?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "She plays the violin in the city orchestra every Sunday.",
    "Deep learning models need a lot of data.",
    "ok",
    "今天天气很好，我们去公园散步吧。",
    "这家餐厅的菜太难吃了，服务也很差。",
    "我非常喜欢这部电影，演员的表演很精彩。",
    "北京是中华人民共和国的首都。",
    "请问去火车站怎么走？",
    "机器学习是人工智能的一个分支。",
    "他每天早上六点起床跑步。",
    "这本书我已经看了三遍了。",
    "Mixed 中英文 sentence with numbers 12345 and symbols #@!",
    "A much longer sentence that keeps going, clause after clause, so that the batch needs real padding for "
    "the shorter rows; it mentions Paris, Tokyo, 上海 and 深圳, and ends here.",
]


@pytest.fixture(scope="module")
def minilm():
    from llmlab.hub import load_for_inference

    loaded = load_for_inference(minilm_path())
    return loaded.model, loaded.tokenizer


def test_packaged_minilm_loads_as_bert(minilm) -> None:
    model, tokenizer = minilm
    assert isinstance(model, Bert) and not model.training
    c = model.config
    assert (c.variant, c.num_hidden_layers, c.hidden_size, c.vocab_size) == ("bert", 6, 384, 30522)
    assert tokenizer.vocab_size == 30522 and not c.mlm_head and c.pooler


def test_hidden_states_equal_transformers(minilm) -> None:
    from transformers import AutoTokenizer, BertModel

    model, tokenizer = minilm
    enc = encode_texts(tokenizer, SENTENCES, max_length=256)
    ref_batch = AutoTokenizer.from_pretrained(minilm_path())(
        SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt"
    )
    assert torch.equal(enc.input_ids, ref_batch["input_ids"]) and torch.equal(
        enc.attention_mask, ref_batch["attention_mask"]
    )
    reference = BertModel.from_pretrained(minilm_path()).eval()
    with torch.no_grad():
        want = reference(**ref_batch, output_hidden_states=True)
        got = model.encode(enc.input_ids, enc.attention_mask, enc.token_type_ids, output_hidden_states=True)
    real = enc.attention_mask.bool()
    assert len(got.hidden_states) == 7
    for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(g[real], w[real], atol=1e-5, rtol=0)  # (padding positions carry no meaning)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=0)


def test_sentence_embeddings_equal_sentence_transformers(minilm) -> None:
    from sentence_transformers import SentenceTransformer

    model, tokenizer = minilm
    reference = SentenceTransformer(str(minilm_path()), device="cpu")
    want = reference.encode(SENTENCES, batch_size=8, convert_to_tensor=True)
    got = embed_texts(model, tokenizer, SENTENCES, batch_size=8)
    assert got.shape == (20, 384)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(20), atol=1e-5, rtol=0)
    # batching and order do not change a vector: one at a time gives the same rows
    one_by_one = torch.cat([embed_texts(model, tokenizer, [s]) for s in SENTENCES[::-1]])
    torch.testing.assert_close(one_by_one, got.flip(0), atol=1e-5, rtol=0)
