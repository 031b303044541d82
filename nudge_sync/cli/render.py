"""What the command line prints: JSON or human text on stdout, progress bars on stderr, every line
passed through the connectors' secret redaction."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

import connectors

from ..engine.progress import Progress


class BarProgress(Progress):
    """click progress bars on stderr (plain phase lines when stderr is not a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None

    def begin(self, phase: str, total: int | None) -> None:
        if not self.enabled:
            return
        if total:
            self._bar = click.progressbar(length=total, label=f"{phase:<18}", file=sys.stderr, show_eta=True)
            self._bar.__enter__()
        else:
            echo(f"{phase} ...", err=True)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def emit(ctx: click.Context, data: Any, human: Callable[[Any], str]) -> None:
    if ctx.obj["json"]:
        echo(json.dumps(data, indent=2, sort_keys=True, default=json_default))
    else:
        echo(human(data))


def echo(text: str, err: bool = False) -> None:
    """Everything the command prints goes through here: no configured secret ever leaves."""
    try:
        click.echo(connectors.redact(text), err=err)
    except BrokenPipeError:
        # the reader went away (`nudge-sync history | head -1`): what it did not read is dropped
        # and the command's own exit code stands (a gated run piped into a scheduler's log still
        # exits 3, not "internal error")
        _drop_stream(sys.stderr if err else sys.stdout)


def _drop_stream(stream: Any) -> None:
    """Point a closed pipe's file descriptor at /dev/null, so later writes and the flush at exit
    do not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def progress_bar(ctx: click.Context) -> Progress:
    return BarProgress(enabled=not ctx.obj["quiet"])


def human_run(r: dict[str, Any]) -> str:
    c = r.get("counts", {})
    lines = [f"run {r['run_id']}: {r['status']}" + (f" — {r['reason']}" if r.get("reason") else "")]
    lines.append(f"  store       {r['store']}")
    if c:
        lines.append(
            f"  feedback    {c.get('queries', 0)} queries: {c.get('train_queries', 0)} train, "
            f"{c.get('val_queries', 0)} val, {c.get('test_queries', 0)} test; "
            f"{c.get('answers_missing', 0)} ids not in the collection"
            + (f" ({c.get('answers_unknown_ids', 0)} answers dropped, {c.get('queries_without_known_answers', 0)} "
               "queries left without answers)" if c.get("answers_missing") else "")
        )
    if r.get("gamma") is not None:
        lines.append(f"  gamma       {r['gamma']:.4g} ({r['method']}, objective {r['objective']}, "
                     f"context {r.get('context_mode')})")
    val = r.get("validation") or {}
    if val.get("before"):
        parts = [f"{m} {val['before'][m]:.4f} -> {val['after'][m]:.4f}" for m in val["before"]]
        lines.append("  validation  " + "; ".join(parts))
    if "to_write" in c:
        lines.append(f"  vectors     {c.get('moved', 0)} moved; {c.get('to_write', 0)} to write "
                     f"({c.get('to_restore', 0)} restores); {c.get('written', 0)} written and verified")
    if c.get("adopted_reembedded"):
        lines.append(f"  adopted     {c['adopted_reembedded']} records re-embedded by someone else (new originals)")
    if c.get("skipped_unverified"):
        lines.append(f"  skipped     {c['skipped_unverified']} records whose state entries fail their checksums: "
                     "left as stored (--skip-unverified; their stored vector is their new original)")
    for note in r.get("notes") or ():
        lines.append(f"  note        {note}")
    if c.get("adopted_during_run"):
        lines.append(f"  adopted     {c['adopted_during_run']} records re-embedded by someone else during the run: "
                     "not written (new originals; the next run plans from them)")
    if r.get("plan"):
        lines.append(f"  plan        {r['plan']}")
    if r.get("took_over_lock"):
        held = r["took_over_lock"]
        lines.append(f"  lock        taken over from {held.get('owner')} (run {held.get('run_id')}), "
                     "a process of this host that no longer runs")
    if r.get("finished"):
        lines.append(f"  time        {r['finished'] - r['started']:.1f} s")
    return "\n".join(lines)


def human_status(s: dict[str, Any]) -> str:
    last = s["last_run"]
    lines = [
        f"collection  {s['collection']} ({s['backend']}, {s['count']} records, dim {s['dimension']}, {s['metric']})",
        f"nudged      {s['nudged']} records hold a nudged vector; {s['restored']} hold their original, "
        f"{s['adopted']} were re-embedded by someone else since ({s['pending']} writes pending, "
        f"{s['originals_kept']} originals kept)",
        *([f"unverified  {s['unverified']} state entries fail their checksums: left as stored (--skip-unverified)"]
          if s.get("unverified") else []),
        f"runs        {s['runs']}" + (f"; last {last['run_id']} {last['status']}" if last else ""),
        f"watermark   {fmt_time(s['watermark'])}",
        f"log         {s['log']} ({'present' if s['log_exists'] else 'absent'})",
        f"lock        {_lock_line(s)}",
    ]
    return "\n".join(lines)


def _lock_line(s: dict[str, Any]) -> str:
    if not s["lock"]:
        return "free"
    line = f"held by {s['lock'].get('owner')}"
    if s.get("lock_stale"):
        line += " (a process of this host that no longer runs: the next run or rollback takes it over)"
    return line


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    except (TypeError, ValueError, OverflowError, OSError):  # a state written by an older, laxer version
        return f"{t!r} (not a time)"


def human_history(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs yet"
    lines = []
    for r in runs:
        val = r.get("validation") or {}
        obj = r.get("objective")
        metric = (f"{obj} {val['before'][obj]:.4f} -> {val['after'][obj]:.4f}"
                  if obj and val.get("before", {}).get(obj) is not None else "")
        gamma = f"gamma {r['gamma']:.4g}" if r.get("gamma") is not None else ""
        # a rollback's record counts what it restored; a run's, what it wrote
        moved = f"restored {r.get('restored', 0)}" if "of_run" in r else f"written {r.get('written', 0)}"
        lines.append(f"{r['run_id']}  {r['status']:<11} {fmt_time(r.get('started'))}  "
                     f"{moved}  {gamma}  {metric}".rstrip())
    return "\n".join(lines)


def human_feedback(r: dict[str, Any]) -> str:
    out = f"appended {r['appended']} entries to {r['log']}"
    if r.get("replaced"):  # same query ids as entries already in the log: replaced whole, not added
        out += f" and replaced {r['replaced']} it held for the same query ids"
    if r["unknown_id_count"]:
        out += (f"; warning: {r['unknown_id_count']} relevant ids are not in the collection "
                f"(they will be dropped and counted at the next run), e.g. {r['unknown_ids'][:5]}")
    return out


def human_eval(r: dict[str, Any]) -> str:
    lines = [f"{r['collection']}: {r['queries']} {r['split']} queries ({r['mode']}), "
             f"{r['nudged_records']} nudged records"]
    lines.append(f"  {'metric':<10} {'original':>9} {'current':>9} {'delta':>9}")
    for m in r["current"]:
        lines.append(f"  {m:<10} {r['original'][m]:>9.4f} {r['current'][m]:>9.4f} {r['delta'][m]:>+9.4f}")
    return "\n".join(lines)


def human_demo(r: dict[str, Any]) -> str:
    ev = r["eval"]
    lines = [f"demo: {r['records']} records x {r['dim']} dims in {r['store']}",
             f"  run: {r['run']['status']}, gamma {r['run']['gamma']:.4g}, "
             f"{r['run']['counts'].get('written', 0)} vectors written in {r['run_seconds']:.1f} s",
             f"  held-out test queries ({ev['queries']}):",
             f"  {'metric':<10} {'before':>9} {'after':>9} {'gain':>9}"]
    for m in ev["current"]:
        lines.append(f"  {m:<10} {ev['original'][m]:>9.4f} {ev['current'][m]:>9.4f} {ev['delta'][m]:>+9.4f}")
    lines.append(f"  try: nudge-sync status --store '{r['store']}'")
    return "\n".join(lines)
