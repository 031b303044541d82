"""Fault-injection probes (nudge_sync.engine.faults): rule parsing, the trace, kill and pause, as the
user-level suite uses them (separate ``nudge-sync`` processes), and in-process callables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nudge_sync.engine import faults

#: the console script of this environment, as users run it
NUDGE_SYNC = [str(Path(sys.executable).with_name("nudge-sync"))]


def cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*NUDGE_SYNC, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, **kw)


@pytest.fixture
def demo(tmp_path) -> str:
    """A small embedded Chroma database made and synced by `nudge-sync demo` in its own process."""
    directory = tmp_path / "demo"
    done = cli("-q", "--json", "demo", "--backend", "chroma", "--dir", str(directory), "--records", "300",
               "--dim", "16", "--queries", "120")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["store"]


@pytest.mark.parametrize("spec, message", [
    ("run.write=kill", "is not <point>@<n>=<action>"),
    ("run.wrote@1=kill", "unknown point 'run.wrote'"),
    ("run.write@0=kill", "must be a count from 1"),
    ("run.write@x=kill", "must be a count from 1"),
    ("run.write@1=explode", "must be kill or pause:<path>"),
    ("run.write@1=pause:", "must be kill or pause:<path>"),
    (" , ", "holds no rule"),
])
def test_malformed_rules_are_refused_naming_the_variable(spec, message):
    with pytest.raises(faults.FaultSpecError, match="NUDGE_SYNC_FAULTS") as err:
        faults.parse(spec)
    assert message in str(err.value)


def test_rules_parse():
    rules = faults.parse("run.write@2=kill, rollback.save@*=pause:/tmp/p")
    assert rules == (faults.Rule("run.write", 2, "kill"), faults.Rule("rollback.save", None, "pause", "/tmp/p"))
    assert rules[1].matches("rollback.save", 7) and not rules[0].matches("run.write", 1)


def test_the_cli_refuses_a_malformed_value_before_touching_the_database(tmp_path):
    # a store that does not exist: exit 2 (usage) proves the variable was checked first
    done = cli("status", "--store", f"chroma://{tmp_path}/nothing?collection=x",
               env={"NUDGE_SYNC_FAULTS": "run.write@1=boom"})
    assert done.returncode == 2, done.stderr
    assert "NUDGE_SYNC_FAULTS" in done.stderr and "Traceback" not in done.stderr


def test_callables_see_every_hit_with_its_ids(monkeypatch):
    monkeypatch.delenv("NUDGE_SYNC_FAULTS", raising=False)
    seen = []
    faults.clear()
    faults.on("run.write", lambda hit, ids: seen.append((hit, ids)))
    try:
        faults.probe("run.write", [3, "a"])
        faults.probe("run.save", [1])  # no callable there
        faults.probe("run.write")
    finally:
        faults.clear()
    assert seen == [(1, [3, "a"]), (2, None)]
    with pytest.raises(faults.FaultSpecError):
        faults.on("no.such.point", lambda hit, ids: None)


def test_a_traced_rollback_killed_at_its_second_write(demo, tmp_path):
    trace = tmp_path / "trace.jsonl"
    env = {"NUDGE_SYNC_TRACE": str(trace), "NUDGE_SYNC_FAULTS": "rollback.write@2=kill"}
    done = cli("-q", "rollback", "--store", demo, "--batch-size", "10", env=env)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    points = [(line["point"], line["n"]) for line in lines]
    assert points[0] == ("lock.acquired", 1)
    assert points[-1] == ("rollback.write", 2)  # nothing ran past the kill
    assert {line["pid"] for line in lines} == {lines[0]["pid"]}
    writes = [line for line in lines if line["point"] == "rollback.write"]
    assert all(len(line["ids"]) == 10 for line in writes) and writes[0]["ids"] != writes[1]["ids"]


def test_a_paused_process_waits_for_its_go_file(demo, tmp_path):
    gate = tmp_path / "gate"
    env = {**os.environ, "NUDGE_SYNC_FAULTS": f"lock.acquired@1=pause:{gate}"}
    proc = subprocess.Popen([*NUDGE_SYNC, "-q", "--json", "rollback", "--store", demo, "--break-lock"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{gate}.1.reached").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        time.sleep(0.3)
        assert proc.poll() is None  # held at the point
        Path(f"{gate}.1.go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["status"] in ("rolled-back", "unchanged")
