"""Evaluation metrics from well-kept libraries, plain Python in and floats out.

BLEU and chrF (sacrebleu, 0-100), ROUGE-1/2/L F-measure (rouge-score, 0-1; Chinese at character level),
SQuAD exact match and token F1 (0-1; Chinese by characters), accuracy and macro-F1 (scikit-learn),
expected calibration error, and standard errors (analytic for means, bootstrap for corpus metrics).
Each module's docstring states its formula.
"""

from llmlab.eval.metrics.classification import accuracy, expected_calibration_error, macro_f1
from llmlab.eval.metrics.qa import exact_match, normalize_answer, token_f1
from llmlab.eval.metrics.stats import bootstrap_stderr, mean_stderr
from llmlab.eval.metrics.text import bleu, chrf, rouge
from llmlab.eval.metrics.tokens import LANGS, char_level_tokens

__all__ = [
    "LANGS",
    "accuracy",
    "bleu",
    "bootstrap_stderr",
    "char_level_tokens",
    "chrf",
    "exact_match",
    "expected_calibration_error",
    "macro_f1",
    "mean_stderr",
    "normalize_answer",
    "rouge",
    "token_f1",
]
