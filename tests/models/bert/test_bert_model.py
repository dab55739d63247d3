"""The BERT family's own behaviour: padding masks, RoBERTa positions, ALBERT sharing, the MLM head and loss,
save/load, presets and one-line config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmlab.models import load_model
from llmlab.models.bert import Bert, BertConfig
from llmlab.nn.block import Block

PRESETS = ["bert-tiny", "roberta-tiny", "albert-tiny"]


def tiny(preset: str, seed: int = 0, **overrides: object) -> Bert:
    torch.manual_seed(seed)
    return Bert.from_preset(preset, vocab_size=50, hidden_dropout_prob=0.0, **overrides).eval()


@pytest.mark.parametrize("preset", PRESETS)
def test_padding_does_not_change_real_tokens(preset: str) -> None:
    model = tiny(preset)
    pad = model.config.pad_token_id
    long_row, short_row = [0, 7, 8, 9, 10, 11, 2], [0, 12, 13, 2]
    ids = torch.tensor([long_row, short_row + [pad] * 3])
    mask = (torch.arange(7)[None] < torch.tensor([[7], [4]])).long()
    with torch.no_grad():
        batch = model.encode(ids, mask).last_hidden_state
        alone = model.encode(torch.tensor([short_row])).last_hidden_state
        logits = model(ids, attention_mask=mask).logits
        alone_logits = model(torch.tensor([short_row])).logits
    torch.testing.assert_close(batch[1, :4], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[1, :4], alone_logits[0], atol=1e-5, rtol=0)


def test_roberta_positions_count_from_pad_plus_one() -> None:
    model = tiny("roberta-tiny")
    ids = torch.tensor([[0, 5, 6, 2, 1, 1]])  # pad = 1
    assert model.embeddings.position_ids(ids).tolist() == [[2, 3, 4, 5, 1, 1]]
    assert tiny("bert-tiny").embeddings.position_ids(ids).tolist() == [0, 1, 2, 3, 4, 5]
    assert model.config.block_size == 512 and model.config.position_offset == 2


def test_albert_shares_layers_across_depth() -> None:
    model = tiny("albert-tiny")
    assert len(model.layers) == 1 and isinstance(model.layers[0], Block) and not model.layers[0].pre_norm
    assert all(model.layer_at(d) is model.layers[0] for d in range(4))
    assert model.embeddings.word_embeddings.weight.shape == (50, 32) and model.embeddings.project is not None
    two = tiny("albert-tiny", num_hidden_groups=2)
    assert [list(two.layers).index(two.layer_at(d)) for d in range(4)] == [0, 0, 1, 1]
    ids = torch.tensor([[0, 5, 6, 2]])
    with torch.no_grad():
        before = model.encode(ids).last_hidden_state
        model.layers[0].ln_2.bias.add_(1.0)  # one shared layer changed: every depth changes
        after = model.encode(ids, output_hidden_states=True)
    assert not torch.allclose(before, after.last_hidden_state) and len(after.hidden_states) == 5


@pytest.mark.parametrize("preset", PRESETS)
def test_mlm_head_tied_and_loss_over_targets(preset: str) -> None:
    model = tiny(preset)
    assert model.lm_head.decoder.weight is model.embeddings.word_embeddings.weight
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 9, 10, 2]])
    targets = torch.full_like(ids, -100)
    targets[0, 2], targets[1, 3] = 11, 12
    out = model(ids, targets)
    assert out.logits.shape == (2, 5, 50)  # every position, no shift
    want = F.cross_entropy(out.logits[[0, 1], [2, 3]], torch.tensor([11, 12]))
    torch.testing.assert_close(out.loss, want)
    out.loss.backward()
    assert model.embeddings.word_embeddings.weight.grad is not None
    pooled = model.encode(ids).pooler_output
    assert pooled.shape == (2, model.config.hidden_size) and pooled.abs().max() <= 1  # tanh
    if model.config.sentence_head:
        assert model.sentence_logits(pooled).shape == (2, 2)
    else:
        with pytest.raises(ValueError, match="no NSP/SOP head"):
            model.sentence_logits(pooled)


@pytest.mark.parametrize("preset", PRESETS)
def test_save_and_load_round_trip(preset: str, tmp_path) -> None:
    model = tiny(preset, sentence_head=True)
    model.save_pretrained(tmp_path)
    back = load_model(tmp_path)
    assert isinstance(back, Bert) and back.config == model.config
    assert back.lm_head.decoder.weight is back.embeddings.word_embeddings.weight  # still tied after loading
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, model(ids).logits, atol=0, rtol=0)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert "lm_head.decoder.weight" not in f.keys()  # the tied copy is not stored


def test_bare_encoder_has_no_mlm_forward() -> None:
    model = tiny("bert-tiny", mlm_head=False)
    with pytest.raises(ValueError, match="has no masked-LM head"):
        model(torch.tensor([[0, 5, 2]]))
    assert model.encode(torch.tensor([[0, 5, 2]])).last_hidden_state.shape == (1, 3, 128)


def test_too_long_input_is_one_line() -> None:
    model = tiny("bert-tiny", max_position_embeddings=8)
    with pytest.raises(ValueError, match="longer than the model's 8 positions"):
        model.encode(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variant": "xlnet"}, "unknown model.variant 'xlnet'"),
        ({"hidden_size": 30}, "not divisible by num_attention_heads"),
        ({"embedding_size": 16}, "ALBERT options; set variant: albert"),
        ({"hidden_act": "relu"}, "hidden_act 'relu' is not supported"),
        ({"pooler": False, "sentence_head": True}, "sentence_head needs the pooler"),
        ({"pad_token_id": 99}, "outside the vocabulary"),
        ({"variant": "roberta", "max_position_embeddings": 1, "pad_token_id": 1}, "leaves no positions"),
    ],
)
def test_config_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BertConfig(vocab_size=50, **overrides).validate()


def test_presets_build() -> None:
    shapes = {"bert-tiny": (2, 128), "bert-mini": (4, 256), "minilm-l6": (6, 384)}
    for name, (layers, width) in shapes.items():
        c = Bert.presets.get(name)
        assert (c.n_layer, c.n_embd, c.vocab_size) == (layers, width, 30522)
    assert Bert.from_preset("roberta-tiny").config.type_vocab_size == 1


def test_block_diagonal_mask_packs_two_sequences() -> None:
    model = tiny("bert-tiny")
    a, b = [0, 5, 6, 2], [0, 7, 2]
    packed = torch.tensor([a + b])
    seg = torch.tensor([0] * 4 + [1] * 3)
    mask = (seg[:, None] == seg[None, :])[None, None]  # (1, 1, 7, 7)
    with torch.no_grad():
        got = model.encode(packed, mask, position_ids=torch.tensor([0, 1, 2, 3, 0, 1, 2])).last_hidden_state
        want_b = model.encode(torch.tensor([b])).last_hidden_state
    torch.testing.assert_close(got[0, 4:], want_b[0], atol=1e-5, rtol=0)
