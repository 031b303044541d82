"""Operations beside ``sync``: rollback, status, history, eval, and appending feedback."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from connectors import LabelledQuery, RecordId, VectorStore, check_batch_size

from ._answers import Answers
from ._engine import VERIFY_TOLERANCE, default_log_name, default_state_name, fetch_vectors, new_run_id
from . import _faults
from ._errors import DatabaseError, NothingToDo, RefusedInput
from ._feedback import SPLITS, prepare_feedback, validate_entry
from ._metrics import evaluate as score_rankings
from ._options import SyncOptions
from ._progress import Progress
from ._state import Original, SyncState, fingerprint
from ._views import IdSpace, View, exact_topk, search_topk

EVAL_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@1")
#: Extra write rounds a rollback may spend to land bit-exactly on a re-normalising database:
#: "shift" corrects by the observed error, a number scales the original by that many 2^-24 steps.
COMPENSATION: tuple[str | int, ...] = ("shift", "shift", 1, -1, 2, -2)


def _state(store: VectorStore, collection: str, name: str | None) -> SyncState:
    return SyncState(store.state(name or default_state_name(collection)))


def rollback(
    store: VectorStore,
    *,
    run_id: str | None = None,
    state_name: str | None = None,
    dry_run: bool = False,
    batch_size: int = 1000,
    lock_ttl: float = 3600.0,
    break_lock: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write back the original vector of every record nudge-sync changed (or only those whose
    current vector was written by ``run_id``). Records re-embedded by someone else since our write
    are left alone (their new vector is theirs). ``break_lock`` first removes a lock left by a run
    that died (the usual reason to roll back). Returns a report dict."""
    progress = progress or Progress()
    _check_batch_size(batch_size)
    info = store.describe()
    state = _state(store, info.collection, state_name)
    if not state.exists():
        raise NothingToDo(f"collection {info.collection!r} has no nudge-sync state: nothing to roll back")
    if run_id is not None and run_id not in {r.get("run_id") for r in state.runs()}:
        raise RefusedInput(f"run {run_id!r} is not in the history of {info.collection!r} (see `nudge-sync history`)")
    broken = state.break_lock() if break_lock and not dry_run else None
    token = None if dry_run else state.acquire(lock_ttl)
    if token is not None:
        _faults.probe("lock.acquired")
    try:
        originals = [o for o in state.originals()
                     if (o.nudged or o.fp is None) and (run_id is None or o.run == run_id)]
        current, vanished = fetch_vectors(store, [o.record_id for o in originals], batch_size)
        _faults.probe("rollback.read")
        todo: list[Original] = []
        skipped = 0
        for o in originals:
            if o.record_id not in current:
                continue
            now = current[o.record_id]
            if o.fp is not None and fingerprint(now) != o.fp:
                skipped += 1  # re-embedded by someone else since our write: not ours to undo
            elif now.tobytes() != np.asarray(o.vector, dtype=np.float32).tobytes():
                todo.append(o)
        rid = new_run_id()
        report: dict[str, Any] = {
            "run_id": rid, "status": "dry-run" if dry_run else "rolled-back", "collection": info.collection,
            "of_run": run_id, "started": time.time(), "to_restore": len(todo),
            "skipped_reembedded": skipped, "vanished": len(vanished),
        }
        if broken:
            report["broke_lock_of"] = broken.get("run_id")
        if dry_run or not todo:
            report.update(restored=0, bit_exact=0, finished=time.time())
            if not dry_run:
                report["status"] = "unchanged"
            return report
        ids = [o.record_id for o in todo]
        vectors = np.stack([o.vector for o in todo]).astype(np.float32)
        with progress.phase("restoring", len(ids)) as p:
            for start in range(0, len(ids), batch_size):
                # _compensate reads everything back, so the connector need not
                _faults.probe("rollback.before_write", ids[start : start + batch_size])
                store.update_vectors(ids[start : start + batch_size], vectors[start : start + batch_size], verify=False)
                _faults.probe("rollback.write", ids[start : start + batch_size])
                p.advance(min(batch_size, len(ids) - start))
        back = _compensate(store, ids, vectors, batch_size)
        exact = sum(back[i].tobytes() == v.tobytes() for i, v in zip(ids, vectors))
        worst = max(float(np.max(np.abs(back[i].astype(np.float64) - v))) for i, v in zip(ids, vectors))
        if worst > VERIFY_TOLERANCE:
            raise DatabaseError(f"rollback read-back differs from the originals by up to {worst:.3g}")
        state.put_originals((Original(i, o.vector, fingerprint(back[i]), False, rid) for i, o in zip(ids, todo)),
                            vectors_stored=True)
        _faults.probe("rollback.record")
        # A database that re-normalises what it stores (e.g. Qdrant cosine collections) can move the
        # last bit of a few components; the report says how many vectors came back bit-for-bit.
        report.update(restored=len(ids), bit_exact=int(exact), max_abs_diff=worst, finished=time.time())
        state.put_run(rid, report)
        _faults.probe("rollback.record")
        return report
    finally:
        if token is not None:
            state.release(token)


