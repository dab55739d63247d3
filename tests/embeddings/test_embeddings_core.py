"""Pooling (hand-computed), the cosine index (save/load/search) and embed_texts options."""

from __future__ import annotations

import pytest
import torch

from llmlab.embeddings import EmbeddingIndex, embed_texts, l2_normalize, pool


def test_pooling_by_hand() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]], [[5.0, 0.0], [7.0, 8.0], [-1.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.tensor([[2.0, -1.0], [11 / 3, 17 / 3]]))
    torch.testing.assert_close(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [5.0, 0.0]]))
    torch.testing.assert_close(pool(hidden, mask, "max"), torch.tensor([[3.0, 2.0], [7.0, 9.0]]))  # pad not seen
    torch.testing.assert_close(l2_normalize(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))
    with pytest.raises(ValueError, match="unknown pooling 'sum'; choose one of: mean, cls, max"):
        pool(hidden, mask, "sum")


def test_index_search_save_load(tmp_path) -> None:
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]])
    index = EmbeddingIndex(vectors, ["east", "north", "north-east", "west"], meta={"model": "m"})
    hits = index.search(torch.tensor([[2.0, 0.1]]), k=3)
    assert [row for row, _ in hits[0]] == [0, 2, 1]
    assert hits[0][0][1] == pytest.approx(2.0 / (4.01**0.5))
    assert [row for row, _ in index.search(torch.tensor([0.0, -1.0]), k=10)[0]][-1] == 1  # k capped at N, worst last
    index.save(tmp_path / "idx")
    back = EmbeddingIndex.load(tmp_path / "idx")
    assert back.texts == index.texts and back.ids == ["0", "1", "2", "3"] and back.meta == {"model": "m"}
    torch.testing.assert_close(back.vectors, vectors)
    with pytest.raises(ValueError, match="query vectors have 3 dimensions but the index 2"):
        back.search(torch.ones(1, 3))
    with pytest.raises(ValueError, match="k must be at least 1"):
        back.search(torch.ones(1, 2), k=0)
    with pytest.raises(FileNotFoundError, match="is not an embedding index"):
        EmbeddingIndex.load(tmp_path)
    with pytest.raises(ValueError, match="4 vectors, 3 texts"):
        EmbeddingIndex(vectors, ["a", "b", "c"])


@pytest.fixture(scope="module")
def minilm():
    from llmlab.hub import load_for_inference
    from llmlab.models.bert import minilm_path

    loaded = load_for_inference(minilm_path())
    return loaded.model, loaded.tokenizer


def test_embed_texts_pooling_options(minilm) -> None:
    from llmlab.tokenizers.encoder import encode_texts

    model, tokenizer = minilm
    texts = ["first sentence here", "二", "a third, somewhat longer sentence for padding"]
    enc = encode_texts(tokenizer, texts, max_length=256)
    with torch.no_grad():
        hidden = model.encode(enc.input_ids, enc.attention_mask).last_hidden_state
    for pooling in ("mean", "cls", "max"):
        raw = embed_texts(model, tokenizer, texts, pooling=pooling, normalize=False, batch_size=2)
        torch.testing.assert_close(raw, pool(hidden, enc.attention_mask, pooling), atol=1e-5, rtol=0)
        unit = embed_texts(model, tokenizer, texts, pooling=pooling)
        torch.testing.assert_close(unit, l2_normalize(raw), atol=1e-5, rtol=0)
    short = embed_texts(model, tokenizer, texts, max_length=4)  # truncation changes the long ones only
    full = embed_texts(model, tokenizer, texts)
    assert torch.allclose(short[1], full[1], atol=1e-5) and not torch.allclose(short[2], full[2], atol=1e-3)
    assert embed_texts(model, tokenizer, []).shape == (0, 384)
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        embed_texts(model, tokenizer, texts, batch_size=0)


def test_texts_with_unicode_line_separators_round_trip(tmp_path) -> None:
    """A text holding U+2028, U+0085 or a form feed is one item: str.splitlines() splits on them, JSONL does not."""
    from llmlab.recipes.embed import read_texts

    texts = ["first\u2028still first", "second\x85still second", "third\x0cstill third"]
    index = EmbeddingIndex(l2_normalize(torch.randn(3, 4)), texts, ["a", "b", "c"])
    index.save(tmp_path / "index")
    loaded = EmbeddingIndex.load(tmp_path / "index")
    assert loaded.texts == texts and loaded.ids == ["a", "b", "c"]
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(texts) + "\n\nlast\n", encoding="utf-8")
    assert read_texts(txt) == ([*texts, "last"], ["1", "2", "3", "5"])
