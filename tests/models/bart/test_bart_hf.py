"""BART against `transformers`: logits with padding masks (scaled and unscaled embeddings), HF import/export
round trips, learned-position limits."""

from __future__ import annotations

import pytest
import torch
from seq2seq_models import sources, tiny_hf_bart, to_llmlab

from llmlab.models import load_model, model_family, save_hf
from llmlab.models.bart import Bart


@pytest.mark.parametrize("scale_embedding", [True, False])
def test_logits_and_loss_equal_transformers(scale_embedding, tmp_path):
    hf = tiny_hf_bart(scale_embedding=scale_embedding)
    model = to_llmlab(hf, tmp_path)
    assert isinstance(model, Bart) and model_family(model) == "bart"
    ids, mask = sources()
    labels = torch.randint(3, 96, (3, 8), generator=torch.Generator().manual_seed(2))
    labels[2, 5:] = -100
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, labels=labels)
        out = model(ids, labels, attention_mask=mask)
    torch.testing.assert_close(out.logits, ref.logits, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)


def test_export_to_hf_round_trip(tmp_path):
    from transformers import BartForConditionalGeneration

    torch.manual_seed(0)
    model = Bart.from_preset("bart-tiny", scale_embedding=True).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_()
    save_hf(model, tmp_path / "hf")
    hf = BartForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    ids, mask = sources(vocab=256)
    dec = torch.randint(0, 256, (3, 5))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        out = model(ids, attention_mask=mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)
    back = load_model(tmp_path / "hf")
    assert back.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_positions_beyond_block_size_are_an_error():
    model = Bart.from_preset("bart-tiny", block_size=8)
    with pytest.raises(ValueError, match="block_size=8"):
        model.encode(torch.zeros(1, 9, dtype=torch.long))


def test_llmlab_folder_round_trip(tmp_path):
    model = Bart.from_preset("bart-tiny").eval()
    model.save_pretrained(tmp_path)
    back = load_model(tmp_path)
    ids = torch.randint(3, 256, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(back(ids, labels=ids).logits, model(ids, labels=ids).logits, atol=0, rtol=0)
