"""Operations beside ``sync``: rollback, status, history, eval, and appending feedback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from connectors import CollectionInfo, ConnectionFailed, ConnectorError, InvalidEntry, LabelledQuery, RecordId, VectorStore

from ..core.metrics import evaluate as score_rankings
from .classify import NUDGED, RESTORED, VANISHED
from .state_open import open_state
from .emitter import Emitter
from .errors import NothingToDo, RefusedInput
from .events import Events, RunStarted
from .feedback import SPLITS, prepare_feedback, validate_entry
from .fit import REPORT_METRICS, answers_of, metric_k
from .names import default_log_name, log_name_for, new_run_id
from .options import SyncOptions, check_batch_size_option, check_fraction, check_metric
from .restore import rollback
from .state import SETTLED, SyncState, holder_is_gone
from .verdicts import load_state, reembedded
from .views import IdSpace, View, topk
from .wiring import Progress, command_events
from .writer import fetch_vectors

__all__ = ["EVAL_METRICS", "add_feedback", "evaluate", "history", "rollback", "status"]

#: The metrics ``eval`` reports by default: the ones a run reports for validation.
EVAL_METRICS = REPORT_METRICS


def status(store: VectorStore, *, state_name: str | None = None, log_name: str | None = None,
           skip_unverified: bool = False) -> dict[str, Any]:
    """What is nudged, the last run, the lock and the log watermark."""
    info = store.describe()
    state = open_state(store, info, state_name, log_name, skip_unverified=skip_unverified)
    entries, verdicts = load_state(store, state, info, {}, 1000)
    kinds = [v.kind for v in verdicts.values()]
    runs = state.runs()
    lock = state.lock()
    log = log_name_for(info.collection, log_name)
    last_written = next((r for r in reversed(runs) if r.get("status") in SETTLED), None)
    return {
        "collection": info.collection,
        "backend": info.backend,
        "dimension": info.dimension,
        "metric": info.metric,
        "count": info.count,
        "server_version": info.server_version,
        "state": state.name,
        # what the database holds now, record by record (nudge_sync.engine.classify), not the state's flags
        "nudged": kinds.count(NUDGED),
        "restored": kinds.count(RESTORED),
        "adopted": len(reembedded(verdicts, state)),
        "vanished": kinds.count(VANISHED),
        "pending": sum(o.pending for o in entries.values()),
        "unverified": len(state.unverified),  # entries failing their checksums (--skip-unverified)
        "originals_kept": len(entries),
        "runs": len(runs),
        "last_run": _run_summary(runs[-1]) if runs else None,
        "watermark": last_written.get("watermark") if last_written else None,
        "log": log,
        "log_exists": store.log_exists(log),
        "lock": lock,
        # held by a process of this host that no longer runs: the next run or rollback takes it over
        "lock_stale": bool(lock) and holder_is_gone(lock),
    }


def history(store: VectorStore, *, state_name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Every run, oldest first; ``limit``: only the last ``limit`` runs (a positive int)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise RefusedInput(f"history limit must be a positive int (the number of latest runs), got {limit!r}")
    info = store.describe()
    runs = [_run_summary(r) for r in open_state(store, info, state_name).runs()]
    return runs[-limit:] if limit is not None else runs


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
    events: Events | None = None,
    skip_unverified: bool = False,
) -> dict[str, Any]:
    """Retrieval metrics of the collection as it is ("current") and as it was before nudge-sync
    ("original": nudged records replaced by their originals), on the log's queries of ``split``
    ("train", "val", "test", "all", or "auto": "test" when the log pins test queries, else "val",
    the queries runs hold out). Splits follow the same rule as ``sync``: ``val_fraction`` and
    ``split_salt`` default to those of the collection's last run, so "val" is that run's
    validation set. The answers, their vectors, the metrics' depth and the top-k contexts are the
    run's own (``Feedback.keep_known``, ``fit.answers_of``, ``fit.metric_k``, ``views.topk``)."""
    if split not in (*SPLITS, "all", "auto"):
        raise RefusedInput(f"split {split!r}: expected one of {(*SPLITS, 'all', 'auto')}")
    if mode not in ("exact", "search"):
        raise RefusedInput(f"eval mode {mode!r}: expected exact or search")
    metrics = [check_metric(m, "metric") for m in metrics]
    if not metrics:
        raise RefusedInput("eval needs at least one metric, e.g. ndcg@10")
    if val_fraction is not None:
        check_fraction(val_fraction, "val_fraction")
    check_batch_size_option(batch_size)
    info = store.describe()
    state = open_state(store, info, state_name, skip_unverified=skip_unverified)
    settings = _split_settings(state, val_fraction, split_salt)
    feedback = prepare_feedback(entries, info.dimension, val_fraction=settings["val_fraction"],
                                salt=settings["salt"], source=log_source)
    feedback, _, missing = feedback.keep_known(lambda ids: fetch_vectors(store, ids, batch_size))
    if split == "auto":
        split = "test" if len(feedback.rows("test")) else "val"
    rows = feedback.rows(SPLITS if split == "all" else split)
    if len(rows) == 0:
        raise NothingToDo(f"the log has no {split!r} queries with known answers to evaluate")
    ids = IdSpace(feedback.referenced_ids())
    answers = answers_of(feedback, rows, ids)
    queries = feedback.vectors[rows]
    _, verdicts = load_state(store, state, info, {}, batch_size)
    changed = [v.entry for v in verdicts.values() if v.kind == NUDGED and v.entry is not None]
    as_was = View(exclude={o.record_id for o in changed}, extra_ids=[o.record_id for o in changed],
                  extra_vectors=np.stack([o.vector for o in changed]) if changed else None)
    emit = Emitter(command_events(events, progress), new_run_id())
    emit.emit(RunStarted(emit.run_id, "eval", info.backend, info.collection, {"split": split, "mode": mode}))
    with emit.step("score", info.count if mode == "exact" else 2 * len(queries)):
        now, was = topk(store, queries, max(metric_k(m) for m in metrics), [View(), as_was], ids, info.metric,
                        mode=mode, batch_size=batch_size, on_batch=emit.advance)
    current = score_rankings(now.ids, answers, list(metrics))
    original = score_rankings(was.ids, answers, list(metrics))
    report = {
        "collection": info.collection, "split": split, "split_settings": settings, "queries": int(len(rows)),
        "mode": mode,
        "answers_missing": len(missing), "nudged_records": len(changed),
        "current": {m: round(float(v), 6) for m, v in current.items()},
        "original": {m: round(float(v), 6) for m, v in original.items()},
        "delta": {m: round(float(current[m] - original[m]), 6) for m in current},
    }
    emit.finished("eval", "evaluated", report)
    return report


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
                 check_ids: bool = True, source: str = "", batch_size: int | None = None,
                 places: Sequence[str] | None = None) -> dict[str, Any]:
    """Validate entries against the collection and append them to its log collection, all or nothing:
    every entry is checked (the entry rule, the dimension, the backend's limits) before the first write,
    and a write that fails part-way leaves the log as it was (see ``VectorStore.append_log``).
    ``places`` names where each entry came from (``"clicks.jsonl line 17"``) for error messages."""
    check_log_collection(store, log_name)
    log, written, unknown = append_feedback(store, entries, log_name=log_name, check_ids=check_ids, source=source,
                                            batch_size=batch_size, places=places)
    return {"log": log, **appended_counts(written), "unknown_ids": unknown[:20], "unknown_id_count": len(unknown)}


