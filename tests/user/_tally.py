"""Counted trials: every fault, sequence and check of the user-level suite appends one JSON line to a
session-wide file, which ``python -m tests.user.summary`` (and the end of a pytest session) renders
as the README's summary table.

A trial records whether its checks held (``ok``) and, when not, what broke, so failures are
counted per backend instead of hiding behind the first failed assertion. The file lives in the
pytest session's base temp dir (shared by the xdist workers), or in ``NUDGE_SYNC_TRIALS_DIR``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TRIALS_FILE = "user-suite-trials.jsonl"


def trials_dir(basetemp: Path) -> Path:
    """The directory every process of this pytest session shares (xdist workers live one below)."""
    if os.environ.get("NUDGE_SYNC_TRIALS_DIR"):
        return Path(os.environ["NUDGE_SYNC_TRIALS_DIR"])
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


class Tally:
    """Trials of one test, appended to the session file as they happen."""

    def __init__(self, path: Path, test: str, sweep: str):
        self.path = path
        self.test = test
        self.sweep = sweep
        self.failures: list[str] = []

    def trial(self, backend: str, category: str, ok: bool, *, fault: str | None = None, phase: str | None = None,
              detail: str = "") -> None:
        """Count one trial (``fault``: what was injected, e.g. ``run.write@2=kill``)."""
        record: dict[str, Any] = {"backend": backend, "category": category, "ok": bool(ok), "fault": fault,
                                  "phase": phase, "test": self.test, "sweep": self.sweep, "t": time.time()}
        if not ok:
            record["detail"] = detail[:2000]
            self.failures.append(f"{backend} {category} {fault or ''}: {detail}")
        self._append(record)

    def cost(self, processes: int, cpu_s: float, wall_s: float) -> None:
        """What the test cost: nudge-sync processes, their CPU seconds, the test's wall time."""
        self._append({"category": "cost", "test": self.test, "sweep": self.sweep, "processes": processes,
                      "cpu_s": round(cpu_s, 2), "wall_s": round(wall_s, 2), "t": time.time()})

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:  # two xdist workers append to one file
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line)

    def check(self, backend: str, category: str, problems: list[str], **kw: Any) -> None:
        """Count a trial whose checks produced ``problems`` (none: it passed), and stop the test
        at the first failed one: what follows a broken invariant proves nothing."""
        self.trial(backend, category, not problems, detail="; ".join(problems), **kw)
        assert not problems, f"{backend} {category} {kw.get('fault') or ''}: " + "; ".join(problems)

    @contextmanager
    def counting(self, backend: str, category: str, **kw: Any) -> Iterator[None]:
        """Count the block as one trial: failed if an assertion inside fails (and re-raise it)."""
        try:
            yield
        except AssertionError as exc:
            self.trial(backend, category, False, detail=str(exc), **kw)
            raise
        self.trial(backend, category, True, **kw)
