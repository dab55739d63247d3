"""T5 against `transformers`: logits with padding masks (v1.0 ReLU tied, v1.1 gated-GELU untied), the relative
position buckets, HF import/export round trips and the llmlab folder format."""

from __future__ import annotations

import pytest
import torch
from seq2seq_models import sources, tiny_hf_t5, to_llmlab

from llmlab.models import load_model, model_family, save_hf
from llmlab.models.t5 import T5, T5Config
from llmlab.nn.positions import relative_position_bucket


@pytest.mark.parametrize("kind", ["relu", "gated-gelu"])
def test_logits_equal_transformers_with_padding(kind, tmp_path):
    hf = tiny_hf_t5(kind, decoder_layers=3)
    model = to_llmlab(hf, tmp_path)
    assert isinstance(model, T5) and model_family(model) == "t5"
    assert model.config.tie_embeddings == (kind == "relu") and model.config.decoder_layers == 3
    ids, mask = sources()
    dec = torch.randint(2, 96, (3, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        out = model(ids, attention_mask=mask, decoder_input_ids=dec)
    torch.testing.assert_close(out.logits, ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.encoder_last_hidden_state, hf.encoder(ids, attention_mask=mask).last_hidden_state)


def test_loss_on_labels_equals_transformers(tmp_path):
    hf = tiny_hf_t5("gated-gelu")
    model = to_llmlab(hf, tmp_path)
    ids, mask = sources()
    labels = torch.randint(2, 96, (3, 6), generator=torch.Generator().manual_seed(4))
    labels[1, 4:] = -100  # ignored target positions
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, labels=labels)
        out = model(ids, labels, attention_mask=mask)
    torch.testing.assert_close(out.logits, ref.logits, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_buckets_equal_transformers(bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 300)[None, :] - torch.arange(0, 40)[:, None]  # (T, S)
    for buckets, distance in ((32, 128), (8, 20)):
        ref = T5Attention._relative_position_bucket(rel, bidirectional, buckets, distance)
        assert torch.equal(relative_position_bucket(rel, bidirectional, buckets, distance), ref)


@pytest.mark.parametrize("kind", ["relu", "gated-gelu"])
def test_export_to_hf_round_trip(kind, tmp_path):
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5.from_preset("t5-tiny" if kind == "relu" else "t5-v1_1-tiny").eval()
    save_hf(model, tmp_path / "hf")
    hf = T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    ids, mask = sources(vocab=256)
    dec = torch.randint(0, 256, (3, 5))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        out = model(ids, attention_mask=mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)
    back = load_model(tmp_path / "hf")  # and back to llmlab: the same tensors
    assert back.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_llmlab_folder_round_trip(tmp_path):
    model = T5.from_preset("t5-v1_1-tiny", dropout=0.0).eval()
    model.save_pretrained(tmp_path)
    back = load_model(tmp_path)
    ids = torch.randint(0, 256, (2, 7))
    with torch.no_grad():
        assert torch.equal(back(ids, decoder_input_ids=ids[:, :3]).logits, model(ids, decoder_input_ids=ids[:, :3]).logits)


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match="gated-gelu"):
        T5Config(mlp="swiglu").validate()
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        T5Config(vocab_size=10, decoder_start_token_id=12).validate()
    with pytest.raises(ValueError, match="feed_forward_proj"):
        from llmlab.models.t5 import config_from_hf

        config_from_hf({"feed_forward_proj": "gated-silu", "vocab_size": 8, "d_model": 4, "num_heads": 1, "d_kv": 4, "d_ff": 4, "num_layers": 1})
