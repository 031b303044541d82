"""The report's pictures, drawn by matplotlib as inline SVG (no network needed to open the page).

Marks a test (or a person) looks for carry SVG ids: ``objective-curve``, ``chosen-point``,
``history-objective``, ``history-written-<i>``, ``eval-now-<i>``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: render to files only

from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

__all__ = ["eval_bars", "gamma_curve", "history_plot"]


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) if v is not None and math.isfinite(float(v)) else math.nan for v in values]


def gamma_curve(gammas: Sequence[float], scores: Sequence[float], chosen: float | None,
                chosen_score: float | None, objective: str) -> str:
    """The validation objective over γ, and the γ the run chose as a marked point."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    order = sorted(range(len(gammas)), key=lambda i: gammas[i])
    xs, ys = [float(gammas[i]) for i in order], _finite([scores[i] for i in order])
    (line,) = ax.plot(xs, ys, drawstyle="steps-post", color="#3465a4", label=f"validation {objective}")
    line.set_gid("objective-curve")
    if chosen is not None and chosen_score is not None:
        (point,) = ax.plot([chosen], [chosen_score], "o", color="#cc0000", markersize=9,
                           label=f"chosen γ = {chosen:.4g}")
        point.set_gid("chosen-point")
    ax.set_xlabel("γ (step size)")
    ax.set_ylabel(objective or "objective")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _svg(fig)


def history_plot(labels: Sequence[str], objective: Sequence[float | None], written: Sequence[int],
                 objective_name: str) -> str:
    """Run by run: the validation objective after each run, and the records each run wrote."""
    fig = Figure(figsize=(8, 5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    xs = list(range(len(labels)))
    (line,) = top.plot(xs, _finite(objective), "o-", color="#3465a4")
    line.set_gid("history-objective")
    top.set_ylabel(f"validation {objective_name}" if objective_name else "validation objective")
    top.grid(alpha=0.3)
    for i, bar in enumerate(bottom.bar(xs, [int(w or 0) for w in written], color="#73d216")):
        bar.set_gid(f"history-written-{i}")
    bottom.set_ylabel("records written")
    bottom.set_xticks(xs, list(labels), rotation=45, ha="right", fontsize=8)
    bottom.grid(alpha=0.3, axis="y")
    return _svg(fig)


def eval_bars(metrics: Sequence[str], original: Sequence[float], current: Sequence[float]) -> str:
    """Each metric before nudge-sync (the originals) and now."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    xs = list(range(len(metrics)))
    ax.bar([x - 0.2 for x in xs], _finite(original), width=0.4, color="#babdb6", label="original vectors")
    for i, bar in enumerate(ax.bar([x + 0.2 for x in xs], _finite(current), width=0.4, color="#3465a4", label="now")):
        bar.set_gid(f"eval-now-{i}")
    ax.set_xticks(xs, list(metrics))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="best")
    return _svg(fig)
