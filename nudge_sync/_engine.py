"""One sync run: DESIGN.md section 3, steps 1-10.

    describe -> read log, check answer ids, split (gates: enough new feedback, train and validation
    queries) -> create the state, lock -> classify every state entry against what is stored
    -> base vectors from ORIGINALS -> validation context -> fit NUDGE -> gate -> diff against
    stored vectors -> write in batches (re-read, save originals with targets, write) -> read back
    -> fingerprints + run record -> unlock

Invariants: nothing is created before every check that needs no state has passed, and nothing is
written before every check has passed (a run held back by a gate leaves no state collection it
created); originals are saved before the vectors they protect are overwritten, with the target
about to be written; a vector is only ever overwritten if it still holds what the run planned
from (``nudge_sync._writer``), so a concurrent writer's vector is adopted, never overwritten;
fingerprints are taken from what the database returns after the write (a database may
re-normalise what we send); every run starts from the originals, so runs never compound and a
repeated run writes nothing. A run that fails after writing puts back what it wrote (exit 6,
"the collection is as it was before this run"), or, if the database will not let it, says so
(exit 7: rerun or roll back that run).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from connectors import CollectionInfo, LabelledQuery, RecordId, VectorStore

from . import _faults
from .core.answers import Answers
from ._classify import ADOPTED, NUDGED, VANISHED, Verdict, classify, tolerance_of
from .core.context import ValidationContext
from ._errors import NothingToDo, RefusedInput
from ._feedback import Feedback, prepare_feedback
from .core.metrics import evaluate
from .core.nudge import NudgeM, NudgeN
from ._options import AUTO_EXACT_MAX_FLOATS, SyncOptions, SyncReport
from ._progress import Progress
from ._state import Original, SyncState, pending_meta_bytes
from ._views import IdSpace, View, exact_topk, search_topk
from ._aftermath import after_failed_write, record_writes
from ._writer import BatchWriter, WriteItem, fetch_vectors

#: Metrics reported for validation before/after (the objective is added if missing).
REPORT_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@1")

__all__ = ["check_collection", "check_state_room", "default_log_name", "default_state_name", "fetch_vectors",
           "load_state", "new_run_id", "sync"]


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


def check_state_room(state: SyncState, info: CollectionInfo) -> None:
    """A pending write records its target in the state entry's meta: refuse a dimension whose
    targets the state collection cannot hold (Milvus keeps meta in a VARCHAR of 65,535 bytes)."""
    limit = getattr(state.collection, "max_meta_bytes", None)
    need = pending_meta_bytes(info.dimension)
    if limit is not None and need > limit:
        largest = next(d for d in range(info.dimension, 0, -1) if pending_meta_bytes(d) <= limit)
        raise RefusedInput(
            f"collection {info.collection!r} has {info.dimension}-d vectors: a write in flight records its target "
            f"in the state collection, which would take up to {need:,} bytes of meta where {state.collection.name!r} "
            f"holds {limit:,}; nudge-sync serves collections of up to {largest:,} dimensions on this backend")


@dataclass
class _Plan:
    """What a run will write, before it writes."""

    write_ids: list[RecordId]
    write_vectors: np.ndarray
    nudged_after: set[RecordId]
    restores: int


@dataclass
class _Inputs:
    """What a run read before it created anything: the feedback and the answers' stored vectors."""

    feedback: Feedback
    current: dict[RecordId, np.ndarray]
    missing: list[RecordId]
    counts: dict[str, int]


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
    RefusedInput / LockHeld / DatabaseError (or a connectors error) otherwise; PartiallyWritten
    (exit 7) when a failed run could not put back what it had written.
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
    if opts.context_k > max(info.count, 1):  # a deeper context than the collection holds only costs memory
        report.notes.append(f"context_k={opts.context_k} is more than the {info.count} records of "
                            f"{info.collection!r}; using {max(info.count, 1)}")
        opts = replace(opts, context_k=max(info.count, 1))
    state = SyncState(store.state(opts.state or default_state_name(info.collection)))
    existed = state.exists()
    check_state_room(state, info)
    token = None
    created = failed = False
    try:
        # every check that needs no state first: a refused or gated run creates nothing
        inputs = _read_inputs(store, info, opts, state if existed else None, report, entries, log_source, progress)
        lap("read_log")
        if not opts.dry_run:
            created = not existed
            state.ensure(info.dimension)
            if opts.break_lock:
                state.break_lock()
            token = state.acquire(opts.lock_ttl)
            state.set_lock_run(token, report.run_id)
            report.took_over_lock = state.took_over
            _faults.probe("lock.acquired")
        return _run(store, info, opts, state, report, inputs, progress, timings, lap)
    except BaseException as exc:
        failed = True
        # held back before anything was written: the state this run created (and still holds the
        # lock of: another first run racing it may be using it) is dropped again
        if created and token is not None and _drop_if_empty(state):
            token = None
        gated = getattr(exc, "report", None)
        if isinstance(exc, NothingToDo) and gated is not None and existed and not opts.dry_run:
            gated.timings = timings  # a gated run is history too ("why did last night's run not write?")
            state.put_run(gated.run_id, gated.to_dict())
        raise
    finally:
        if token is not None:
            state.release(token, quiet=failed)


def _drop_if_empty(state: SyncState) -> bool:
    """Drop a state collection that holds no original (only our lock): True if dropped."""
    try:
        if next(state.originals(), None) is None:
            state.collection.drop()
            return True
    except Exception:  # the error being raised matters more than this clean-up
        pass
    return False


