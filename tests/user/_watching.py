"""Helpers of the watcher and observer tests: new feedback written as a JSONL file, stderr read
line by line while a long-running ``nudge-sync`` is alive, and pages opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import connectors
from connectors import LabelledQuery
from tests.engine.test_refusals import make_entries
from tests.user._data import Collection
from tests.user._runner import CliProcess, leaks


def new_feedback(coll: Collection, directory: Path, n: int, tag: str) -> Path:
    """``n`` labelled queries with new ids, stamped now (after any run's watermark), as a JSONL file."""
    vectors = np.stack([coll.originals[i] for i in coll.ids])
    now = time.time()
    entries = [LabelledQuery(f"{tag}-{k}", e.vector, e.relevant_ids, timestamp=now + k * 1e-3, split=e.split)
               for k, e in enumerate(make_entries(coll.ids, vectors, n_queries=n, seed=11, dim=vectors.shape[1]))]
    path = directory / f"{tag}.jsonl"
    connectors.write_log_file(path, entries)
    return path


class Lines:
    """Collects a running process' stderr, line by line, from a reader thread."""

    def __init__(self, proc: CliProcess):
        self.proc, self.lines = proc, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict]:
        """Every line as JSON (the test fails on a line that is not)."""
        return [json.loads(line) for line in list(self.lines)]

    def wait_for(self, pattern: str, timeout: float = 120.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for line in list(self.lines) if re.search(pattern, line)) >= count:
                return
            if not self.proc.alive() and not self._thread.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no {count} line(s) matching {pattern!r} within {timeout}s:\n" + "\n".join(self.lines[-30:]))

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit; its exit code. No traceback may have reached stderr."""
        code = self.proc.proc.wait(timeout=timeout)
        self._thread.join(timeout=10)
        self.proc.wait(timeout=10)  # reaps it the suite's way (stdout checked for leaks)
        found = leaks("\n".join(self.lines))
        assert not found, f"a traceback reached stderr: {found[:3]}"
        return code


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return found


def open_in_chromium(page: Path, tmp: Path) -> tuple[str, str]:
    """Load ``page`` in headless Chromium with the network off; its DOM after load and the
    browser's log (console messages included)."""
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--proxy-server=127.0.0.1:9",  # nothing reachable
         "--virtual-time-budget=2000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def console_errors(log: str) -> list[str]:
    """Console messages and failed loads in Chromium's log (its own D-Bus noise is not the page's)."""
    return [line for line in log.splitlines()
            if "CONSOLE" in line or "net::ERR" in line or "Uncaught" in line]
