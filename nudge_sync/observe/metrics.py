"""Prometheus metrics of runs, fed by the event stream, written as a textfile, pushed or served.

Names follow Prometheus' conventions (base units, ``_seconds``, ``_total`` counters); every series
carries the ``collection`` label so that several jobs on one host (one textfile each, or one
Pushgateway group each) stay apart. A run that failed never sets the last-success time: with
push-add (``push``) the Pushgateway keeps the previous value, and ``write_textfile`` carries it over
from the file it replaces. Counters count within one process (a watcher); a one-shot command
starts them at zero, which Prometheus' ``rate``/``increase`` treat as a counter reset.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
    pushadd_to_gateway,
    start_http_server,
)
from prometheus_client.parser import text_string_to_metric_families

from ..engine.events import BatchWritten, Event, RunFailed, RunFinished, RunStarted, StepFinished

__all__ = ["LAST_SUCCESS", "RunMetrics", "SUCCESS_CODES"]

#: Exit codes of a run that did its job: written, unchanged, or nothing to do / held back by a gate.
SUCCESS_CODES = (0, 3)
LAST_SUCCESS = "nudge_sync_last_success_timestamp_seconds"
# ``*_created`` series (when a counter was made) mean nothing for a one-shot command's textfile
disable_created_metrics()
_STATUSES = ("written", "unchanged", "dry-run", "gated", "undone", "partial", "rolled-back", "failed")
#: The outcomes of ``nudge_sync_records_total``, each with a sample (0 until it happens).
OUTCOMES = ("written", "restored", "adopted")


class RunMetrics:
    """Subscriber: keeps the metrics of the runs it has seen in its own registry."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()  # the HTTP server thread reads while a run writes
        self.succeeded = False
        r, c = self.registry, ["collection"]
        self.last_success = Gauge(LAST_SUCCESS, "When the last successful run (exit 0 or 3) finished, epoch seconds.",
                                  c, registry=r)
        self.last_run = Gauge("nudge_sync_last_run_timestamp_seconds", "When the last run finished, epoch seconds.",
                              c, registry=r)
        self.exit_code = Gauge("nudge_sync_last_run_exit_code", "Exit code of the last run.", c, registry=r)
        self.status = Gauge("nudge_sync_last_run_status", "1 for the last run's status, 0 for the others.",
                            c + ["status"], registry=r)
        self.duration = Gauge("nudge_sync_last_run_duration_seconds", "Wall time of the last run.", c, registry=r)
        self.step = Gauge("nudge_sync_step_duration_seconds", "Wall time of each step of the last run.",
                          c + ["step"], registry=r)
        self.gamma = Gauge("nudge_sync_gamma", "Step size γ the last written or planned run chose.", c, registry=r)
        self.objective = Gauge("nudge_sync_validation_objective", "Validation objective of the last run.",
                               c + ["objective", "when"], registry=r)
        self.lock_held = Gauge("nudge_sync_lock_held", "1 while a run of this process holds the lock.", c, registry=r)
        self.runs = Counter("nudge_sync_runs_total", "Runs by final status.", c + ["status"], registry=r)
        self.records = Counter("nudge_sync_records_total", "Records written, restored or adopted.",
                               c + ["outcome"], registry=r)
        for outcome in OUTCOMES:  # every outcome has a sample from the start: 0 is a value, absent is not
            self.records.labels(collection, outcome)
        self._steps_seen = False
        self._batches_seen = False  #: adopted records were counted from the run's BatchWritten events

    # -- the subscriber ---------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        try:
            with self._lock:
                self._update(event)
        except Exception:  # an observer never breaks the run it watches
            pass

    def _update(self, event: Event) -> None:
        col = self.collection
        if isinstance(event, RunStarted):
            self._steps_seen = self._batches_seen = False
            self.step.clear()
            if not event.dry_run:
                self.lock_held.labels(col).set(1)
        elif isinstance(event, StepFinished):
            self._steps_seen = True
            self.step.labels(col, event.step).set(event.seconds)
        elif isinstance(event, BatchWritten):
            self._batches_seen = True
            if event.adopted:
                self.records.labels(col, "adopted").inc(event.adopted)
        elif isinstance(event, (RunFinished, RunFailed)):
            self._finished(event)

    def _finished(self, event: RunFinished | RunFailed) -> None:
        col, report = self.collection, event.report or {}
        status = event.status if isinstance(event, RunFinished) else (report.get("status") or "failed")
        if status in ("written", "unchanged", "dry-run", "gated") and isinstance(event, RunFailed):
            status = "failed"  # a report's status as it stood when the run broke off
        self.lock_held.labels(col).set(0)
        self.last_run.labels(col).set(event.time)
        self.exit_code.labels(col).set(event.exit_code)
        for s in set(_STATUSES) | {status}:
            self.status.labels(col, s).set(1 if s == status else 0)
        self.duration.labels(col).set(event.seconds)
        self.runs.labels(col, status).inc()
        if event.exit_code in SUCCESS_CODES and event.command in ("run", "apply"):  # a refresh, not a rollback
            self.succeeded = True
            self.last_success.labels(col).set(event.time)
        if not self._steps_seen:  # an engine that reports its step times in the report only
            for step, seconds in (report.get("timings") or {}).items():
                if isinstance(seconds, (int, float)):
                    self.step.labels(col, step).set(seconds)
        if report.get("gamma") is not None:
            self.gamma.labels(col).set(float(report["gamma"]))
        counts = report.get("counts") or {}
        for outcome, keys in zip(OUTCOMES, (("written",), ("restored",),
                                            ("adopted", "adopted_during_run", "adopted_during_rollback"))):
            n = sum(int(counts.get(k) or 0) for k in keys)
            if outcome == "restored" and "restored" in report and not counts.get("restored"):
                n = int(report.get("restored") or 0)  # rollback's report keeps it at the top level
            if outcome == "adopted" and self._batches_seen:
                n = 0  # BatchWritten events counted them already
            if n:
                self.records.labels(col, outcome).inc(n)
        objective = report.get("objective") or ""
        for when in ("before", "after"):
            value = ((report.get("validation") or {}).get(when) or {}).get(objective)
            if isinstance(value, (int, float)):
                self.objective.labels(col, objective, when).set(value)

    # -- outputs ----------------------------------------------------------------------------------

    def text(self) -> str:
        with self._lock:
            return generate_latest(self.registry).decode()

    def write_textfile(self, path: Path) -> None:
        """Write the textfile-collector format atomically (a temporary file renamed over ``path``);
        a run that did not succeed keeps the last-success time the file held."""
        if not self.succeeded:
            carried = _carried_last_success(path, self.collection)
            if carried is not None:
                with self._lock:
                    self.last_success.labels(self.collection).set(carried)
        text = self.text()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # the node exporter runs as another user
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def push(self, gateway: str, job: str = "nudge-sync", timeout: float = 10.0) -> None:
        """Push-add (POST): series this push lacks (the last success, after a failure) stay as they were."""
        # a family without samples (the last success, after a failure) must not be sent at all: the
        # Pushgateway would replace the stored family with the empty one
        pushed = CollectorRegistry(auto_describe=False)
        pushed.register(_NonEmpty(self.registry))
        with self._lock:
            pushadd_to_gateway(gateway, job=job, registry=pushed, grouping_key={"collection": self.collection},
                               timeout=timeout)

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` over HTTP from a daemon thread; raises OSError if the port is taken."""
        return start_http_server(port, addr=addr, registry=self.registry)


class _NonEmpty:
    """A collector of the families of ``registry`` that hold samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return (family for family in self.registry.collect() if family.samples)


def _carried_last_success(path: Path, collection: str) -> float | None:
    """The last-success time the file at ``path`` holds for ``collection``, if any."""
    try:
        old = path.read_text()
        for family in text_string_to_metric_families(old):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels.get("collection") == collection:
                    return float(sample.value)
    except Exception:  # no file yet, or one that is not ours: nothing to carry
        return None
    return None
