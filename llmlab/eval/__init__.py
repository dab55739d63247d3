"""Evaluation: sliding-window perplexity, bits per character and bits per byte on held-out text."""

from llmlab.eval.perplexity import Window, evaluate_perplexity, score_tokens, sliding_windows

__all__ = ["Window", "evaluate_perplexity", "score_tokens", "sliding_windows"]
