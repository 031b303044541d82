"""SIGKILL of ``run`` and of ``rollback`` at deterministic probe points, counted, on every backend.

Trials are chained to stay within CI time: the process that reruns after kill i is itself killed at
point i+1, and the invariants are checked between kills with the database's own client (cheap):

* payloads / metadata / documents unchanged (checksum);
* every vector is either what it was when the chain started or what an uninterrupted run on a twin
  collection of the same data stored (bit for bit) -- a rollback may also leave a restored vector
  within a few float32 ulps of its original where the database re-normalises (cosine Qdrant/Chroma).

At the end of a chain an unfaulted process must converge: a run to the reference result bit for bit,
a rollback to the originals (bit-exact where the backend allows) and no record "re-embedded by
others" (defect 4 of #10); at the end of each command's last chain ``status`` must be right too
(nothing pending, no lock, the right number nudged). A run
chain is followed by a rollback chain on the same collection, then again, until the kill targets
are met; the final rollback proves that every original was saved before the vector it protects
was overwritten (else it could not come back). Reruns take over the dead process' lock by
themselves on odd steps and pass ``--break-lock`` on even steps.

A kill lands at a probe point, between two calls to the database, so no request is in flight when
the process dies: what a backend adds is its connector code and whether the killed process is the
database engine itself (embedded engines) or only its client (a server outlives it and keeps every
call it answered). So the chains run on the three embedded engines and on Milvus 2.3.5 (the
``milvus+http`` path, with the read-full-row write of servers before 2.6.2); milvus-lite-server and
chroma-http run the engine and the connector code of milvus-lite and chroma-persistent, where the
kill also stops the engine (tests/REMOVED_TESTS.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.backends import RecordId
from tests.conftest import selected_harnesses
from tests.user._data import (BATCH, BATCH_ARGS, SWEEP, Collection, Reference, differing, make_collection, max_abs_diff,
                             reference)
from tests.user._native import checksum
from tests.user._probes import PHASES, hits, kill_at, read_trace, traced
from tests.user._runner import CliResult, nudge
from tests.user._tally import Tally

pytestmark = pytest.mark.slow  # run first (tests/user/conftest.py)
#: the backends a SIGKILL of nudge-sync tells apart (module docstring)
BACKENDS = [n for n in ("qdrant-local", "milvus-lite", "milvus-2.3.5", "chroma-persistent") if n in selected_harnesses()]
#: kills per backend (run, rollback) and records per collection, per sweep
KILL_TARGETS = {"ci": (26, 24), "long": (100, 100)}
RECORDS = {"ci": 300, "long": 2000}
#: a rollback on a re-normalising database writes a few corrective candidates around the original
RESTORED_TOLERANCE = 1e-6

#: kill schedules, cycled: (point, hit); "spread" walks the reads of the whole pass
RUN_PATTERN = (("run.read", "spread"), ("run.save", 1), ("run.before_write", 1), ("run.write", 1),
               ("run.read", "spread"), ("run.before_write", 2), ("run.write", 1), ("run.save", 2),
               ("lock.acquired", 1), ("run.write", 2), ("run.record", 1), ("run.read", "spread"),
               ("run.write", 1), ("run.record", 2))
ROLLBACK_PATTERN = (("rollback.read", "spread"), ("rollback.before_write", 1), ("rollback.write", 1),
                    ("rollback.save", 1), ("rollback.read", "spread"), ("rollback.write", 2),
                    ("rollback.before_write", 2), ("lock.acquired", 1), ("rollback.save", 2),
                    ("rollback.write", 1), ("rollback.record", 1), ("rollback.read", "spread"),
                    ("rollback.record", 2))


@dataclass
class KillChains:
    """Chains of killed processes on one collection, with their counts."""

    coll: Collection
    ref: Reference
    trace: Path
    tally: Tally
    kills: dict[str, int] = field(default_factory=lambda: {"run": 0, "rollback": 0})
    targets: dict[str, int] = field(default_factory=lambda: dict(zip(("run", "rollback"), KILL_TARGETS[SWEEP])))
    steps: itertools.count = field(default_factory=itertools.count)
    spread: itertools.count = field(default_factory=itertools.count)
    #: the vectors the last convergence read back (the next chain starts from them: one open less)
    settled: dict[RecordId, np.ndarray] | None = None

    def schedule(self, command: str) -> list[tuple[str, int]]:
        """The pattern with concrete hits, limited to points the reference reached that often."""
        pattern, seen = (RUN_PATTERN, self.ref.run_hits) if command == "run" else (ROLLBACK_PATTERN,
                                                                                      self.ref.rollback_hits)
        out = []
        for point, n in pattern:
            total = seen.get(point, 0)
            if n == "spread":
                n = 1 + (next(self.spread) * 7919) % max(total, 1)  # a prime stride over the pass
            if 0 < n <= total:
                out.append((point, n))
        return out

    def chain(self, command: str) -> None:
        """Kill ``command`` along its schedule until its target of kills in all, then converge with an
        unfaulted process (the one whose kill point lay past what was left to do, or a fresh one)."""
        target = self.targets[command]
        start = self.settled if self.settled is not None else self.coll.backend.vectors(self.coll.name)
        completed = None
        for point, n in self.schedule(command) * 3:
            if self.kills[command] >= target:
                break
            result = self.process(command, kill_at(point, n))
            if not result.killed:  # the point lies past what is left to do: this process completed
                completed = result
                break
            self.kills[command] += 1
            fault = f"{point}@{n}"
            problems = self.check_reached(result.pid, point, n) + self.check_between(command, start)
            self.tally.check(self.coll.backend.name, f"sigkill-{command}", problems, fault=fault, phase=PHASES[point])
        self.converge(command, completed or self.process(command, {}))

    def process(self, command: str, env: dict[str, str]) -> CliResult:
        step = next(self.steps)
        lock = ("--break-lock",) if step % 2 else ()  # odd steps: explicit; even: takeover of a dead lock
        return nudge(command, "--store", self.coll.uri, *BATCH_ARGS, *lock, env=traced(env, self.trace), expect=None)

    def check_reached(self, pid: int, point: str, n: int) -> list[str]:
        got = hits(read_trace(self.trace), pid).get(point, 0)
        return [] if got == n else [f"killed, but the trace shows {point} hit {got} times, not {n}"]

    def check_between(self, command: str, start: dict[RecordId, np.ndarray]) -> list[str]:
        """Invariants after a kill, read with the native client."""
        backend, coll, ref = self.coll.backend, self.coll, self.ref
        vectors, snap = backend.read(coll.name)
        problems = []
        if checksum(snap) != coll.payloads:
            problems.append("payloads / metadata / documents changed")
        if set(vectors) != set(coll.ids):
            problems.append(f"records appeared or vanished: {len(vectors)} instead of {len(coll.ids)}")
        stray = []
        for i in coll.ids:
            v = vectors.get(i)
            if v is None:
                continue
            ok = v.tobytes() in (start[i].tobytes(), ref.final[i].tobytes())
            if not ok and command == "rollback":
                ok = max_abs_diff(v, coll.originals[i]) <= RESTORED_TOLERANCE  # a corrective rewrite
            if not ok:
                stray.append(i)
        if stray:
            problems.append(f"{len(stray)} vectors are neither the chain's start, the reference result nor "
                            f"an original, e.g. {stray[:3]}")
        return problems

    def converge(self, command: str, final: CliResult) -> None:
        """After the chain: the collection and status as an uninterrupted command leaves them."""
        backend, coll, ref = self.coll.backend, self.coll, self.ref
        problems = []
        report = final.report or {}
        if final.code != 0:
            problems.append(f"the unfaulted {command} exited {final.code}: {final.stderr.strip()[-500:]}")
        elif command == "run" and report.get("counts", {}).get("adopted_reembedded"):
            problems.append(f"the rerun adopted {report['counts']['adopted_reembedded']} records as "
                            "re-embedded by others: nobody else wrote")
        elif command == "rollback" and report.get("skipped_reembedded"):
            problems.append(f"the rollback left {report['skipped_reembedded']} records alone as re-embedded "
                            "by others: nobody else wrote")
        vectors, snap = backend.read(coll.name)
        self.settled = vectors
        if checksum(snap) != coll.payloads:
            problems.append("payloads / metadata / documents changed")
        if command == "run":
            off = differing(vectors, ref.final)
            if off:
                problems.append(f"{len(off)} vectors differ from the uninterrupted run's, e.g. {off[:3]}")
            want_nudged = len(ref.written)
        else:
            exact = backend.rollback_is_bit_exact(coll.metric)
            off = [i for i in coll.ids if (vectors[i].tobytes() != coll.originals[i].tobytes() if exact
                                          else max_abs_diff(vectors[i], coll.originals[i]) > 2.0**-23)]
            if off:
                said = {k: report.get(k) for k in ("status", "to_restore", "restored", "skipped_reembedded")}
                problems.append(f"{len(off)} originals not restored, e.g. {off[:3]} (the last rollback reported {said})")
            want_nudged = 0
        if self.kills[command] >= self.targets[command]:  # the command's last chain: what status says
            status = nudge("status", "--store", coll.uri, expect=None)
            s = status.report or {}
            got = (status.code, s.get("nudged"), s.get("pending"), s.get("lock"))
            if got != (0, want_nudged, 0, None):
                problems.append(f"status says (exit, nudged, pending, lock) = {got}, "
                                f"expected {(0, want_nudged, 0, None)}")
        self.tally.check(backend.name, f"sigkill-{command}", problems)


def probe_spec_problems(coll: Collection, ref: Reference) -> list[str]:
    """What the kill schedules rely on, from the uninterrupted run's and rollback's traces: every
    point is hit, the write points once per batch of --batch-size records."""
    batches = -(-len(ref.written) // BATCH)
    writes = {"run": ("run.before_write", "run.save", "run.write"),
              "rollback": ("rollback.before_write", "rollback.save", "rollback.write")}
    problems = []
    for command, seen in (("run", ref.run_hits), ("rollback", ref.rollback_hits)):
        if {p: seen.get(p, 0) for p in writes[command]} != dict.fromkeys(writes[command], batches):
            problems.append(f"{command}: write points not hit once per batch of {BATCH}: {seen}")
        if seen.get(f"{command}.record", 0) < 2 or seen.get("lock.acquired") != 1:
            problems.append(f"{command}: record hit less than twice or the lock not once: {seen}")
    if ref.run_hits.get("run.read", 0) < len(coll.ids) // BATCH or ref.rollback_hits.get("rollback.read", 0) < batches:
        problems.append(f"reads hit less than once per batch: {ref.run_hits}, {ref.rollback_hits}")
    return problems


@pytest.mark.parametrize("user_backend", BACKENDS, indirect=True)
def test_sigkill_run_and_rollback_converge(user_backend, collection_name, tmp_path, tally):
    """The chains of the module docstring, after the probe spec they rely on (checked on every
    backend: the library's probes, traced by the reference run and rollback)."""
    coll = make_collection(user_backend, collection_name, tmp_path, records=RECORDS[SWEEP])
    chains = KillChains(coll, reference(coll, tmp_path), tmp_path / "chains.trace", tally)
    assert not probe_spec_problems(coll, chains.ref), probe_spec_problems(coll, chains.ref)
    for _ in range(12):  # each cycle kills at up to ~12 points per command
        if all(chains.kills[c] >= chains.targets[c] for c in chains.kills):
            break
        chains.chain("run")
        chains.chain("rollback")
    assert all(chains.kills[c] >= chains.targets[c] for c in chains.kills), chains.kills
