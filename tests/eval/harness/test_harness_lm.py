"""ModelLM: loglikelihoods equal a direct full forward pass, batching changes nothing, is_greedy, generate_until."""

from __future__ import annotations

import pytest
import torch
from tiny_models import spread, tiny_gpt

from llmlab.eval.harness.lm import EvalLM, ModelLM, cut_at_stop

REQUESTS = [
    ("Review: the film was great. Sentiment:", " positive"),
    ("Review: the film was great. Sentiment:", " negative"),
    ("Question: 12 + 7 =", " 19"),
    ("Question: 40 - 3 = ", "37"),  # trailing space: moves onto the continuation
    ("The quick brown", " fox jumps over the lazy dog."),
    ("", "The quick brown fox"),  # empty context: BOS stands for it
]


def direct_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) from one unbatched full forward pass and a log_softmax over all positions."""
    stripped = context.rstrip()
    moved = context[len(stripped) :] + continuation
    if context == "":
        ctx, whole = [tokenizer.bos_id], [tokenizer.bos_id, *tokenizer.encode(continuation)]
    else:
        ctx, whole = tokenizer.encode(stripped), tokenizer.encode(stripped + moved)
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.float(), dim=-1)[0]  # (T, V)
    n = len(ctx)
    return sum(float(logp[t - 1, whole[t]]) for t in range(n, len(whole)))


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_loglikelihood_equals_direct_forward(tiny_lm_model, bpe_tokenizer, family):
    model = tiny_lm_model
    if family == "gpt":
        model = spread(tiny_gpt(0, vocab_size=bpe_tokenizer.vocab_size, n_head=4, block_size=64), std=0.2, seed=1)
    lm = ModelLM(model, bpe_tokenizer, batch_size=4)
    assert isinstance(lm, EvalLM)
    got = lm.loglikelihood(REQUESTS)
    for (ctx, cont), (ll, _) in zip(REQUESTS, got, strict=True):
        assert ll == pytest.approx(direct_loglikelihood(model, bpe_tokenizer, ctx, cont), abs=1e-4)
    assert len({round(ll, 3) for ll, _ in got}) == len(got)  # the model is not constant


def test_batching_does_not_change_results(tiny_lm_model, bpe_tokenizer):
    one = ModelLM(tiny_lm_model, bpe_tokenizer, batch_size=1).loglikelihood(REQUESTS)
    many = ModelLM(tiny_lm_model, bpe_tokenizer, batch_size=16).loglikelihood(REQUESTS)
    for (a, ga), (b, gb) in zip(one, many, strict=True):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb


def test_token_logprobs_sum_to_loglikelihood(tiny_lm_model, bpe_tokenizer):
    lm = ModelLM(tiny_lm_model, bpe_tokenizer)
    scored = lm.score(REQUESTS)
    for (ctx, cont), (lp, greedy), (ll, ll_greedy) in zip(REQUESTS, scored, lm.loglikelihood(REQUESTS), strict=True):
        assert lp.shape == (len(lm.encode_pair(ctx, cont)[1]),)
        assert float(lp.sum()) == pytest.approx(ll, abs=1e-5) and greedy == ll_greedy


def test_an_all_whitespace_context_conditions_on_the_prefix_token(tiny_lm_model, bpe_tokenizer):
    """lm-eval moves a context's trailing whitespace onto the continuation; when nothing is left, the continuation
    is scored after the prefix token, exactly like an empty context (not against an empty, mis-sliced prefix)."""
    lm = ModelLM(tiny_lm_model, bpe_tokenizer)
    context_ids, cont_ids = lm.encode_pair("\n", "the fox")
    assert context_ids == [lm.prefix_token_id] and cont_ids == bpe_tokenizer.encode("\nthe fox")
    (ll, _), (ll_empty, _) = lm.loglikelihood([("\n", "the fox"), ("", "\nthe fox")])
    assert ll == pytest.approx(ll_empty, abs=1e-6)


def test_is_greedy(tiny_lm_model, bpe_tokenizer):
    lm = ModelLM(tiny_lm_model, bpe_tokenizer)
    context = "Review: the film was great."
    ids = bpe_tokenizer.encode(context)
    greedy = []
    with torch.no_grad():
        for _ in range(3):
            logits = tiny_lm_model(torch.tensor([ids + greedy])).logits[0, -1]
            greedy.append(int(logits.argmax()))
    other = [(greedy[0] + 1) % bpe_tokenizer.vocab_size, *greedy[1:]]
    (_, yes), (_, no) = lm._score_tokens([(ids, greedy), (ids, other)])
    assert yes is True and no is False


def test_encode_pair_moves_trailing_space(bpe_tokenizer, tiny_lm_model):
    lm = ModelLM(tiny_lm_model, bpe_tokenizer)
    ctx, cont = lm.encode_pair("Question: 40 - 3 = ", "37")
    assert ctx == bpe_tokenizer.encode("Question: 40 - 3 =")
    assert ctx + cont == bpe_tokenizer.encode("Question: 40 - 3 = 37")
    bos = ModelLM(tiny_lm_model, bpe_tokenizer, add_bos=True)
    ctx_b, cont_b = bos.encode_pair("Question: 40 - 3 = ", "37")
    assert ctx_b == [bpe_tokenizer.bos_id, *ctx] and cont_b == cont


def test_generate_until_stops_at_stop_string(tiny_lm_model, bpe_tokenizer):
    lm = ModelLM(tiny_lm_model, bpe_tokenizer, batch_size=2)
    prompts = ["Review: the film", "Question: 12 + 7 =", "The quick"]
    free = lm.generate_until([(p, {"until": [], "max_new_tokens": 12}) for p in prompts])
    # a stop string taken from inside each free generation: the output is the text before it
    stops = [text[3:5] if len(text) >= 5 else "\u2603" for text in free]
    cut = lm.generate_until([(p, {"until": [s], "max_new_tokens": 12}) for p, s in zip(prompts, stops, strict=True)])
    for text, stop, short in zip(free, stops, cut, strict=True):
        assert short == cut_at_stop(text, [stop])
        assert stop not in short
    # batching and grouping keep the order and the greedy result of one prompt alone
    alone = [lm.generate_until([(p, {"until": [], "max_new_tokens": 12})])[0] for p in prompts]
    assert alone == free
    assert any(len(t) >= 5 for t in free)


def test_cut_at_stop_first_of_several():
    assert cut_at_stop("a1b2c", ["2", "1"]) == "a"
    assert cut_at_stop("abc", ["", "z"]) == "abc"


def test_long_context_is_left_truncated(tiny_lm_model, bpe_tokenizer):
    """(context + continuation)[-(max_length + 1):][:-1] is scored, as lm-eval does, and equals a direct forward."""
    lm = ModelLM(tiny_lm_model, bpe_tokenizer)
    context = "The quick brown fox jumps over the lazy dog. " * 12 + "Review: the film was"
    ctx, cont = lm.encode_pair(context, " great")
    assert len(ctx) + len(cont) > lm.max_length + 1 == 65
    window = (ctx + cont)[-(lm.max_length + 1) :]
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm_model(torch.tensor([window[:-1]])).logits.float(), dim=-1)[0]  # (64, V)
    expected = sum(float(logp[len(window) - 1 - len(cont) + k, t]) for k, t in enumerate(cont))
    assert lm.loglikelihood([(context, " great")])[0][0] == pytest.approx(expected, abs=1e-4)
