"""Online evaluation: how the lists the service served did, judged by what each user did next.

Every list served to a known user is logged (``served`` in the store). A list's outcome is the user's first
liked event after it was served and before the next list served to them (and within ``window`` seconds):
hit@k and NDCG@k say whether, and how high, the list held that item; click-through says whether the user
took any item of the list. Grouped by A/B arm and model version (name and bundle generation), overall and
per time bucket; between two arms, Welch's two-sample t-test on the per-list hit (users are split between
arms, so the samples are independent) says whether the difference is significant.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from lmrec.serve.state import NOT_HISTORY
from lmrec.serve.store import EventStore, ServedList


@dataclass
class Outcome:
    served: ServedList
    next_item: str | None  # the first liked item after the list, or None
    clicked: bool  # the user took an item of the list before the next list (within the window)


def outcomes(store: EventStore, window: float = 3600.0) -> list[Outcome]:
    """Each logged list with what its user did next."""
    events: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for user, item, kind, received in store.timed_events():
        if kind not in NOT_HISTORY:
            events[user].append((received, item))
    served = store.served()
    by_user: dict[str, list[ServedList]] = defaultdict(list)
    for s in served:
        by_user[s.user].append(s)
    out = []
    for user, lists in by_user.items():
        mine = events.get(user, [])
        times = [t for t, _ in mine]
        for n, s in enumerate(lists):
            end = min(s.time + window, lists[n + 1].time if n + 1 < len(lists) else np.inf)
            start = bisect.bisect_right(times, s.time)
            after = [item for t, item in mine[start:] if t <= end]
            shown = set(s.items)
            out.append(Outcome(s, after[0] if after else None, any(i in shown for i in after)))
    return sorted(out, key=lambda o: o.served.time)


def _summary(group: list[Outcome], k: int) -> dict[str, Any]:
    judged = [o for o in group if o.next_item is not None]
    hits = np.array([o.next_item in o.served.items[:k] for o in judged], dtype=np.float64)
    ndcg = np.array([1 / np.log2(o.served.items.index(o.next_item) + 2) if o.next_item in o.served.items[:k] else 0.0
                     for o in judged])
    clicks = np.array([o.clicked for o in group], dtype=np.float64)

    def mean_ci(x: np.ndarray) -> list[float | None]:
        """[mean, low, high] of a 95% normal interval; None where undefined (JSON has no NaN)."""
        if len(x) == 0:
            return [None, None, None]
        if len(x) == 1:
            return [round(float(x.mean()), 4), None, None]
        half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))  # every metric here lies in [0, 1]: so does its interval
        return [round(float(x.mean()), 4), round(max(0.0, float(x.mean() - half)), 4),
                round(min(1.0, float(x.mean() + half)), 4)]

    return {"lists": len(group), "judged": len(judged), "users": len({o.served.user for o in group}),
            f"hit@{k}": mean_ci(hits), f"ndcg@{k}": mean_ci(ndcg), "click_through": mean_ci(clicks),
            "items_served": len({i for o in group for i in o.served.items[:k]})}


def report(store: EventStore, k: int = 10, window: float = 3600.0, bucket: float | None = 3600.0,
           n_items: int | None = None) -> dict[str, Any]:
    """Online metrics per arm and model version (mean and 95% interval), per time bucket, and the test
    between the two arms when there are two."""
    found = outcomes(store, window)
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in found:
        groups[(o.served.arm, o.served.model)].append(o)
    rows = [{"arm": arm, "model": model, **_summary(g, k)} for (arm, model), g in sorted(groups.items())]
    if n_items:
        for r in rows:
            r["coverage"] = round(r["items_served"] / n_items, 4)
    buckets = []
    if bucket and found:
        start = found[0].served.time
        per: dict[tuple[int, str], list[Outcome]] = defaultdict(list)
        for o in found:
            per[(int((o.served.time - start) // bucket), o.served.arm)].append(o)
        buckets = [{"bucket": b, "from": start + b * bucket, "arm": arm, **_summary(g, k)}
                   for (b, arm), g in sorted(per.items())]
    out: dict[str, Any] = {"k": k, "window_s": window, "versions": rows, "buckets": buckets}
    arms = sorted({o.served.arm for o in found})
    if len(arms) == 2:
        samples = [np.array([o.next_item in o.served.items[:k] for o in found
                             if o.served.arm == arm and o.next_item is not None], dtype=np.float64) for arm in arms]
        if all(len(s) > 1 for s in samples):
            out["ab"] = {"a": arms[0], "b": arms[1], "metric": f"hit@{k}",
                         "difference": round(float(samples[1].mean() - samples[0].mean()), 4),
                         "welch_t": None, "p": None, "significant_at_0.05": False,
                         "lists": [len(samples[0]), len(samples[1])]}
            if any(s.std() > 0 for s in samples):  # two constant samples have no test (and scipy warns)
                test = stats.ttest_ind(samples[1], samples[0], equal_var=False)
                p = float(test.pvalue)
                out["ab"].update({"welch_t": round(float(test.statistic), 3), "p": float(f"{p:.3g}"),
                                  "significant_at_0.05": bool(p < 0.05)})
    return out
