"""BLEU, chrF and ROUGE against the libraries' documented examples and hand-computed cases."""

from __future__ import annotations

import math

import pytest

from llmlab.eval.metrics import bleu, chrf, rouge
from llmlab.eval.metrics.text import reference_lists

# sacrebleu README, "Using SacreBLEU from Python": two reference streams for three system sentences.
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_STREAMS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
# our layout: references[i] holds the references of hypothesis i
README_PER_SENTENCE = [list(refs) for refs in zip(*README_STREAMS, strict=True)]


def test_bleu_and_chrf_match_the_sacrebleu_readme():
    assert round(bleu(README_SYS, README_PER_SENTENCE), 2) == 48.53  # "BLEU = 48.53 82.4/50.0/45.5/37.5"
    assert round(chrf(README_SYS, README_PER_SENTENCE), 2) == 59.73  # "chrF2 = 59.73"


def test_bleu_variable_number_of_references_matches_the_sacrebleu_readme():
    # README "Variable Number of References": the first sentence loses its first reference -> BLEU = 29.44.
    references = [["The dog had bit the man."], *README_PER_SENTENCE[1:]]
    assert round(bleu(README_SYS, references), 2) == 29.44


def test_bleu_of_an_identical_sentence_is_100_and_of_disjoint_is_0():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["a b c d"], ["w x y z"]) == 0.0


def test_bleu_uses_uniform_weights_and_brevity_penalty_by_hand():
    # hyp 5 tokens, ref 6: p1 = 5/5, p2 = 4/4, p3 = 3/3, p4 = 2/2 -> geometric mean 1; BP = exp(1 - 6/5).
    assert bleu(["the cat sat on the"], ["the cat sat on the mat"]) == pytest.approx(100 * math.exp(1 - 6 / 5))
    # hyp 6 tokens (one wrong at the end), ref 6: p = 5/6, 4/5, 3/4, 2/3 -> (1/3) ** (1/4) with weights 1/4 each.
    got = bleu(["the cat sat on the rug"], ["the cat sat on the mat"])
    assert got == pytest.approx(100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)


def test_bleu_chinese_uses_the_zh_tokenizer():
    assert bleu(["我爱北京天安门"], ["我爱北京天安门"], lang="zh") == pytest.approx(100.0)
    # characters: p1..p4 = 6/7, 5/6, 4/5, 3/4; hypothesis longer -> BP = 1; geometric mean = (3/7) ** (1/4).
    assert bleu(["今天天气很好啊"], ["今天天气很好"], lang="zh") == pytest.approx(100 * (3 / 7) ** 0.25)
    # 13a keeps the unsegmented sentence as one token, so the same pair scores 0 without the zh tokenizer.
    assert bleu(["今天天气很好啊"], ["今天天气很好"], lang="en") == 0.0


def test_chrf_identical_is_100():
    assert chrf(["hello world"], ["hello world"]) == pytest.approx(100.0)
    assert chrf(["今天天气很好"], ["今天天气很好"], lang="zh") == pytest.approx(100.0)


def test_rouge_matches_the_rouge_score_readme_example_by_hand():
    # rouge-score README: target 'The quick brown fox jumps over the lazy dog', prediction
    # 'The quick brown dog jumps on the log.'. Unigram overlap the x2, quick, brown, dog, jumps = 6:
    # P = 6/8, R = 6/9, F = 12/17. LCS = the quick brown jumps the = 5: F = 2*5/(8+9) = 10/17.
    scores = rouge(["The quick brown dog jumps on the log."], ["The quick brown fox jumps over the lazy dog"])
    assert scores["rouge1"] == pytest.approx(12 / 17)
    assert scores["rougeL"] == pytest.approx(10 / 17)
    # bigrams: pred 7, target 8, overlap (the quick), (quick brown) = 2 -> F = 2*2/(7+8).
    assert scores["rouge2"] == pytest.approx(4 / 15)


def test_rouge_l_is_an_f_measure_not_recall():
    # the reference is a subsequence of the hypothesis: recall 1, precision 3/6 -> F = 2/3, not 1.
    scores = rouge(["a b c x y z"], ["a b c"])
    assert scores["rougeL"] == pytest.approx(2 / 3)


def test_rouge_chinese_is_character_level():
    # 今天天气很好啊 (7 chars) vs 今天天气很好 (6): LCS 6 -> F = 12/13; default tokenizer would see nothing.
    scores = rouge(["今天天气很好啊"], ["今天天气很好"], lang="zh")
    assert scores["rougeL"] == pytest.approx(12 / 13)
    assert scores["rouge1"] == pytest.approx(12 / 13)


def test_rouge_multiple_references_take_the_best_and_average_over_examples():
    scores = rouge(["a b", "c d"], [["x y", "a b"], ["c z"]])
    assert scores["rouge1"] == pytest.approx((1.0 + 0.5) / 2)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        chrf(["a"], ["a"], lang="fr")
    with pytest.raises(ValueError, match="no hypotheses"):
        rouge([], [])
    with pytest.raises(ValueError, match="hypothesis 0 has no reference"):
        reference_lists(["a"], [[]])
