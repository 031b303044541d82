"""The engine's event stream as a library user subscribes to it (``sync(..., events=)``,
``rollback(..., events=)``): every step once and in order, every gate, every batch, every probe
point, the run's end with its report and exit code; and the built-in subscribers (progress,
timings, fault probes) fed by it whether the caller passes ``events`` or not.

In-process on the memory store: the event objects exist only inside the process (the CLI's
subscribers that print them are tested where they are built)."""

from __future__ import annotations

import math

import pytest

import connectors
from nudge_sync.engine import NothingToDo, RefusedInput, SyncOptions, faults, ops
from nudge_sync.engine.events import (Advanced, BatchWritten, Events, GateDecided, Probe, RunFailed, RunFinished,
                                      RunStarted, StepFinished, StepStarted)
from nudge_sync.engine.progress import Progress
from nudge_sync.engine.run import sync
from tests.backends import random_vectors
from tests.engine.test_refusals import make_entries

N, DIM, BATCH = 400, 16, 40
RUN_STEPS = ["read_inputs", "plan", "write", "verify", "record"]
GATES = ["nothing_new", "min_new_feedback", "train_queries", "min_val_queries", "min_gain", "max_changed_fraction"]


@pytest.fixture
def mem(request, collection_name):
    h = request.getfixturevalue("harness_memory")
    ids = h.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    h.create(collection_name, ids, vectors, metric="cosine", rich=True)
    store = connectors.open_store(h.uri(collection_name))
    yield store, make_entries(ids, vectors)
    store.close()
    for name in h.collections():
        if name.startswith(collection_name):
            h.drop(name)


@pytest.fixture(autouse=True)
def _no_probe_callbacks():
    faults.clear()
    yield
    faults.clear()


def recorded() -> tuple[Events, list]:
    seen: list = []
    return Events([seen.append]), seen


def steps(seen: list, kind: type) -> list[str]:
    return [e.step for e in seen if isinstance(e, kind)]


def test_a_written_run_emits_each_step_once_in_order_with_its_gates_batches_and_probes(mem):
    store, entries = mem
    events, seen = recorded()
    report = sync(store, SyncOptions(batch_size=BATCH, max_changed_fraction=1.0), entries=entries, events=events)
    written = report.counts["written"]
    assert report.status == "written" and written > BATCH  # several batches

    assert isinstance(seen[0], RunStarted) and seen[0].command == "run" and seen[0].options["batch_size"] == BATCH
    assert isinstance(seen[-1], RunFinished) and seen[-1].exit_code == 0 and seen[-1].status == "written"
    assert seen[-1].report == report.to_dict()
    assert {e.run_id for e in seen} == {report.run_id}
    assert steps(seen, StepStarted) == RUN_STEPS and steps(seen, StepFinished) == RUN_STEPS
    # every other event falls between its step's start and finish
    bounds = [(i, e) for i, e in enumerate(seen) if isinstance(e, (StepStarted, StepFinished))]
    assert [type(e) for _, e in bounds] == [StepStarted, StepFinished] * len(RUN_STEPS)

    assert [(g.gate, g.passed) for g in seen if isinstance(g, GateDecided)] == [(g, True) for g in GATES]
    batches = [e for e in seen if isinstance(e, BatchWritten)]
    assert len(batches) == math.ceil(report.counts["to_write"] / BATCH)
    assert {b.phase for b in batches} == {"run"} and sum(b.written for b in batches) == written
    finished = {e.step: e for e in seen if isinstance(e, StepFinished)}
    assert finished["write"].counts["attempted"] == written and finished["record"].counts["recorded"] == written
    assert finished["plan"].counts["to_write"] == report.counts["to_write"]
    points = {e.point for e in seen if isinstance(e, Probe)}
    assert points == {"lock.acquired", "run.read", "run.before_write", "run.save", "run.write", "run.record"}
    assert sum(e.n for e in seen if isinstance(e, Advanced) and e.step == "write") == written
    # the report's timings come from StepFinished
    assert report.timings == {e.step: e.seconds for e in seen if isinstance(e, StepFinished)}
    assert list(report.timings) == RUN_STEPS


