"""Classification: the sequence-classification head and label scoring by log-likelihood."""

from __future__ import annotations

import pytest
import torch
from finetune_helpers import tiny_gpt, tiny_llama

from llmlab.data.sft import SFTExample
from llmlab.models.heads import HiddenStateCapture, SequenceClassifier, label_log_likelihoods, score_labels


def toy_batch(n: int, vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label = whether token 7 occurs in a random right-padded row (needs attention over the whole row)."""
    lengths = torch.randint(4, 12, (n,), generator=gen)
    ids = torch.zeros(n, 12, dtype=torch.long)
    mask = torch.zeros(n, 12, dtype=torch.long)
    labels = torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        row = torch.randint(10, vocab, (int(lengths[i]),), generator=gen)
        if labels[i]:
            row[torch.randint(0, int(lengths[i]), (1,), generator=gen)] = 7
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask, labels


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_classification_head_trains_on_toy_task(family) -> None:
    torch.manual_seed(0)
    base = (tiny_llama if family == "llama" else tiny_gpt)(64)
    clf = SequenceClassifier(base, num_labels=2, pad_id=0)
    opt = torch.optim.AdamW(clf.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        ids, mask, labels = toy_batch(32, 64, gen)
        loss = clf(ids, labels, attention_mask=mask).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids, mask, labels = toy_batch(256, 64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        acc = (clf(ids, attention_mask=mask).logits.argmax(-1) == labels).float().mean().item()
    assert acc > 0.85, acc


def test_head_reads_the_last_real_token() -> None:
    base = tiny_llama(64).eval()
    clf = SequenceClassifier(base, num_labels=3, pad_id=0).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    with torch.no_grad():
        batched = clf(ids, attention_mask=(ids != 0).long()).logits
        alone = clf(torch.tensor([[5, 6, 7]])).logits
        by_pad_id = clf(ids).logits  # no mask: the last non-pad token is found from pad_id
        with HiddenStateCapture(base) as cap:
            base(torch.tensor([[5, 6, 7]]))
    torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(by_pad_id, batched)
    torch.testing.assert_close(alone[0], clf.score(cap.hidden[0, -1]))
    assert cap.hidden.shape == (1, 3, 32)


def test_head_matches_transformers_sequence_classification(tmp_path) -> None:
    """Same base weights and score matrix: the logits of HF's LlamaForSequenceClassification, on right- and
    left-padded rows, found through pad_token_id (HF's rule: the rightmost non-pad token) or the mask."""
    from transformers import LlamaForSequenceClassification

    from llmlab.models.llama.hf import save_hf_llama

    base = tiny_llama(64).eval()
    clf = SequenceClassifier(base, num_labels=3, pad_id=0).eval()
    save_hf_llama(base, tmp_path / "hf")
    hf = LlamaForSequenceClassification.from_pretrained(tmp_path / "hf", num_labels=3, pad_token_id=0).eval()
    with torch.no_grad():
        hf.score.weight.copy_(clf.score.weight)
    right = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    left = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 5, 6, 7]])
    with torch.no_grad():
        for ids in (right, left):
            mask = (ids != 0).long()
            torch.testing.assert_close(clf(ids).logits, hf(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
            expected = hf(input_ids=ids, attention_mask=mask).logits
            torch.testing.assert_close(clf(ids, attention_mask=mask).logits, expected, rtol=1e-4, atol=1e-5)


def test_label_log_likelihoods_match_manual_scores() -> None:
    model = tiny_gpt(64).eval()
    prompt, labels = [3, 4, 5], [[10], [11, 12]]
    scores = label_log_likelihoods(model, prompt, labels)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([[3, 4, 5, 11, 12]])).logits[0], -1)
    torch.testing.assert_close(scores[1], logp[2, 11] + logp[3, 12])
    torch.testing.assert_close(scores[0], logp[2, 10])


@pytest.mark.parametrize("labels", [[[10], [11]], [[10], [11, 12], [13, 14, 15]]], ids=["one-token", "multi-token"])
def test_score_labels_batches_prompts_of_different_lengths(labels) -> None:
    """Batched, right-padded scoring of several prompts equals scoring each prompt on its own."""
    model = tiny_gpt(64).eval()
    prompts = [[3, 4, 5], [7], [1, 2, 3, 4, 5, 6, 7], [9, 9]]
    batched = score_labels(model, prompts, labels, batch_size=3)
    assert batched.shape == (len(prompts), len(labels))
    for i, prompt in enumerate(prompts):
        torch.testing.assert_close(batched[i], label_log_likelihoods(model, prompt, labels), rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([prompt + labels[-1]])).logits[0], -1)
        want = sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(labels[-1]))
        torch.testing.assert_close(batched[i, -1], want, rtol=1e-5, atol=1e-5)


def test_label_accuracy_picks_the_likeliest_label(tokenizer) -> None:
    """A model that always predicts one token is right exactly on the examples with that label."""
    from llmlab.recipes.finetune import label_accuracy

    class Always(torch.nn.Module):
        def __init__(self, tok: int, vocab: int) -> None:
            super().__init__()
            self.tok, self.vocab, self.w = tok, vocab, torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids, attention_mask=None):  # noqa: ANN001, ANN202
            logits = torch.zeros(*ids.shape, self.vocab)
            logits[..., self.tok] = 10.0
            return type("Out", (), {"logits": logits})()

    red, blue = tokenizer.encode("red"), tokenizer.encode("blue")
    exs = [
        SFTExample([1, 2] + red, [], prompt_len=2),
        SFTExample([1, 2] + blue, [], prompt_len=2),
        SFTExample([1, 2] + blue, [], prompt_len=2),
    ]
    acc, n = label_accuracy(Always(blue[0], tokenizer.vocab_size), tokenizer, exs, ["red", "blue"])
    assert n == 3 and acc == pytest.approx(2 / 3)
