"""Run the real ``nudge-sync`` console script of the active environment, one process per step.

Every call checks what a user would see: no Python traceback and no library exception repr may
reach stderr or stdout, whatever the exit code (a SIGKILLed process included). ``--json`` reports
are parsed. Faults and traces are configured through the environment (see _probes.py); nothing
of the test process' own NUDGE_SYNC_* settings leaks into the child.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the console script installed beside the interpreter running the tests (the README's venv)
NUDGE_SYNC = Path(sys.executable).parent / "nudge-sync"
#: what a user must never see: a traceback, or an exception's repr instead of a message
LEAK_PATTERNS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r"<\w*(?:Exception|Error)\b[^>]*>"),  # e.g. <MilvusException: (code=101, ...)>
    re.compile(r"\b\w+(?:Exception|Error)\((?:'|\")"),  # e.g. ValueError('...')
)
#: environment variables the suite sets per process; never inherited from the test process
OWN_VARS = ("NUDGE_SYNC_FAULTS", "NUDGE_SYNC_TRACE", "NUDGE_SYNC_STORE", "NUDGE_SYNC_CONFIG")
DEFAULT_TIMEOUT = 300.0


@dataclass
class CliResult:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float
    pid: int
    report: Any = field(default=None)

    @property
    def killed(self) -> bool:
        """True when the process died of SIGKILL (a fault probe's ``kill``)."""
        return self.code == -signal.SIGKILL

    def describe(self) -> str:
        return (f"`{' '.join(self.argv[1:])}` exited {self.code} after {self.seconds:.1f}s\n"
                f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}")


def leaks(text: str) -> list[str]:
    """The traceback / exception-repr fragments found in ``text``."""
    return [m.group(0) for p in LEAK_PATTERNS for m in p.finditer(text)]


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in OWN_VARS and not k.startswith("NUDGE_SYNC_RUN_")}
    base.update(env or {})
    return base


class CliProcess:
    """A ``nudge-sync`` process started in the background (for pauses and concurrent runs)."""

    def __init__(self, args: tuple[Any, ...], env: Mapping[str, str] | None, as_json: bool):
        self.as_json = as_json
        self.argv = [str(NUDGE_SYNC), *(["--json"] if as_json else []), "-q", *map(str, args)]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=child_env(env))
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = DEFAULT_TIMEOUT, expect: int | None = None) -> CliResult:
        before = _children_cpu()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"`{' '.join(self.argv[1:])}` still running after {timeout:.0f}s:\n{err[-3000:]}")
        _LIVE.discard(self)
        COST["processes"] += 1
        COST["cpu_s"] += _children_cpu() - before  # this child's CPU, reaped just now
        result = CliResult(self.argv, self.proc.returncode, out, err, time.monotonic() - self.started, self.proc.pid)
        found = leaks(err) + leaks(out)
        assert not found, f"a traceback / exception repr reached the user: {found[:3]}\n{result.describe()}"
        if self.as_json and out.strip() and not result.killed:
            try:
                result.report = json.loads(out)
            except json.JSONDecodeError as exc:
                raise AssertionError(f"--json output is not JSON ({exc})\n{result.describe()}") from None
        if expect is not None:
            assert result.code == expect, f"expected exit {expect}\n{result.describe()}"
        return result

    def kill(self) -> None:
        """SIGKILL this process (by its own PID) and reap it."""
        _LIVE.discard(self)
        if self.alive():
            self.proc.kill()
        self.proc.communicate()


#: nudge-sync processes run by this test process and the CPU seconds they used (the suite's cost)
COST = {"processes": 0, "cpu_s": 0.0}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: processes started and not yet waited for: a failed test must not leave a paused run behind
_LIVE: set[CliProcess] = set()


def kill_leftovers() -> int:
    """Kill the processes a test started and never waited for; returns how many there were."""
    left = list(_LIVE)
    for p in left:
        p.kill()
    return len(left)


def spawn(*args: Any, env: Mapping[str, str] | None = None, as_json: bool = True) -> CliProcess:
    """Start ``nudge-sync [--json] -q ARGS...`` without waiting."""
    return CliProcess(args, env, as_json)


def nudge(*args: Any, env: Mapping[str, str] | None = None, expect: int | None = 0, as_json: bool = True,
          timeout: float = DEFAULT_TIMEOUT) -> CliResult:
    """Run ``nudge-sync [--json] -q ARGS...`` to the end; ``expect`` is the exit code (None: any)."""
    return spawn(*args, env=env, as_json=as_json).wait(timeout=timeout, expect=expect)
