"""The HTML report a person looks at: one self-contained file (inline SVG and CSS, no script, no
network) for a run, an eval, or the run history.

``RunReport`` is the subscriber behind ``run --report``: it keeps the command's options
(``RunStarted``) and step times (``StepFinished``) and writes the page when the run ends, failed
runs included. ``eval_page`` and ``history_page`` draw the pages of ``eval`` and ``history`` from
their reports.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..engine.events import Event, RunFailed, RunFinished, RunStarted, StepFinished
from . import plots

__all__ = ["RunReport", "eval_page", "history_page", "run_page", "write_page"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 62em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: bold; } .failed { color: #a40000; } .ok { color: #4e9a06; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return _e(value)


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str], table_id: str = "") -> str:
    out = [f'<table{f" id={chr(34)}{table_id}{chr(34)}" if table_id else ""}><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head] + ["</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{_num(c)}</td>' if isinstance(c, (int, float)) else f"<td>{_e(c)}</td>" for c in row)
            + "</tr>")
    return "".join(out) + "</table>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="generator" content="nudge-sync"><style>{_CSS}</style></head>'
            f"<body><h1>{_e(title)}</h1>{body}</body></html>\n")


def run_page(report: dict[str, Any], *, exit_code: int, options: dict[str, Any] | None = None,
             steps: dict[str, float] | None = None, error: str = "") -> str:
    """One run: status, the objective over γ with the chosen point, before/after, counts, timings, options."""
    objective = report.get("objective") or ""
    validation = report.get("validation") or {}
    before, after = validation.get("before") or {}, validation.get("after") or {}
    status = report.get("status") or "failed"
    ok = exit_code in (0, 3)
    parts = [f'<p>Run <code>{_e(report.get("run_id"))}</code> on <code>{_e(report.get("store"))}</code>, '
             f'collection <code>{_e(report.get("collection"))}</code>, {_e(_when(report.get("started")))}: '
             f'<span class="status {"ok" if ok else "failed"}" id="status">{_e(status)}</span> '
             f"(exit code {exit_code})</p>"]
    if report.get("reason") or error:
        parts.append(f"<p>{_e(error or report.get('reason'))}</p>")
    curve = report.get("curve") or {}
    if curve.get("gamma") and curve.get("score"):
        chosen = report.get("gamma")
        parts.append(f"<h2>Validation {_e(objective)} over γ</h2><figure>"
                     + plots.gamma_curve(curve["gamma"], curve["score"], chosen, after.get(objective), objective)
                     + "</figure>")
    elif report.get("gamma") is not None:
        parts.append(f"<p>γ = {_num(report.get('gamma'))} (given: no curve was searched)</p>")
    metrics = sorted(set(before) | set(after), key=lambda m: (m != objective, m))
    if metrics:
        rows = [(m, before.get(m), after.get(m), _delta(before.get(m), after.get(m))) for m in metrics]
        parts.append("<h2>Validation queries: before and after</h2>"
                     + _table(rows, ("metric", "before", "after", "change"), "before-after"))
    if report.get("counts"):
        parts.append("<h2>Counts</h2>" + _table(sorted(report["counts"].items()), ("what", "count"), "counts"))
    times = steps or report.get("timings") or {}
    if times:
        parts.append("<h2>Step times</h2>" + _table([(k, float(v)) for k, v in times.items()], ("step", "seconds"),
                                                     "timings"))
    opts = options or {k: report.get(k) for k in ("method", "objective", "context_mode", "split") if k in report}
    if opts:
        parts.append("<h2>Options</h2>" + _table(sorted((k, _plain(v)) for k, v in opts.items()), ("option", "value"),
                                                  "options"))
    if report.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in report["notes"]) + "</ul>")
    return _page(f"nudge-sync run {report.get('run_id', '')}", "".join(parts))


def eval_page(report: dict[str, Any]) -> str:
    """``eval``: each metric of the collection now against its original vectors, on one split."""
    current, original = report.get("current") or {}, report.get("original") or {}
    metrics = list(current)
    body = (f'<p>Collection <code>{_e(report.get("collection"))}</code>, split <b>{_e(report.get("split"))}</b> '
            f'({_e(report.get("queries"))} queries, mode {_e(report.get("mode"))}), '
            f'{_e(report.get("nudged_records"))} records nudged.</p>')
    if metrics:
        body += ("<figure>" + plots.eval_bars(metrics, [original.get(m) for m in metrics],
                                              [current.get(m) for m in metrics]) + "</figure>")
        rows = [(m, original.get(m), current.get(m), _delta(original.get(m), current.get(m))) for m in metrics]
        body += (f"<h2>{_e(report.get('split'))} queries: original vectors and now</h2>"
                 + _table(rows, ("metric", "original", "now", "change"), "before-after"))
    settings = report.get("split_settings") or {}
    if settings:
        body += "<h2>Split</h2>" + _table(sorted((k, _plain(v)) for k, v in settings.items()), ("setting", "value"),
                                          "options")
    return _page(f"nudge-sync eval of {report.get('collection', '')}", body)


def history_page(runs: Sequence[dict[str, Any]], collection: str = "") -> str:
    """Every run: its validation objective after the run, and the records it wrote."""
    objective = next((r.get("objective") for r in reversed(runs) if r.get("objective")), "") or ""
    labels = [f"{_when(r.get('started'))[:16]} {r.get('status', '')}" for r in runs]
    values = [((r.get("validation") or {}).get("after") or {}).get(r.get("objective") or objective) for r in runs]
    written = [int(r.get("written") or 0) for r in runs]
    body = f"<p>{len(runs)} runs of <code>{_e(collection)}</code>.</p>"
    if runs:
        body += "<figure>" + plots.history_plot(labels, values, written, objective) + "</figure>"
    rows = [(r.get("run_id"), _when(r.get("started")), r.get("status"), r.get("gamma"), v, w, r.get("reason", ""))
            for r, v, w in zip(runs, values, written)]
    body += "<h2>Runs</h2>" + _table(rows, ("run", "started", "status", "γ", f"validation {objective}", "written",
                                            "reason"), "runs")
    return _page(f"nudge-sync history of {collection}", body)


def write_page(path: Path, page: str) -> None:
    """Write atomically: a reader never sees half a page."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _delta(a: Any, b: Any) -> Any:
    return round(b - a, 6) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""


def _plain(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else "" if value is None else str(value)


class RunReport:
    """Subscriber: writes ``path`` when the run ends (a failed run's page says how it ended)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.options: dict[str, Any] | None = None
        self.steps: dict[str, float] = {}
        self.error: BaseException | None = None  #: why the page could not be written, for the caller

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.options, self.steps = dict(event.options), {}
        elif isinstance(event, StepFinished):
            self.steps[event.step] = event.seconds
        elif isinstance(event, (RunFinished, RunFailed)):
            report = dict(event.report or {"run_id": event.run_id})
            error = f"{event.error}: {event.message}" if isinstance(event, RunFailed) else ""
            try:
                write_page(self.path, run_page(report, exit_code=event.exit_code, options=self.options,
                                               steps=self.steps or None, error=error))
            except Exception as exc:  # an observer never breaks the run it watches; the caller says so
                self.error = exc
