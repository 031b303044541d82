"""The fault-injection variable (``NUDGE_SYNC_FAULTS``, nudge_sync.engine.faults): its rules and how a
malformed value is refused.

What the probes do -- kill at the n-th hit, pause until a go file, the trace, in-process callables
-- is what the user-level suite stands on and proves with every trial: tests/user/test_sigkill.py
checks the trace of every killed process (the point hit exactly n times, every point per batch),
test_concurrency.py holds a run paused at ``lock.acquired`` while a second one is refused, and
test_conditional_write.py acts inside a batch's window from a callable. What only this file
reaches: the message for each malformed rule (the suite sets valid rules only).
"""

from __future__ import annotations

import pytest

from nudge_sync.engine import faults
from tests.user._runner import nudge


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
    done = nudge("status", "--store", f"chroma://{tmp_path}/nothing?collection=x",
                 env={"NUDGE_SYNC_FAULTS": "run.write@1=boom"}, expect=2)  # no traceback either (the runner)
    assert "NUDGE_SYNC_FAULTS" in done.stderr and "must be kill or pause" in done.stderr, done.describe()
    assert not (tmp_path / "nothing").exists()
