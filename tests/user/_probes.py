"""Fault rules for the library's probe points (nudge_sync/engine/faults.py, spec in the issue #10 notes)
and the probe trace.

``NUDGE_SYNC_FAULTS="<point>@<n>=kill"`` SIGKILLs the process at the n-th hit of a point;
``pause:<path>`` makes it create ``<path>.<n>.reached`` and wait for ``<path>.<n>.go``; with
``NUDGE_SYNC_TRACE=<file>`` every hit appends ``{"point", "n", "t", "pid", "ids"}``. Waiting for a
``.reached`` file is waiting for an event the process announces, not a sleep that hopes to land.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.user._runner import CliProcess

RUN_POINTS = ("lock.acquired", "run.read", "run.before_write", "run.save", "run.write", "run.record")
ROLLBACK_POINTS = ("lock.acquired", "rollback.read", "rollback.before_write", "rollback.save", "rollback.write",
                   "rollback.record")
#: phase of each probe point, as the summary table counts kills
PHASES = {"lock.acquired": "read", "run.read": "read", "rollback.read": "read",
          "run.before_write": "write", "rollback.before_write": "write",
          "run.save": "save", "rollback.save": "save",
          "run.write": "write", "rollback.write": "write",
          "run.record": "record", "rollback.record": "record"}

_names = itertools.count()


def kill_at(point: str, n: int) -> dict[str, str]:
    """Environment that SIGKILLs the process at the ``n``-th hit of ``point``."""
    return {"NUDGE_SYNC_FAULTS": f"{point}@{n}=kill"}


def traced(env: dict[str, str], trace: Path) -> dict[str, str]:
    return {**env, "NUDGE_SYNC_TRACE": str(trace)}


@dataclass
class Pause:
    """A ``pause`` rule: the process stops at the n-th hit of ``point`` until :meth:`go`."""

    point: str
    n: int
    path: Path

    @classmethod
    def at(cls, directory: Path, point: str, n: int = 1) -> Pause:
        return cls(point, n, directory / f"pause{next(_names)}-{point}")

    @property
    def rule(self) -> str:
        return f"{self.point}@{self.n}=pause:{self.path}"

    def env(self, *others: Pause) -> dict[str, str]:
        """The NUDGE_SYNC_FAULTS environment holding this rule (and ``others``)."""
        return {"NUDGE_SYNC_FAULTS": ",".join(p.rule for p in (self, *others))}

    @property
    def reached_file(self) -> Path:
        return Path(f"{self.path}.{self.n}.reached")

    def wait_reached(self, proc: CliProcess, timeout: float = 180.0) -> None:
        """Block until the process announces it reached the point; fail if it exits first."""
        deadline = time.monotonic() + timeout
        while not self.reached_file.exists():
            if not proc.alive():
                result = proc.wait()
                raise AssertionError(f"the process ended before reaching {self.point}@{self.n}\n{result.describe()}")
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{self.point}@{self.n} not reached after {timeout:.0f}s")
            time.sleep(0.02)

    def go(self) -> None:
        Path(f"{self.path}.{self.n}.go").touch()


def read_trace(path: Path) -> list[dict[str, Any]]:
    """Probe hits in file order (a killed process may leave a torn last line: it is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def hits(trace: list[dict[str, Any]], pid: int | None = None) -> dict[str, int]:
    """How many times each point was hit (by ``pid`` only, when given)."""
    counts: dict[str, int] = {}
    for event in trace:
        if pid is None or event.get("pid") == pid:
            counts[event["point"]] = max(counts.get(event["point"], 0), int(event["n"]))
    return counts