def test_a_gated_run_ends_with_exit_code_3_after_its_gate_said_no(mem):
    store, entries = mem
    events, seen = recorded()
    with pytest.raises(NothingToDo) as err:
        sync(store, SyncOptions(min_gain=1.0), entries=entries, events=events)
    assert steps(seen, StepFinished) == ["read_inputs", "plan"]
    assert [(g.gate, g.passed) for g in seen if isinstance(g, GateDecided)][-1] == ("min_gain", False)
    end = seen[-1]
    assert isinstance(end, RunFinished) and end.status == "gated" and end.exit_code == 3
    assert end.report == err.value.report.to_dict()
    assert not any(isinstance(e, (BatchWritten, RunFailed)) for e in seen)


def test_a_refused_run_ends_with_run_failed_and_its_exit_code(mem):
    store, entries = mem
    events, seen = recorded()
    with pytest.raises(RefusedInput):
        sync(store, SyncOptions(method="nudge-m"), entries=entries, events=events)  # cosine collection
    assert isinstance(seen[0], RunStarted)
    assert isinstance(seen[-1], RunFailed) and seen[-1].exit_code == 4 and seen[-1].error == "RefusedInput"
    assert not steps(seen, StepStarted)


def test_rollback_emits_its_steps_and_batches(mem):
    store, entries = mem
    report = sync(store, SyncOptions(batch_size=BATCH, max_changed_fraction=1.0), entries=entries)
    events, seen = recorded()
    undone = ops.rollback(store, batch_size=BATCH, events=events)
    assert undone["restored"] == report.counts["written"]
    assert isinstance(seen[0], RunStarted) and seen[0].command == "rollback"
    assert steps(seen, StepStarted) == ["read_state", "write", "verify", "record"]
    assert steps(seen, StepFinished) == ["read_state", "write", "verify", "record"]
    batches = [e for e in seen if isinstance(e, BatchWritten)]
    assert {b.phase for b in batches} == {"rollback"} and sum(b.written for b in batches) == undone["restored"]
    assert isinstance(seen[-1], RunFinished) and seen[-1].report == undone and seen[-1].exit_code == 0


class Recording(Progress):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def begin(self, phase: str, total: int | None) -> None:
        self.calls.append(("begin", phase, total))

    def advance(self, n: int) -> None:
        self.calls.append(("advance", n))

    def end(self) -> None:
        self.calls.append(("end",))


def test_progress_follows_the_steps(mem):
    store, entries = mem
    progress = Recording()
    report = sync(store, SyncOptions(batch_size=BATCH, max_changed_fraction=1.0), entries=entries, progress=progress)
    begins = [c for c in progress.calls if c[0] == "begin"]
    assert [c[1] for c in begins] == ["reading feedback", "planning", "writing", "verifying", "recording"]
    assert begins[1][2] == N and begins[2][2] == report.counts["to_write"]  # exact context streams N vectors
    assert len([c for c in progress.calls if c[0] == "end"]) == len(begins)
    writing = progress.calls.index(begins[2])
    advanced = [c[1] for c in progress.calls[writing + 1 :] if c[0] == "advance"]
    assert sum(advanced[: math.ceil(report.counts["to_write"] / BATCH)]) == report.counts["to_write"]


def test_fault_probes_fire_for_a_caller_that_passes_no_events(mem):
    store, entries = mem
    hits: list[tuple[int, list]] = []
    faults.on("run.write", lambda n, ids: hits.append((n, ids)))
    report = sync(store, SyncOptions(batch_size=BATCH, max_changed_fraction=1.0), entries=entries)
    assert [n for n, _ in hits] == list(range(1, math.ceil(report.counts["to_write"] / BATCH) + 1))
    assert sorted(i for _, ids in hits for i in ids) == sorted(report.written_ids)
