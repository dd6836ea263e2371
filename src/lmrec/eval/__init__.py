"""Honest evaluation: per-user metrics, full-ranking Evaluator, paired comparisons, reports."""

from lmrec.eval.ranking import EvalResult, Evaluator, Sampled, compare, recommend

__all__ = ["EvalResult", "Evaluator", "Sampled", "compare", "recommend"]
