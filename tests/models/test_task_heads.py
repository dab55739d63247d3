"""Task heads (`llmlab.models.task_heads`) against transformers' BertFor* classes on the same random weights,
plus the heads HF has no class for (relation, regression loss, decoders)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from llmlab.models import load_model  # noqa: E402
from llmlab.models.task_heads import TaskHeadModel, resize_token_embeddings  # noqa: E402

HF_CLASSES = {
    "sequence_classification": "BertForSequenceClassification",
    "regression": "BertForSequenceClassification",
    "token_classification": "BertForTokenClassification",
    "question_answering": "BertForQuestionAnswering",
    "multiple_choice": "BertForMultipleChoice",
}


def tiny_hf_config(num_labels: int = 3):  # noqa: ANN201
    return transformers.BertConfig(
        vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, type_vocab_size=2, num_labels=num_labels,
    )  # fmt: skip


def pair(task: str, tmp_path) -> tuple:  # noqa: ANN001
    """(HF task model, llmlab TaskHeadModel) holding the same weights."""
    torch.manual_seed(0)
    num_labels = {"regression": 1, "question_answering": 2}.get(task, 3)
    hf = getattr(transformers, HF_CLASSES[task])(tiny_hf_config(num_labels)).eval()
    body = transformers.BertModel(hf.config)  # with a pooler (token/QA models have none; unused by their heads)
    body.load_state_dict(hf.bert.state_dict(), strict=False)
    body.save_pretrained(tmp_path / "bert")
    ours = TaskHeadModel(load_model(tmp_path / "bert"), task, num_labels).eval()
    head = "qa_outputs" if task == "question_answering" else "classifier"
    getattr(ours, head).load_state_dict(getattr(hf, head).state_dict())
    return hf, ours


def batch(shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 97, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[..., -2:] = 0  # padding at the end of every row
    mask[0, ..., -4:] = 0
    types = torch.zeros(shape, dtype=torch.long)
    types[..., 5:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("task", list(HF_CLASSES))
def test_heads_match_transformers(task: str, tmp_path) -> None:  # noqa: ANN001
    hf, ours = pair(task, tmp_path)
    shape = (2, 4, 12) if task == "multiple_choice" else (3, 12)
    b = batch(shape)
    if task == "question_answering":
        labels = torch.tensor([[2, 4], [7, 7], [30, 1]])  # the 30 lies outside: ignored by both
        ref = hf(**b, start_positions=labels[:, 0], end_positions=labels[:, 1])
        ref_logits = torch.stack([ref.start_logits, ref.end_logits], dim=-1)
    elif task == "token_classification":
        labels = torch.randint(0, 3, shape, generator=torch.Generator().manual_seed(2))
        labels[b["attention_mask"] == 0] = -100
        ref = hf(**b, labels=labels)
        ref_logits = ref.logits
    elif task == "regression":
        labels = torch.tensor([0.5, -1.0, 2.0])
        ref = hf(**b, labels=labels)
        ref_logits = ref.logits.squeeze(-1)
    else:
        labels = torch.tensor([2, 0]) if task == "multiple_choice" else torch.tensor([2, 0, 1])
        ref = hf(**b, labels=labels)
        ref_logits = ref.logits
    out = ours(b["input_ids"], labels, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
    keep = b["attention_mask"].bool()[..., None] if ref_logits.dim() == 3 and task != "multiple_choice" else None
    if keep is not None:  # padding positions' logits are not defined the same way (masked rows); compare real ones
        assert torch.allclose(out.logits * keep, ref_logits * keep, atol=1e-5)
    else:
        assert torch.allclose(out.logits, ref_logits, atol=1e-5)
    assert out.logits.shape == ref_logits.shape
    assert torch.allclose(out.loss, ref.loss, atol=1e-5)


def test_relation_head_reads_the_start_markers(tmp_path) -> None:  # noqa: ANN001
    hf, _ = pair("sequence_classification", tmp_path)
    ours = TaskHeadModel(load_model(tmp_path / "bert"), "relation_classification", 4).eval()
    b = batch((2, 12))
    markers = torch.tensor([[1, 6], [3, 2]])
    out = ours(b["input_ids"], torch.tensor([3, 1]), attention_mask=b["attention_mask"], marker_positions=markers)
    h = hf.bert(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state  # (B, T, C)
    pooled = torch.cat([h[[0, 1], markers[:, 0]], h[[0, 1], markers[:, 1]]], dim=-1)  # (B, 2C)
    expected = pooled @ ours.classifier.weight.T + ours.classifier.bias
    assert torch.allclose(out.logits, expected, atol=1e-5)
    assert torch.allclose(out.loss, F.cross_entropy(expected, torch.tensor([3, 1])), atol=1e-6)


def test_resize_keeps_old_rows_and_the_mlm_tie(tmp_path) -> None:  # noqa: ANN001
    from llmlab.models.bert import Bert, BertConfig

    model = Bert(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=20, max_position_embeddings=32))  # fmt: skip
    old = model.embed_tokens.weight.detach().clone()
    resize_token_embeddings(model, 54)
    new = model.embed_tokens.weight
    assert new.shape == (54, 16) and torch.equal(new[:50], old)
    assert torch.allclose(new[50:], old.mean(0).expand(4, -1))
    assert model.lm_head.decoder.weight is new and model.lm_head.bias.shape == (54,)
    assert model.config.vocab_size == 54
    logits = model(torch.tensor([[1, 52, 53]])).logits
    assert logits.shape == (1, 3, 54)


def test_decoder_sequence_classification_and_regression() -> None:
    from tiny_models import tiny_gpt

    torch.manual_seed(0)
    base = tiny_gpt()
    ids = torch.randint(1, 50, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    cls = TaskHeadModel(base, "sequence_classification", 3, pad_id=0)
    out = cls(ids, torch.tensor([1, 2]), attention_mask=mask)
    assert out.logits.shape == (2, 3)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, torch.tensor([1, 2])))
    reg = TaskHeadModel(base, "regression", pad_id=0)
    out = reg(ids, torch.tensor([0.5, 1.5]), attention_mask=mask)
    assert out.logits.shape == (2,)
    assert torch.allclose(out.loss, F.mse_loss(out.logits, torch.tensor([0.5, 1.5])))
    with pytest.raises(ValueError, match="needs an encoder"):
        TaskHeadModel(base, "token_classification", 3)


def test_sentence_pool_replaces_the_pooler(tmp_path) -> None:  # noqa: ANN001
    from llmlab.embeddings.pooling import pool

    hf, _ = pair("sequence_classification", tmp_path)
    ours = TaskHeadModel(load_model(tmp_path / "bert"), "sequence_classification", 3,
                         sentence_pool=lambda h, m: pool(h, m, "mean")).eval()  # fmt: skip
    b = batch((3, 12))
    out = ours(b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
    h = hf.bert(**b).last_hidden_state  # (B, T, C)
    m = b["attention_mask"][..., None].float()
    mean = (h * m).sum(1) / m.sum(1)  # (B, C): the real tokens' mean
    assert torch.allclose(out.logits, ours.classifier(mean), atol=1e-5)


def test_resize_leaves_norms_as_wide_as_the_vocabulary_alone() -> None:
    """Only the tied output layer's bias grows: a LayerNorm whose width equals the vocabulary size keeps its
    shape (it used to be grown too, which broke the model)."""
    from llmlab.models.bert import Bert, BertConfig

    model = Bert(BertConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=20, max_position_embeddings=32))  # fmt: skip
    before = {name: p.shape for name, p in model.named_parameters() if p.ndim == 1}
    resize_token_embeddings(model, 20)
    after = {name: p.shape for name, p in model.named_parameters() if p.ndim == 1}
    assert before.pop("lm_head.bias") == (16,) and after.pop("lm_head.bias") == (20,)
    assert after == before and any(shape == (16,) and "norm" in name.lower() for name, shape in after.items())
    assert model(torch.tensor([[1, 18, 19]])).logits.shape == (1, 3, 20)
