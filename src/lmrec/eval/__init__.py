"""Honest evaluation: per-user metrics, full-ranking Evaluator, paired comparisons, reports."""

from lmrec.eval.ranking import Evaluator, Sampled, lock_test_part
from lmrec.eval.results import EvalResult, compare
from lmrec.eval.topk import recommend, top_k

__all__ = ["EvalResult", "Evaluator", "Sampled", "compare", "recommend", "lock_test_part", "top_k"]
