"""One sync run: DESIGN.md section 3, steps 1-10.

    describe -> lock -> read log -> check answer ids -> load state (adopt re-embedded records)
    -> split -> base vectors from ORIGINALS -> validation context -> fit NUDGE -> gate
    -> diff against stored vectors -> save originals -> write vectors -> read back, verify
    -> fingerprints + run record -> unlock

Invariants: nothing is written before every check has passed; originals are saved before the
vectors they protect are overwritten; fingerprints are taken from what the database returns after
the write (a database may re-normalise what we send); every run starts from the originals, so
runs never compound and a repeated run writes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from connectors import CollectionInfo, LabelledQuery, RecordId, VectorStore, WriteFailed

from ._answers import Answers
from ._context import ValidationContext
from . import _faults
from ._errors import DatabaseError, NothingToDo, RefusedInput
from ._feedback import Feedback, prepare_feedback
from ._metrics import evaluate
from ._nudge import NudgeM, NudgeN
from ._options import AUTO_EXACT_MAX_FLOATS, SyncOptions, SyncReport
from ._progress import Progress
from ._state import Original, SyncState, fingerprint
from ._views import IdSpace, View, exact_topk, search_topk

#: Metrics reported for validation before/after (the objective is added if missing).
REPORT_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@1")
#: A read-back vector may differ from what we sent by the database's own rounding/normalisation.
VERIFY_TOLERANCE = 1e-5


def default_log_name(collection: str) -> str:
    return f"{collection}_feedback"


def default_state_name(collection: str) -> str:
    return f"{collection}_nudge_state"


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def check_collection(info: CollectionInfo, method: str) -> None:
    """Refuse what NUDGE cannot serve (DESIGN.md section 3, step 2)."""
    if method == "nudge-m" and info.metric != "dot":
        raise RefusedInput(
            f"NUDGE-M writes vectors that are not unit-norm and only helps under dot-product search; "
            f"collection {info.collection!r} uses {info.metric} (it would re-normalise or mis-rank them). "
            "Use --method nudge-n, or a dot-product collection"
        )


def fetch_vectors(store: VectorStore, ids: Sequence[RecordId], batch_size: int) -> tuple[dict[RecordId, np.ndarray], list[RecordId]]:
    """Vectors by id in bounded batches: ({id: vector}, missing ids)."""
    found: dict[RecordId, np.ndarray] = {}
    missing: list[RecordId] = []
    for start in range(0, len(ids), batch_size):
        got, vecs, miss = store.get_vectors(ids[start : start + batch_size])
        found.update(zip(got, vecs))
        missing.extend(miss)
    return found, missing


@dataclass
class _Plan:
    """What a run will write, before it writes."""

    write_ids: list[RecordId]
    write_vectors: np.ndarray
    nudged_after: set[RecordId]
    restores: int


def sync(
    store: VectorStore,
    options: SyncOptions | None = None,
    *,
    entries: Iterable[LabelledQuery] | None = None,
    progress: Progress | None = None,
    store_label: str = "",
    log_source: str = "",
) -> SyncReport:
    """Run one sync on ``store``; see :class:`SyncOptions`. Returns a :class:`SyncReport`.

    ``entries`` replaces the log collection (e.g. a JSONL file's entries; ``log_source`` names them
    in error messages, e.g. "log file 'clicks.jsonl'"). Raises NothingToDo when
    the log is empty or a gate holds the run back (the report is attached as ``exc.report``),
    RefusedInput / LockHeld / DatabaseError (or a connectors error) otherwise.
    """
    opts = (options or SyncOptions()).validate()
    progress = progress or Progress()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    info = store.describe()
    check_collection(info, opts.method)
    report = SyncReport(
        run_id=new_run_id(), status="", store=store_label or f"{info.backend}:{info.collection}",
        collection=info.collection, method=opts.method, started=time.time(), objective=opts.objective,
        split={"val_fraction": opts.val_fraction, "salt": opts.split_salt},
    )
    state = SyncState(store.state(opts.state or default_state_name(info.collection)))
    token = None
    created_state = False
    if not opts.dry_run:
        created_state = not state.exists()
        state.ensure(info.dimension)
        if opts.break_lock:
            state.break_lock()
        token = state.acquire(opts.lock_ttl)
        state.set_lock_run(token, report.run_id)
        _faults.probe("lock.acquired")
    try:
        return _run(store, info, opts, state, report, entries, log_source, progress, timings, lap)
    except RefusedInput:
        # refused input is found before anything is written: leave no state collection behind
        # if this run created it (it holds nothing but our lock)
        if created_state and token is not None and next(state.originals(), None) is None:
            state.collection.drop()
            token = None
        raise
    except NothingToDo as exc:
        # a gated run is history too ("why did last night's run not write?")
        gated = getattr(exc, "report", None)
        if gated is not None and not opts.dry_run:
            gated.timings = timings
            state.put_run(gated.run_id, gated.to_dict())
        raise
    finally:
        if token is not None:
            state.release(token)


def _run(store, info, opts, state, report, entries, log_source, progress, timings, lap) -> SyncReport:  # noqa: C901
    # -- 3. the labelled query log ---------------------------------------------------------------
    log_name = opts.log or default_log_name(info.collection)
    with progress.phase("reading feedback"):
        source = log_source or "log entries"
        if entries is None:
            source = f"log {log_name!r}"
            if not store.log_exists(log_name):
                raise NothingToDo(f"the log collection {log_name!r} does not exist yet: add labelled queries "
                                  "with `nudge-sync feedback add|import`, or give --log / --log-file")
            entries = store.read_log(log_name)
        last_watermark = _last_watermark(state)
        feedback = prepare_feedback(
            entries, info.dimension, val_fraction=opts.val_fraction, salt=opts.split_salt,
            # cosine and l2 scores are only on the scale the fit uses for unit queries
            normalize_queries=opts.normalize_queries or info.metric != "dot",
            source=source, since=last_watermark,
        )
    report.watermark = feedback.watermark
    if opts.min_new_feedback and feedback.counts.get("new_since_watermark", 0) < opts.min_new_feedback:
        raise _gated(report, f"{feedback.counts.get('new_since_watermark', 0)} new labelled queries since the "
                     f"last run; waiting for {opts.min_new_feedback} (min_new_feedback)", feedback.counts)

    # answers that no longer exist are dropped and counted, not fatal
    current, missing = fetch_vectors(store, feedback.referenced_ids(), opts.batch_size)
    feedback = feedback.drop_ids(missing)
    _faults.probe("run.read")
    lap("read_log")

    # -- state: originals, adoption of records re-embedded by someone else -------------------------
    originals = state.all_originals() if state.exists() else {}
    others = [i for i in originals if i not in current]
    more, vanished = fetch_vectors(store, others, opts.batch_size)
    current.update(more)
    for i in vanished:
        originals.pop(i)
    _faults.probe("run.read")
    adopted: list[Original] = []
    for o in originals.values():
        fp_now = fingerprint(current[o.record_id])
        if o.fp is not None and fp_now != o.fp:
            o.vector, o.fp, o.nudged, o.run = current[o.record_id], fp_now, False, None
            adopted.append(o)
        elif o.fp is None:
            o.nudged = True  # a write was in flight when a run died: treat the record as ours
    lap("read_state")

    # -- 4. split, 5. base vectors from originals --------------------------------------------------
    train = feedback.rows("train")
    val = feedback.rows("val")
    counts = {**feedback.counts, "train_queries": len(train), "val_queries": len(val),
              "test_queries": len(feedback.rows("test")), "answers_missing": len(missing),
              "state_records": len(originals), "adopted_reembedded": len(adopted), "state_vanished": len(vanished)}
    report.counts = counts
    if len(train) == 0:
        raise _gated(report, "no training queries with known answers", counts)
    if len(val) < opts.min_val_queries:
        raise _gated(report, f"only {len(val)} validation queries; need at least {opts.min_val_queries} "
                     "(min_val_queries) to choose gamma safely", counts)

    moving = list(dict.fromkeys(a for r in train for a in feedback.answers[r]))  # T: may move
    ids = IdSpace(moving)
    ids.add(feedback.referenced_ids())
    base = np.stack([(originals[i].vector if i in originals else current[i]) for i in moving]).astype(np.float32)
    _check_base_norms(info, moving, base)
    moving_set = set(moving)
    restore = [i for i, o in originals.items() if o.nudged and i not in moving_set]  # labels gone: restore
    counts["base_records"] = len(moving)

    # -- 6. validation context: records that will not move, as they will be after the run ---------
    val_q = feedback.vectors[val]
    mode = opts.context if opts.context != "auto" else (
        "exact" if info.count * info.dimension <= AUTO_EXACT_MAX_FLOATS else "search")
    report.context_mode = mode
    k = max(opts.context_k, _metric_k(opts.objective))
    view = View(exclude=set(moving) | set(restore), extra_ids=restore,
                extra_vectors=np.stack([originals[i].vector for i in restore]) if restore else None)
    if mode == "exact":
        with progress.phase("reading vectors", info.count) as p:
            (context,) = exact_topk(store, val_q, k, [view], ids, info.metric, batch_size=opts.batch_size,
                                    on_batch=lambda n: (p.advance(n), _faults.probe("run.read")))
    else:
        with progress.phase("searching", len(val_q)) as p:
            context = search_topk(store, val_q, k, view, ids, info.metric, on_batch=p.advance)
    lap("context")

    # -- 7. fit, gate ------------------------------------------------------------------------------
    with progress.phase("fitting"):
        est = _estimator(opts).fit(
            base, feedback.vectors[train], _answers(feedback, train, ids),
            feedback.vectors[val], _answers(feedback, val, ids),
            base_ids=np.arange(len(moving), dtype=np.int64), val_context=context,
        )
    report.gamma = float(est.gamma_)
    report.objective = est.objective_  # parity mode optimises the reference's own criterion
    report.curve = _curve(est.gammas_, est.validation_curve_, report.gamma)
    after = _normalized(base)
    moved_rows = np.asarray(est.moved_ids_, dtype=np.int64)
    after[moved_rows] = est.moved_vectors_
    val_answers = _answers(feedback, val, ids)
    report.validation = {
        "before": _validation_metrics(val_q, _normalized(base), context, val_answers, opts.objective),
        "after": _validation_metrics(val_q, after, context, val_answers, opts.objective),
    }
    counts["moved"] = len(moved_rows)
    lap("fit")
    gain = float(est.val_score_) - float(est.val_score_before_)
    if not gain > opts.min_gain:
        raise _gated(report, f"validation {opts.objective} would change by {gain:+.4f}, not above "
                     f"min_gain={opts.min_gain}: nothing written", counts)

    # -- 8. diff against what is stored --------------------------------------------------------------
    plan = _plan(moving, base, moved_rows, est.moved_vectors_, restore, originals, current, opts.tolerance)
    counts["to_write"] = len(plan.write_ids)
    counts["to_restore"] = plan.restores
    share = len(plan.write_ids) / max(info.count, 1)
    if share > opts.max_changed_fraction:
        raise _gated(report, f"the run would rewrite {share:.1%} of the collection, above "
                     f"max_changed_fraction={opts.max_changed_fraction:.0%}", counts)
    lap("diff")
    if opts.dry_run:
        report.status = "dry-run"
        report.reason = f"would write {len(plan.write_ids)} vectors ({plan.restores} restores)"
        report.written_ids = plan.write_ids
        return _finish(report, timings)

    # -- 9. write: originals first, then vectors, then read back -------------------------------------
    before_write = [_original_for(i, originals, current, pending=True) for i in plan.write_ids]
    state.put_originals(before_write + [o for o in adopted if o.record_id not in set(plan.write_ids)])
    _faults.probe("run.save", plan.write_ids)
    with progress.phase("writing", len(plan.write_ids)) as p:
        for start in range(0, len(plan.write_ids), opts.batch_size):
            chunk = plan.write_ids[start : start + opts.batch_size]
            _faults.probe("run.before_write", chunk)
            # verify=False: _verify below reads every written vector back (it needs them for the
            # fingerprints), so the connector's own read-back would be a second, identical read
            store.update_vectors(chunk, plan.write_vectors[start : start + len(chunk)], verify=False)
            _faults.probe("run.write", chunk)
            p.advance(len(chunk))
    lap("write")
    readback = _verify(store, plan, opts.batch_size)
    state.put_originals(
        (Original(i, o.vector, fingerprint(readback[i]), i in plan.nudged_after, report.run_id)
         for i, o in zip(plan.write_ids, before_write)),
        vectors_stored=True,  # saved just above with these vectors; only the fingerprints are new
    )
    _faults.probe("run.record")
    # a run that died mid-write left originals without fingerprints; those it did write before
    # dying may need no rewrite now: settle them from what is stored
    written = set(plan.write_ids)
    settled = [Original(o.record_id, o.vector, fingerprint(current[o.record_id]), o.record_id in plan.nudged_after,
                        report.run_id) for o in originals.values() if o.fp is None and o.record_id not in written]
    state.put_originals(settled, vectors_stored=True)
    if vanished:
        state.collection.delete("original", [Original(i, np.zeros(1), None, False, None).record().key for i in vanished])
    lap("verify")
    counts["written"] = len(plan.write_ids)
    report.status = "written" if plan.write_ids else "unchanged"
    report.reason = f"wrote {len(plan.write_ids)} vectors ({plan.restores} restores)"
    report.written_ids = plan.write_ids
    _finish(report, timings)
    state.put_run(report.run_id, report.to_dict())
    _faults.probe("run.record")
    return report


# -- helpers ----------------------------------------------------------------------------------------


def _estimator(opts: SyncOptions) -> NudgeN | NudgeM:
    common = dict(gamma=opts.gamma, gamma_search=opts.gamma_search, objective=opts.objective)
    return NudgeN(**common) if opts.method == "nudge-n" else NudgeM(**common)


#: Points of the validation curve kept in a report (the exact sweep can have thousands of pieces;
#: run records live in the state collection, where a record's size is bounded).
CURVE_POINTS = 200


def _curve(gammas, scores, chosen: float) -> dict[str, list[float]]:
    g, v = np.asarray(gammas, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    order = np.argsort(g, kind="stable")
    g, v = g[order], v[order]
    if len(g) > CURVE_POINTS:
        keep = set(np.linspace(0, len(g) - 1, CURVE_POINTS).round().astype(int).tolist())
        keep |= {int(np.argmax(v)), int(np.argmin(np.abs(g - chosen)))}
        idx = sorted(keep)
        g, v = g[idx], v[idx]
    return {"gamma": [round(float(x), 6) for x in g], "score": [round(float(x), 6) for x in v]}


def _answers(feedback: Feedback, rows: np.ndarray, ids: IdSpace) -> Answers:
    return Answers.from_lists([ids.add(feedback.answers[r]).tolist() for r in rows],
                              grades=[feedback.grades[r] for r in rows])


def _metric_k(spec: str) -> int:
    _, _, k = spec.partition("@")
    return int(k) if k.isdigit() else 10


def _normalized(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _check_base_norms(info: CollectionInfo, ids: Sequence[RecordId], base: np.ndarray) -> None:
    if info.metric == "cosine":
        return  # the database compares directions only
    norms = np.linalg.norm(base.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-3)
    if bad.size:
        raise RefusedInput(
            f"collection {info.collection!r} uses {info.metric} distance, where NUDGE needs unit-norm record "
            f"vectors; record {ids[bad[0]]!r} has norm {norms[bad[0]]:.4f} ({bad.size} such records)"
        )


def _validation_metrics(queries, vectors, context: ValidationContext, answers: Answers, objective: str) -> dict[str, float]:
    k = context.ids.shape[1]
    ranked = ValidationContext.from_corpus(queries, vectors, k, ids=np.arange(len(vectors), dtype=np.int64),
                                           normalize=False).merge(context)
    names = list(dict.fromkeys([*REPORT_METRICS, objective]))
    return {m: round(float(v), 6) for m, v in evaluate(ranked.ids, answers, names).items()}


def _plan(moving, base, moved_rows, moved_vectors, restore, originals, current, tol) -> _Plan:
    target = base.copy()
    target[moved_rows] = moved_vectors
    nudged_after = {moving[r] for r in moved_rows}
    ids: list[RecordId] = []
    vecs: list[np.ndarray] = []
    restores = 0
    for i, t in zip(moving + restore, list(target) + [originals[i].vector for i in restore]):
        if np.max(np.abs(current[i].astype(np.float64) - t)) > tol:
            ids.append(i)
            vecs.append(t)
            restores += i not in nudged_after
    arr = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, base.shape[1]), np.float32)
    return _Plan(ids, arr, nudged_after, restores)


def _original_for(i: RecordId, originals: dict[RecordId, Original], current, *, pending: bool) -> Original:
    o = originals.get(i)
    if o is None:  # first time we touch it: what is stored now IS the original
        return Original(i, current[i], None, False, None)
    return Original(i, o.vector, None if pending else o.fp, o.nudged, o.run)


def _verify(store: VectorStore, plan: _Plan, batch_size: int) -> dict[RecordId, np.ndarray]:
    got, missing = fetch_vectors(store, plan.write_ids, batch_size)
    if missing:
        raise DatabaseError(f"{len(missing)} records vanished while we wrote them, e.g. {missing[:5]}")
    worst, worst_id = 0.0, None
    for i, t in zip(plan.write_ids, plan.write_vectors):
        d = float(np.max(np.abs(got[i].astype(np.float64) - t)))
        if d > worst:
            worst, worst_id = d, i
    if worst > VERIFY_TOLERANCE:
        raise DatabaseError(str(WriteFailed(
            f"read-back check failed: record {worst_id!r} differs from what was written by {worst:.3g}")))
    return got


def _last_watermark(state: SyncState) -> float | None:
    for run in reversed(state.runs()):
        if run.get("status") in ("written", "unchanged") and run.get("watermark") is not None:
            return float(run["watermark"])
    return None


def _gated(report: SyncReport, reason: str, counts: dict[str, int]) -> NothingToDo:
    report.status, report.reason, report.counts = "gated", reason, counts
    report.finished = time.time()
    exc = NothingToDo(reason)
    exc.report = report  # type: ignore[attr-defined]
    return exc


def _finish(report: SyncReport, timings: dict[str, float]) -> SyncReport:
    report.timings = timings
    report.finished = time.time()
    return report
