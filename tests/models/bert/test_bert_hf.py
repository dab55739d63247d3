"""HF <-> llmlab conversion of tiny random BERT / RoBERTa / ALBERT models: equal outputs both ways."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from bert_helpers import tiny_batch, tiny_hf

from llmlab.models import load_model, save_hf
from llmlab.models.bert import Bert

ATOL = 1e-5
ARCHS = [
    "BertModel",
    "BertForMaskedLM",
    "BertForPreTraining",
    "RobertaModel",
    "RobertaForMaskedLM",
    "AlbertModel",
    "AlbertForMaskedLM",
    "AlbertForPreTraining",
]


def _inputs(arch: str) -> dict[str, torch.Tensor]:
    batch = tiny_batch(pad_id=1 if arch.startswith("Roberta") else 0)
    if arch.startswith("Roberta"):
        batch.pop("token_type_ids")  # one token type
    return batch


def _compare(hf_model, ours: Bert, arch: str) -> None:
    """Hidden states, pooled output and every head's logits equal (real tokens)."""
    batch = _inputs(arch)
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        ref = hf_model(**batch, output_hidden_states=True)
        enc = ours.encode(**batch, output_hidden_states=True)
    assert len(enc.hidden_states) == len(ref.hidden_states)
    for got, want in zip(enc.hidden_states, ref.hidden_states, strict=True):
        torch.testing.assert_close(got[mask], want[mask], atol=ATOL, rtol=0)
    if arch.endswith("Model"):
        torch.testing.assert_close(enc.pooler_output, ref.pooler_output, atol=ATOL, rtol=0)
        return
    with torch.no_grad():
        out = ours(
            batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch.get("token_type_ids")
        )
    want_logits = ref.prediction_logits if arch.endswith("ForPreTraining") else ref.logits
    torch.testing.assert_close(out.logits[mask], want_logits[mask], atol=ATOL, rtol=0)
    if arch.endswith("ForPreTraining"):
        want_sentence = ref.seq_relationship_logits if arch.startswith("Bert") else ref.sop_logits
        torch.testing.assert_close(ours.sentence_logits(enc.pooler_output), want_sentence, atol=ATOL, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_hf_to_llmlab_to_hf(arch: str, tmp_path) -> None:
    import transformers

    hf_model = tiny_hf(arch)
    hf_model.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, Bert) and ours.config.variant == arch.split("For")[0].removesuffix("Model").lower()
    _compare(hf_model, ours, arch)
    save_hf(ours, tmp_path / "back")
    again = getattr(transformers, arch).from_pretrained(tmp_path / "back").eval()
    _compare(again, ours, arch)
    for (name, a), b in zip(hf_model.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("preset", ["bert-tiny", "roberta-tiny", "albert-tiny"])
def test_llmlab_to_hf_to_llmlab(preset: str, tmp_path) -> None:
    import transformers

    torch.manual_seed(0)
    ours = Bert.from_preset(preset, vocab_size=99, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).eval()
    save_hf(ours, tmp_path / "hf")
    arch = transformers.AutoConfig.from_pretrained(tmp_path / "hf").architectures[0]
    assert arch == {"bert-tiny": "BertForMaskedLM", "roberta-tiny": "RobertaForMaskedLM"}.get(
        preset, "AlbertForPreTraining"
    )
    hf_model = getattr(transformers, arch).from_pretrained(tmp_path / "hf").eval()
    _compare(hf_model, ours, arch)
    back = load_model(tmp_path / "hf")
    assert dataclasses.replace(back.config, extra={}).resolved() == ours.config.resolved()
    for (name, a), b in zip(ours.state_dict().items(), back.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)  # the pooler too (kept in *ForMaskedLM)


def test_sequence_classification_checkpoint_reads_the_encoder(tmp_path) -> None:
    hf_model = tiny_hf("BertForSequenceClassification")
    hf_model.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    _compare(hf_model.bert, ours, "BertModel")


def test_unsupported_variants_fail_in_one_line(tmp_path) -> None:
    hf_model = tiny_hf("BertModel")
    hf_model.config.position_embedding_type = "relative_key"
    hf_model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key' is not supported"):
        load_model(tmp_path)


def test_old_layernorm_names_are_read(tmp_path) -> None:
    """Checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta."""
    from safetensors.torch import load_file, save_file

    hf_model = tiny_hf("BertModel")
    hf_model.save_pretrained(tmp_path)
    sd = load_file(str(tmp_path / "model.safetensors"))
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in sd.items()
    }
    assert any(k.endswith("gamma") for k in renamed)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    _compare(hf_model, load_model(tmp_path), "BertModel")


def test_bare_encoder_without_pooler_weights(tmp_path) -> None:
    """HF's token/QA heads build their encoder with add_pooling_layer=False: the folder has no pooler."""
    import transformers

    hf_model = tiny_hf("BertForTokenClassification").bert
    hf_model.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert not ours.config.pooler and ours.encode(torch.tensor([[1, 5, 2]])).pooler_output is None
    batch = tiny_batch()
    with torch.no_grad():
        want = hf_model(**batch).last_hidden_state
    got = ours.encode(**batch).last_hidden_state
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask], atol=ATOL, rtol=0)
    save_hf(ours, tmp_path / "back")
    assert transformers.BertModel.from_pretrained(tmp_path / "back", add_pooling_layer=False) is not None