def appended_counts(written: int) -> dict[str, int]:
    """``appended`` (new query ids in the log) and ``replaced`` (entries the log held for the same
    query id, replaced whole) of what ``append_log`` wrote."""
    replaced = int(getattr(written, "replaced", 0))
    return {"appended": int(written) - replaced, "replaced": replaced}


def check_log_collection(store: VectorStore, log_name: str | None) -> None:
    """Refuse to append into an existing collection that is not a query log (RefusedInput, exit 4):
    nudge-sync never writes into a collection it did not create. An existing log must read as one
    (its first entry parses as a labelled query); an empty one is accepted only under the default
    log name (an import killed between creating the log and its first batch)."""
    info = store.describe()
    log = log_name_for(info.collection, log_name)
    if not store.log_exists(log):
        return
    try:
        first = next(iter(store.read_log(log, batch_size=1)), None)
    except ConnectionFailed:
        raise
    except ConnectorError as exc:
        raise RefusedInput(f"collection {log!r} is not a nudge-sync query log ({exc}); nudge-sync never writes into "
                           f"a collection it did not create: pass --log with another name (the default for "
                           f"{info.collection!r} is {default_log_name(info.collection)!r})") from None
    if first is None and log != default_log_name(info.collection):
        raise RefusedInput(f"collection {log!r} exists, is empty and is not the default query log of "
                           f"{info.collection!r}: nudge-sync never writes into a collection it did not create "
                           f"(drop it, or pass --log with another name)")


def append_feedback(store: VectorStore, entries: Sequence[LabelledQuery], *, log_name: str | None = None,
                    check_ids: bool = True, source: str = "", batch_size: int | None = None,
                    places: Sequence[str] | None = None, info: CollectionInfo | None = None,
                    known: set[RecordId] | None = None) -> tuple[str, int, list[RecordId]]:
    """:func:`add_feedback`'s work: ``(log name, entries written, every relevant id not in the collection)``.
    A caller appending many batches passes the collection's ``info`` (described once) and a ``known``
    set of ids already found in the collection, which it bounds: only the others are looked up, and
    those found are added to it."""
    info = store.describe() if info is None else info
    log = log_name_for(info.collection, log_name)

    def where(n: int) -> str:
        return places[n] if places is not None else source or "feedback"

    checked = [validate_entry(e, info.dimension, source=where(n)) for n, e in enumerate(entries)]
    unknown: list[RecordId] = []
    if check_ids:
        asked = [i for i in dict.fromkeys(i for e in checked for i in e.relevant_ids) if known is None or i not in known]
        found, unknown = fetch_vectors(store, asked, 1000)
        if known is not None:
            known.update(found)
    try:
        written = store.append_log(log, checked, batch_size=batch_size) if checked else 0
    except InvalidEntry as exc:  # a limit of the log's database: name the line the entry came from
        if places is None or exc.index is None:
            raise
        raise RefusedInput(f"{places[exc.index]}: {exc}") from None
    return log, written, unknown
