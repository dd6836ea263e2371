"""Evaluation results: per-user metric arrays, means, confidence intervals, slices, paired tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from lmrec.errors import ConfigError


@dataclass
class EvalResult:
    """Per-user metric arrays (aligned with ``users``), aggregates and per-user facts for slicing."""

    model: str
    part: str
    mode: str
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    aggregate: dict[str, float]
    user_info: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def means(self) -> dict[str, float]:
        """Mean over users; NaN entries (e.g. AUC of a user with no other candidate) are left out."""
        return {k: _nanmean(v) for k, v in self.per_user.items()}

    def ci95(self) -> dict[str, tuple[float, float]]:
        """Normal-approximation 95% confidence interval of each mean (over users)."""
        out = {}
        for k, v in self.per_user.items():
            v = v[~np.isnan(v)]
            half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
            out[k] = (float(v.mean() - half), float(v.mean() + half))
        return out

    def summary(self) -> dict[str, float]:
        """Means and aggregates in one flat dict."""
        return {**self.means(), **self.aggregate}

    def slice_means(self, by: str, bins: list[float] | None = None) -> dict[str, dict[str, float]]:
        """Metric means per group of users: ``by`` is a key of ``user_info`` (e.g. ``history_length``,
        ``target_popularity``, ``cold_target``); numeric facts are cut into ``bins`` (default: quartiles)."""
        if by not in self.user_info:
            raise ConfigError(f"unknown slice {by!r}; available: {', '.join(self.user_info)}")
        values = self.user_info[by]
        if values.dtype == bool:
            groups = {str(g): values == g for g in (False, True)}
        else:
            edges = np.unique(np.quantile(values, [0, .25, .5, .75, 1])) if bins is None else np.asarray(bins)
            if len(edges) == 1:  # every user has the same value
                edges = np.array([edges[0], edges[0]])
            groups = {}
            for lo, hi in zip(edges[:-1], edges[1:]):
                last = hi == edges[-1]
                sel = (values >= lo) & ((values <= hi) if last else (values < hi))
                groups[f"[{lo:g}, {hi:g}{']' if last else ')'}"] = sel
        return {g: {"users": int(sel.sum()), **{k: _nanmean(v[sel]) for k, v in self.per_user.items()}}
                for g, sel in groups.items()}


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def compare(a: EvalResult, b: EvalResult, metric: str) -> dict[str, Any]:
    """Paired comparison of two results over the users they share: t-test and Wilcoxon signed-rank."""
    common, ia, ib = np.intersect1d(a.users, b.users, return_indices=True)
    if len(common) < 2:
        raise ConfigError("compare needs at least two users evaluated by both results")
    x, y = a.per_user[metric][ia], b.per_user[metric][ib]
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    t = stats.ttest_rel(x, y)
    diff = x - y
    w = stats.wilcoxon(x, y) if np.any(diff != 0) else None
    return {"metric": metric, "users": int(len(x)), "mean_a": float(x.mean()), "mean_b": float(y.mean()),
            "diff": float(diff.mean()), "t_stat": float(t.statistic) if np.isfinite(t.statistic) else 0.0,
            "t_p": float(t.pvalue) if np.isfinite(t.pvalue) else 1.0,
            "wilcoxon_stat": float(w.statistic) if w else 0.0, "wilcoxon_p": float(w.pvalue) if w else 1.0}
