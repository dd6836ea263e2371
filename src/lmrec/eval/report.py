"""Leaderboard tables, plots (PNG) and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from lmrec.data.items import ItemTable
from lmrec.eval.results import EvalResult

HEADLINE = ("recall", "ndcg", "mrr")  # the accuracy columns of a leaderboard, at every cut-off


def category_vectors(items: ItemTable) -> np.ndarray | None:
    """Multi-hot item vectors from a ``genres`` or ``categories`` field (comma-separated), for diversity."""
    field = next((f for f in ("genres", "categories") if f in items), None)
    if field is None:
        return None
    tags = [[t.strip() for t in s.split(",") if t.strip()] for s in items[field]]
    vocab = {t: i for i, t in enumerate(sorted({t for ts in tags for t in ts}))}
    if not vocab:
        return None
    out = np.zeros((len(items), len(vocab)), dtype=np.float32)
    for i, ts in enumerate(tags):
        out[i, [vocab[t] for t in ts]] = 1.0
    return out


def leaderboard_frame(results: list[EvalResult], timings: dict[str, dict[str, float]],
                      ks: tuple[int, ...] = (10, 20)) -> pd.DataFrame:
    """One row per model: headline metrics (means) at each of ``ks``, coverage, fit and eval seconds."""
    rows = []
    headline = [f"{m}@{k}" for k in sorted(ks) for m in HEADLINE]
    for r in results:
        s = r.summary()
        row: dict[str, object] = {"model": r.model}
        row.update({m: s[m] for m in headline if m in s})
        row.update({k: v for k, v in s.items() if k.startswith("coverage@")})
        row["fit_s"] = timings.get(r.model, {}).get("fit_s", float("nan"))
        row["eval_s"] = r.seconds
        if any("rerank_ms_per_user" in t for t in timings.values()):  # two-stage rows: the added latency
            row["rerank_ms/user"] = timings.get(r.model, {}).get("rerank_ms_per_user", float("nan"))
            row["rerank_weight"] = timings.get(r.model, {}).get("rerank_weight", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame, title: str = "") -> str:
    """A GitHub-style table (no extra dependency)."""
    cols = list(frame.columns)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) and not np.isnan(v) else str(v)  # noqa: E731
    lines = ([f"### {title}", ""] if title else []) + [
        "| " + " | ".join(cols) + " |", "|" + "|".join("---" if c == "model" else "---:" for c in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def per_user_frame(results: list[EvalResult]) -> pd.DataFrame:
    """Long table: one row per (model, user) with every per-user metric and the slicing facts."""
    frames = []
    for r in results:
        f = pd.DataFrame({"model": r.model, "user": r.users, **r.per_user, **r.user_info})
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def plot_metric_bars(results: list[EvalResult], path: Path, metrics: tuple[str, ...] = ("recall@10", "ndcg@10")) -> Path:
    """Bars of the mean of each metric per model with 95% confidence intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        names = [r.model for r in results]
        means = np.array([r.means()[metric] for r in results])
        ci = np.array([r.ci95()[metric] for r in results])
        ax.bar(names, means, yerr=[means - ci[:, 0], ci[:, 1] - means], capsize=3, color="#4C72B0")
        ax.set_title(f"{metric} (95% CI)")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_by_history_length(results: list[EvalResult], path: Path, metric: str = "ndcg@10") -> Path:
    """Mean ``metric`` per user-history-length bin (quartiles of the first result's users), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = results[0].user_info["history_length"]
    edges = list(np.unique(np.quantile(values, [0, 0.25, 0.5, 0.75, 1.0])))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in results:
        groups = r.slice_means("history_length", bins=edges)
        ax.plot(list(groups), [g[metric] for g in groups.values()], marker="o", label=r.model)
    ax.set_xlabel("history length (interactions)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_html(path: Path, title: str, sections: list[tuple[str, str]], images: list[Path]) -> Path:
    """One self-contained HTML file: markdown-ish tables as <pre>-free HTML tables, images inlined."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, table_md in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(_md_table_to_html(table_md))
    for img in images:
        data = base64.b64encode(img.read_bytes()).decode()
        body.append(f'<h2>{html.escape(img.stem.replace("_", " "))}</h2><img src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return path


def _md_table_to_html(md: str) -> str:
    rows = [line.strip().strip("|").split("|") for line in md.splitlines() if line.startswith("|")]
    if len(rows) < 2:
        return f"<p>{html.escape(md)}</p>"
    head, body = rows[0], rows[2:]
    th = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><tr>{th}</tr>{trs}</table>"