def _compensate(store: VectorStore, ids: list[RecordId], vectors: np.ndarray, batch_size: int) -> dict[RecordId, np.ndarray]:
    """Read back what was restored and, where the database re-normalised a vector on write (Qdrant
    and Chroma cosine collections do, in float32) and moved the last bit of some component, try
    other pre-images of the original: ``sent + (original - stored)``, then the original scaled by
    a few ulps. Each round rewrites only the vectors still off. Some stored vectors have no float32
    pre-image under the database's normalisation; those end at the closest candidate (1 ulp)."""
    want = {i: v for i, v in zip(ids, vectors)}
    sent = dict(want)
    back = _read_back(store, ids, batch_size)
    best = {i: (_ulps_off(back[i], want[i]), want[i]) for i in ids}
    for attempt in COMPENSATION:
        off = [i for i in ids if best[i][0] > 0]
        if not off:
            break
        if attempt == "shift":
            sent = {i: (sent[i] + (want[i] - back[i])).astype(np.float32) for i in off}
        else:
            sent = {i: (want[i].astype(np.float64) * (1.0 + attempt * 2.0**-24)).astype(np.float32) for i in off}
        _write(store, sent, batch_size)
        back.update(_read_back(store, off, batch_size))
        for i in off:
            diff = _ulps_off(back[i], want[i])
            if diff < best[i][0]:
                best[i] = (diff, sent[i])
    # leave each vector at the best candidate found (the last one written may be worse)
    worse = {i: best[i][1] for i in ids if _ulps_off(back[i], want[i]) > best[i][0]}
    if worse:
        _write(store, worse, batch_size)
        back.update(_read_back(store, list(worse), batch_size))
    return back


def _ulps_off(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want)))


def _read_back(store: VectorStore, ids: list[RecordId], batch_size: int) -> dict[RecordId, np.ndarray]:
    back, missing = fetch_vectors(store, ids, batch_size)
    if missing:
        raise DatabaseError(f"{len(missing)} records vanished during rollback, e.g. {missing[:5]}")
    return back


def _write(store: VectorStore, vectors: dict[RecordId, np.ndarray], batch_size: int) -> None:
    batch = list(vectors)
    for start in range(0, len(batch), batch_size):
        chunk = batch[start : start + batch_size]
        store.update_vectors(chunk, np.stack([vectors[i] for i in chunk]), verify=False)  # read back by the caller


def status(store: VectorStore, *, state_name: str | None = None, log_name: str | None = None) -> dict[str, Any]:
    """What is nudged, the last run, the lock and the log watermark."""
    info = store.describe()
    state = _state(store, info.collection, state_name)
    originals = list(state.originals())
    runs = state.runs()
    log = log_name or default_log_name(info.collection)
    last_written = next((r for r in reversed(runs) if r.get("status") in ("written", "unchanged")), None)
    return {
        "collection": info.collection,
        "backend": info.backend,
        "dimension": info.dimension,
        "metric": info.metric,
        "count": info.count,
        "server_version": info.server_version,
        "state": state.collection.name,
        "nudged": sum(o.nudged for o in originals),
        "pending": sum(o.fp is None for o in originals),
        "originals_kept": len(originals),
        "runs": len(runs),
        "last_run": _run_summary(runs[-1]) if runs else None,
        "watermark": last_written.get("watermark") if last_written else None,
        "log": log,
        "log_exists": store.log_exists(log),
        "lock": state.lock(),
    }


def history(store: VectorStore, *, state_name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    info = store.describe()
    runs = [_run_summary(r) for r in _state(store, info.collection, state_name).runs()]
    return runs[-limit:] if limit else runs


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "status", "method", "gamma", "objective", "reason", "watermark", "started", "finished",
            "validation", "of_run", "restored", "context_mode")
    out = {k: run[k] for k in keys if k in run}
    counts = run.get("counts") or {}
    for k in ("written", "moved", "train_queries", "val_queries", "to_restore"):
        if k in counts:
            out[k] = counts[k]
    return out


