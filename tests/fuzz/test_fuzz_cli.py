"""Property-based bad input through the ``nudge-sync`` command, each example its own process, on
embedded Qdrant, Milvus Lite and Chroma.

For every generated log file (JSONL, Parquet, NPZ) given to ``feedback import``, every argument
vector given to ``feedback add``, ``run``, ``plan`` and ``eval``:

* the exit code is a documented one, and never 1 (an internal error is a bug);
* a refusal names the problem on stderr (the field, option or file it came from), in one line;
* after a non-zero exit every collection (vectors, payloads, log, state, the list of collections)
  is byte for byte what it was, read with the database's own client -- except that a ``run`` held
  back by a gate (exit 3) records itself in the run history, by design;
* whatever was accepted leaves the log usable: a ``plan`` at the end still works.

One test per database runs the three kinds one after the other on one copy of the template (what
an example accepted is the baseline of the next), then that one ``plan``. Examples per kind and
database: ``NUDGE_SYNC_FUZZ_EXAMPLES`` (default 4, derandomized so CI is repeatable; set it higher
for a longer, randomized run). Each test writes its outcomes (exit code per kind) to
``NUDGE_SYNC_FUZZ_REPORT`` (a JSONL file) when that is set.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz._db import DOCUMENTED_EXIT_CODES, STATE, WITHOUT_STATE, EmbeddedDB, Outcome, run_cli
from tests.fuzz._strategies import EVAL_OPTIONS, RUN_OPTIONS, Input, add_args, log_files, option_args

BACKENDS = ("qdrant", "milvus", "chroma")
DEFAULT_EXAMPLES = 4
EXAMPLES = int(os.environ.get("NUDGE_SYNC_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= DEFAULT_EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: every step would be a process
)


class Session:
    """One database across a test's examples: checks each outcome and keeps the latest snapshot."""

    def __init__(self, db: EmbeddedDB):
        self.db = db
        self.kind = ""
        self.before = db.snapshot()
        self.codes: dict[str, Counter[int]] = {}

    def check(self, out: Outcome, given: Input) -> None:
        self.codes.setdefault(self.kind, Counter())[out.code] += 1
        assert out.code in DOCUMENTED_EXIT_CODES, f"undocumented exit code: {out.describe()}"
        assert "Traceback" not in out.stderr, out.describe()
        if out.code == 0:
            self.before = self.db.snapshot()  # accepted: what it wrote is the new baseline
            return
        message = out.message.lower()
        assert message.startswith(("error:", "nothing to do:")), f"no one-line error: {out.describe()}"
        if out.code in (2, 4, 6):
            assert any(t.lower() in message for t in given.tokens if t), \
                f"the error does not name the problem (expected one of {sorted(given.tokens)}): {out.describe()}"
        after = self.db.snapshot()
        if out.code == 3 and out.args[0] == "run":
            # a gated run is recorded in the history (the state collection) by design; nothing else moves
            states = {STATE, *(v for k, v in zip(out.args, out.args[1:]) if k == "--state")}
            assert _without(after, states) == _without(self.before, states), \
                f"a gated run changed more than its history: {out.describe()}"
            self.before = after
            return
        assert after == self.before, f"a refused command changed the database: {out.describe()}"

    def finish(self) -> None:
        """Whatever was accepted, the log still works; then the outcomes, for the report."""
        later = run_cli("plan", "--store", self.db.uri())
        assert later.code in (0, 3), f"the log no longer works after {sorted(self.codes)} examples: {later.describe()}"
        report = os.environ.get("NUDGE_SYNC_FUZZ_REPORT")
        if report:
            with open(report, "a") as f:
                for kind, codes in self.codes.items():
                    f.write(json.dumps({"kind": kind, "backend": self.db.backend,
                                        "codes": dict(sorted(codes.items()))}) + "\n")


def _without(snapshot: dict[str, dict[str, str]], names: set[str]) -> dict[str, dict[str, str]]:
    return {k: v for k, v in snapshot.items() if k not in names}


def _fuzz(session: Session, kind: str, draw: Callable[[st.DataObject], tuple[list[str], Input]]) -> None:
    """Run ``draw``'s command lines as processes, one per example, checking every outcome."""
    session.kind = kind

    @SETTINGS
    @given(st.data())
    def example(data: st.DataObject) -> None:
        args, given_input = draw(data)
        session.check(run_cli(*args), given_input)

    example()


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_log_files_arguments_and_options(backend: str, fresh_db, tmp_path: Path) -> None:
    """Generated log files through ``feedback import``, argument vectors through ``feedback add``,
    option vectors through ``run`` / ``plan`` / ``eval``; then the log still works."""
    session = Session(fresh_db(backend))
    db = session.db

    def log_file(data: st.DataObject) -> tuple[list[str], Input]:
        given_file = data.draw(log_files(db, tmp_path))
        return ["feedback", "import", "--store", db.uri(), *given_file.args], given_file

    def add(data: st.DataObject) -> tuple[list[str], Input]:
        args = data.draw(add_args(db, tmp_path))
        return ["feedback", "add", "--store", db.uri(), *args.args], args

    # a run that writes creates the state collection, which Milvus Lite cannot reopen yet (_db.WITHOUT_STATE)
    commands = ["plan", "eval"] if backend in WITHOUT_STATE else ["run", "plan", "eval"]

    def options(data: st.DataObject) -> tuple[list[str], Input]:
        command = data.draw(st.sampled_from(commands))
        args = data.draw(option_args(EVAL_OPTIONS if command == "eval" else RUN_OPTIONS))
        if command == "run" and "--max-changed-fraction" not in args.args:
            args.args += ["--max-changed-fraction", "1"]  # on 60 records a run may rewrite a large share
        return [command, "--store", db.uri(), *args.args], args

    _fuzz(session, "feedback import", log_file)
    _fuzz(session, "feedback add", add)
    _fuzz(session, "run / plan / eval options", options)
    session.finish()
