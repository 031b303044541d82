"""Fault-injection probes: named points in the write paths where a test can kill, pause or trace us.

The engine's steps emit a ``Probe`` event (``nudge_sync.engine.events``) at the points listed in
:data:`POINTS` (each hit once per batch or step); :func:`subscriber` is installed on every command's
event stream where the command starts (``nudge_sync.engine.wiring``), and calls :func:`probe`. A
probe costs one environment lookup unless a test switched it on:

* ``NUDGE_SYNC_FAULTS="<point>@<n>=<action>[,...]"``: at the ``n``-th hit (1-based, per process;
  ``*`` for every hit) of ``point`` run ``action``: ``kill`` (this process sends itself SIGKILL:
  no cleanup, no finally blocks) or ``pause:<path>`` (create ``<path>.<hit>.reached``, then wait
  until ``<path>.<hit>.go`` exists, at most :data:`PAUSE_LIMIT` seconds, then go on);
* ``NUDGE_SYNC_TRACE=<file>``: every hit appends one JSON line ``{"point", "n", "t", "pid",
  "ids"}`` (``ids`` only where the point has them);
* in-process tests register a callable with :func:`on` (``fn(hit, ids)``) and :func:`clear` it.

A malformed ``NUDGE_SYNC_FAULTS`` raises :class:`FaultSpecError` naming the variable (the CLI
turns it into a usage error, exit 2, before it touches a database); it is never ignored.
Deterministic kill points let a test land a SIGKILL in a chosen phase instead of hoping a
sleep does.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .events import Event, Probe

FAULTS_ENV = "NUDGE_SYNC_FAULTS"
TRACE_ENV = "NUDGE_SYNC_TRACE"
#: Seconds a ``pause`` waits for its ``.go`` file before it gives up and lets the process go on.
PAUSE_LIMIT = 300.0
_POLL = 0.01

#: The probe points (fixed names, shared with the user-level suite).
POINTS: tuple[str, ...] = (
    "lock.acquired",
    "run.read",
    "run.before_write",
    "run.save",
    "run.write",
    "run.record",
    "rollback.read",
    "rollback.before_write",
    "rollback.save",
    "rollback.write",
    "rollback.record",
    "apply.read",
    "apply.before_write",
    "apply.save",
    "apply.write",
    "apply.record",
    "feedback.append",
)


class FaultSpecError(ValueError):
    """``NUDGE_SYNC_FAULTS`` cannot be understood."""


@dataclass(frozen=True)
class Rule:
    point: str
    hit: int | None  #: None = every hit
    action: str  #: "kill" | "pause"
    path: str = ""

    def matches(self, point: str, hit: int) -> bool:
        return point == self.point and (self.hit is None or self.hit == hit)


_hits: dict[str, int] = {}
_callbacks: dict[str, list[Callable[[int, list[Any] | None], None]]] = {}
_parsed: tuple[str, tuple[Rule, ...]] = ("", ())


def parse(spec: str) -> tuple[Rule, ...]:
    """The rules of a ``NUDGE_SYNC_FAULTS`` value, or FaultSpecError saying what is wrong."""
    rules = []
    for raw in spec.split(","):
        text = raw.strip()
        if not text:
            continue
        where, eq, action = text.partition("=")
        point, at, count = where.strip().partition("@")
        if not eq or not at:
            raise FaultSpecError(f"{FAULTS_ENV}: rule {text!r} is not <point>@<n>=<action>")
        if point not in POINTS:
            raise FaultSpecError(f"{FAULTS_ENV}: unknown point {point!r} in {text!r}; points: {', '.join(POINTS)}")
        count = count.strip()
        if count == "*":
            hit = None
        elif count.isdigit() and int(count) >= 1:
            hit = int(count)
        else:
            raise FaultSpecError(f"{FAULTS_ENV}: hit {count!r} in {text!r} must be a count from 1, or *")
        kind, colon, path = action.strip().partition(":")
        if kind == "kill" and not colon:
            rules.append(Rule(point, hit, "kill"))
        elif kind == "pause" and path:
            rules.append(Rule(point, hit, "pause", path))
        else:
            raise FaultSpecError(f"{FAULTS_ENV}: action {action!r} in {text!r} must be kill or pause:<path>")
    if not rules:
        raise FaultSpecError(f"{FAULTS_ENV} is set but holds no rule (unset it, or give <point>@<n>=<action>)")
    return tuple(rules)


def check_environment() -> None:
    """Parse ``NUDGE_SYNC_FAULTS`` now (the CLI calls this before touching any database)."""
    _rules()


def _rules() -> tuple[Rule, ...]:
    global _parsed
    spec = os.environ.get(FAULTS_ENV)
    if spec is None:
        return ()
    if spec != _parsed[0]:
        _parsed = (spec, parse(spec))
    return _parsed[1]


def on(point: str, fn: Callable[[int, list[Any] | None], None]) -> None:
    """Run ``fn(hit, ids)`` at every hit of ``point`` in this process (in-process tests)."""
    if point not in POINTS:
        raise FaultSpecError(f"unknown probe point {point!r}; points: {', '.join(POINTS)}")
    _callbacks.setdefault(point, []).append(fn)


def clear() -> None:
    """Forget registered callables and hit counts."""
    _callbacks.clear()
    _hits.clear()


def probe(point: str, ids: Sequence[Any] | None = None) -> None:
    """A named point of the write paths (see the module docstring)."""
    trace = os.environ.get(TRACE_ENV)
    rules = _rules()
    callbacks = _callbacks.get(point)
    if not (trace or rules or callbacks):
        return
    hit = _hits[point] = _hits.get(point, 0) + 1
    listed = None if ids is None else [_plain(i) for i in ids]
    if trace:
        _append_trace(trace, point, hit, listed)
    for fn in callbacks or ():
        fn(hit, listed)
    for rule in rules:
        if rule.matches(point, hit):
            _act(rule, hit)


def subscriber(event: Event) -> None:
    """The probes as an event subscriber: a ``Probe`` event is a hit of its point."""
    if isinstance(event, Probe):
        probe(event.point, event.ids)


def _plain(i: Any) -> Any:
    return i.item() if hasattr(i, "item") else i


def _append_trace(path: str, point: str, hit: int, ids: list[Any] | None) -> None:
    line: dict[str, Any] = {"point": point, "n": hit, "t": time.time(), "pid": os.getpid()}
    if ids is not None:
        line["ids"] = ids
    # one write of one line in append mode: lines of concurrent processes do not interleave
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def _act(rule: Rule, hit: int) -> None:
    if rule.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is delivered at once; never run past the point meanwhile
        return
    Path(f"{rule.path}.{hit}.reached").touch()
    go = Path(f"{rule.path}.{hit}.go")
    deadline = time.monotonic() + PAUSE_LIMIT
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(_POLL)