def evaluate(
    store: VectorStore,
    entries: Iterable[LabelledQuery],
    *,
    split: str = "auto",
    metrics: Sequence[str] = EVAL_METRICS,
    mode: str = "exact",
    state_name: str | None = None,
    val_fraction: float | None = None,
    split_salt: str | None = None,
    batch_size: int = 2000,
    progress: Progress | None = None,
    log_source: str = "log",
) -> dict[str, Any]:
    """Retrieval metrics of the collection as it is ("current") and as it was before nudge-sync
    ("original": nudged records replaced by their originals), on the log's queries of ``split``
    ("train", "val", "test", "all", or "auto": "test" when the log pins test queries, else "val",
    the queries runs hold out). Splits follow the same rule as ``sync``: ``val_fraction`` and
    ``split_salt`` default to those of the collection's last run, so "val" is that run's
    validation set."""
    progress = progress or Progress()
    if split not in (*SPLITS, "all", "auto"):
        raise RefusedInput(f"split {split!r}: expected one of {(*SPLITS, 'all', 'auto')}")
    if mode not in ("exact", "search"):
        raise RefusedInput(f"eval mode {mode!r}: expected exact or search")
    _check_batch_size(batch_size)
    info = store.describe()
    state = _state(store, info.collection, state_name)
    settings = _split_settings(state, val_fraction, split_salt)
    feedback = prepare_feedback(entries, info.dimension, val_fraction=settings["val_fraction"],
                                salt=settings["salt"], source=log_source)
    _, missing = fetch_vectors(store, feedback.referenced_ids(), batch_size)
    feedback = feedback.drop_ids(missing)
    if split == "auto":
        split = "test" if len(feedback.rows("test")) else "val"
    rows = feedback.rows(SPLITS if split == "all" else split)
    if len(rows) == 0:
        raise NothingToDo(f"the log has no {split!r} queries with known answers to evaluate")
    ids = IdSpace(feedback.referenced_ids())
    answers = Answers.from_lists([ids.add(feedback.answers[r]).tolist() for r in rows],
                                 grades=[feedback.grades[r] for r in rows])
    queries = feedback.vectors[rows]
    k = max(int(m.partition("@")[2] or 10) for m in metrics)
    changed = [o for o in state.originals() if o.nudged or o.fp is None]
    as_was = View(exclude={o.record_id for o in changed}, extra_ids=[o.record_id for o in changed],
                  extra_vectors=np.stack([o.vector for o in changed]) if changed else None)
    if mode == "exact":
        with progress.phase("reading vectors", info.count) as p:
            now, was = exact_topk(store, queries, k, [View(), as_was], ids, info.metric,
                                  batch_size=batch_size, on_batch=p.advance)
    else:
        with progress.phase("searching", 2 * len(queries)) as p:
            now = search_topk(store, queries, k, View(), ids, info.metric, on_batch=p.advance)
            was = search_topk(store, queries, k, as_was, ids, info.metric, on_batch=p.advance)
    current = score_rankings(now.ids, answers, list(metrics))
    original = score_rankings(was.ids, answers, list(metrics))
    return {
        "collection": info.collection, "split": split, "split_settings": settings, "queries": int(len(rows)),
        "mode": mode,
        "answers_missing": len(missing), "nudged_records": sum(o.nudged for o in changed),
        "current": {m: round(float(v), 6) for m, v in current.items()},
        "original": {m: round(float(v), 6) for m, v in original.items()},
        "delta": {m: round(float(current[m] - original[m]), 6) for m in current},
    }


def _check_batch_size(batch_size: int) -> None:
    """The connectors' batch-size rule, refused as the sync library's RefusedInput (exit code 4)."""
    try:
        check_batch_size(batch_size)
    except ValueError as exc:
        raise RefusedInput(str(exc)) from None


def _split_settings(state: SyncState, val_fraction: float | None, salt: str | None) -> dict[str, Any]:
    """The train/validation split to evaluate with: what the caller gave, else what the last run
    that recorded one used, else the sync defaults."""
    last = next((r["split"] for r in reversed(state.runs()) if r.get("split")), None)
    source = last or {"val_fraction": SyncOptions.val_fraction, "salt": SyncOptions.split_salt}
    out = {"val_fraction": source["val_fraction"] if val_fraction is None else val_fraction,
           "salt": source["salt"] if salt is None else salt}
    out["from"] = "arguments" if val_fraction is not None and salt is not None else "last run" if last else "defaults"
    return out


def add_feedback(store: VectorStore, entries: Sequence[LabelledQuery], *, log_name: str | None = None,
                 check_ids: bool = True, source: str = "") -> dict[str, Any]:
    """Validate entries against the collection and append them to its log collection."""
    info = store.describe()
    log = log_name or default_log_name(info.collection)
    for e in entries:
        validate_entry(e, info.dimension, source=source or "feedback")
    unknown: list[RecordId] = []
    if check_ids:
        _, unknown = fetch_vectors(store, list(dict.fromkeys(i for e in entries for i in e.relevant_ids)), 1000)
    written = store.append_log(log, list(entries)) if entries else 0
    return {"log": log, "appended": written, "unknown_ids": unknown[:20], "unknown_id_count": len(unknown)}