def _read_inputs(store, info, opts, state, report, entries, log_source, progress) -> _Inputs:
    """The log, split, with the answers' stored vectors; the gates that need no state."""
    log_name = opts.log or default_log_name(info.collection)
    with progress.phase("reading feedback"):
        source = log_source or "log entries"
        if entries is None:
            source = f"log {log_name!r}"
            if not store.log_exists(log_name):
                raise NothingToDo(f"the log collection {log_name!r} does not exist yet: add labelled queries "
                                  "with `nudge-sync feedback add|import`, or give --log / --log-file")
            entries = store.read_log(log_name)
        feedback = prepare_feedback(
            entries, info.dimension, val_fraction=opts.val_fraction, salt=opts.split_salt,
            # cosine and l2 scores are only on the scale the fit uses for unit queries
            normalize_queries=opts.normalize_queries or info.metric != "dot",
            source=source, since=_last_watermark(state) if state is not None else None,
        )
    _faults.probe("run.read")
    report.watermark = feedback.watermark
    if opts.min_new_feedback and feedback.counts.get("new_since_watermark", 0) < opts.min_new_feedback:
        raise _gated(report, f"{feedback.counts.get('new_since_watermark', 0)} new labelled queries since the "
                     f"last run; waiting for {opts.min_new_feedback} (min_new_feedback)", feedback.counts)
    # answers that no longer exist are dropped and counted, not fatal
    current, missing = fetch_vectors(store, feedback.referenced_ids(), opts.batch_size)
    feedback = feedback.drop_ids(missing)
    train, val = feedback.rows("train"), feedback.rows("val")
    counts = {**feedback.counts, "train_queries": len(train), "val_queries": len(val),
              "test_queries": len(feedback.rows("test")), "answers_missing": len(missing)}
    report.counts = counts
    if len(train) == 0:
        raise _gated(report, "no training queries with known answers", counts)
    if len(val) < opts.min_val_queries:
        raise _gated(report, f"only {len(val)} validation queries; need at least {opts.min_val_queries} "
                     "(min_val_queries) to choose gamma safely", counts)
    return _Inputs(feedback, current, missing, counts)


def load_state(store: VectorStore, state: SyncState, info: CollectionInfo, current: dict[RecordId, np.ndarray],
               batch_size: int, probe: str | None = None) -> tuple[dict[RecordId, Original], dict[RecordId, Verdict]]:
    """Every state entry, classified against the vector stored now (``current`` is completed with
    the vectors it lacks): ``(entries as stored, verdicts)``."""
    olds = state.all_originals() if state.exists() else {}
    if probe:
        _faults.probe(probe)
    more, _ = fetch_vectors(store, [i for i in olds if i not in current], batch_size,
                            on_batch=(lambda: _faults.probe(probe)) if probe else None)
    current.update(more)
    tol = tolerance_of(info)
    return olds, {i: classify(o, current.get(i), tol) for i, o in olds.items()}


def _run(store, info, opts, state, report, inputs: _Inputs, progress, timings, lap) -> SyncReport:  # noqa: C901
    feedback, current, counts = inputs.feedback, inputs.current, inputs.counts

    # -- state: each entry classified against what is stored (adoption, settled writes) -----------
    _, verdicts = load_state(store, state, info, current, opts.batch_size, probe="run.read")
    originals = {i: v.entry for i, v in verdicts.items() if v.entry is not None}
    kinds = [v.kind for v in verdicts.values()]
    counts.update(state_records=len(originals), adopted_reembedded=kinds.count(ADOPTED),
                  state_vanished=kinds.count(VANISHED),
                  pending_settled=sum(v.changed and v.kind not in (ADOPTED, VANISHED) for v in verdicts.values()))
    lap("read_state")

    # -- 4. split, 5. base vectors from originals --------------------------------------------------
    train = feedback.rows("train")
    val = feedback.rows("val")
    moving = list(dict.fromkeys(a for r in train for a in feedback.answers[r]))  # T: may move
    ids = IdSpace(moving)
    ids.add(feedback.referenced_ids())
    base = np.stack([(originals[i].vector if i in originals else current[i]) for i in moving]).astype(np.float32)
    _check_base_norms(info, moving, base)
    moving_set = set(moving)
    restore = [i for i, v in verdicts.items() if v.kind == NUDGED and i not in moving_set]  # labels gone: restore
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

    # -- 9. write, batch by batch (nudge_sync._writer), then read back --------------------------------
    items = [WriteItem(i, t, current[i], originals.get(i), i in plan.nudged_after)
             for i, t in zip(plan.write_ids, plan.write_vectors)]
    writer = BatchWriter(store, state, info, report.run_id, "run", opts.batch_size)
    try:
        with progress.phase("writing", len(items)) as p:
            writer.write(items, on_batch=p.advance)
        lap("write")
        landed, not_landed = writer.read_back(writer.written_ids())
        if not_landed:
            landed.update(writer.write_again(not_landed))
        record_writes(state, report, writer, landed, originals, verdicts)
    except Exception as exc:
        if not writer.attempted:
            raise
        raise after_failed_write(writer, originals, exc, report, state, len(items)) from None
    lap("verify")
    counts.update(written=len(landed), adopted_during_run=len(writer.adopted),
                  vanished_during_run=len(set(writer.vanished)))
    report.status = "written" if landed else "unchanged"
    restores = sum(not writer.attempted[i].nudged_after for i in landed)
    report.reason = f"wrote {len(landed)} vectors ({restores} restores)"
    if writer.adopted:
        report.reason += f"; {len(writer.adopted)} re-embedded by someone else during the run were adopted, not written"
    report.written_ids = list(landed)
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
