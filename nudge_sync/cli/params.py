"""Options shared by several commands (store, state, log, the run's options) and opening the store
they name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

import connectors
from connectors import LabelledQuery, VectorStore

from ..engine.errors import RefusedInput
from ..engine.options import MAX_BATCH, MAX_K, SyncOptions
from .option_types import CollectionName, MetricSpec, RunOption

__all__ = ["MAX_BATCH", "entries_from_file", "file_label", "log_options", "opened", "run_options", "skip_unverified_option", "state_option",
           "store_options"]


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--collection", type=CollectionName(),
                      help="Collection name (overrides the URI's ?collection=).")(fn)
    fn = click.option("--store", "store_uri", envvar="NUDGE_SYNC_STORE", required=True, metavar="URI",
                      help="Store URI, e.g. qdrant:///data/qdrant?collection=docs (env NUDGE_SYNC_STORE). "
                           "Secrets come from env vars (QDRANT_API_KEY, MILVUS_TOKEN, CHROMA_AUTH_TOKEN).")(fn)
    return fn


def state_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--state", "state_name", metavar="NAME", type=CollectionName(),
                        help="Companion state collection (default <collection>_nudge_state).")(fn)


def skip_unverified_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--skip-unverified", is_flag=True,
                        help="Go on past state entries whose checksums do not verify (edited or damaged): "
                             "leave those records as the database holds them now (their stored vector "
                             "becomes their original; reported as skipped_unverified), instead of refusing "
                             "(exit 4).")(fn)


def log_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--log-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                      help="Read the labelled query log from a JSONL, Parquet or NPZ file instead.")(fn)
    fn = click.option("--log", "log_name", metavar="NAME", type=CollectionName(),
                      help="Log collection in the same database (default <collection>_feedback).")(fn)
    return fn


@contextmanager
def opened(store_uri: str, collection: str | None) -> Iterator[VectorStore]:
    store = connectors.open_store(store_uri, collection=collection)
    try:
        yield store
    finally:
        store.close()


def file_label(log_file: Path | None) -> str:
    return f"log file {str(log_file)!r}" if log_file is not None else ""


def entries_from_file(store: VectorStore, log_name: str | None, log_file: Path | None) -> list[LabelledQuery] | None:
    if log_file is None:
        return None
    if log_name:
        raise RefusedInput("give either --log or --log-file, not both")
    return list(connectors.read_log_file(log_file))


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    d = SyncOptions()
    opts = [
        click.option("--method", type=click.Choice(["nudge-n", "nudge-m"]), default=d.method, show_default=True,
                     help="NUDGE-N keeps vectors unit-norm (any metric); NUDGE-M needs a dot-product collection."),
        click.option("--gamma", type=RunOption("gamma", float, method="nudge-m"),
                     help="Fixed step size (NUDGE-N: 0-4); default: chosen on validation."),
        click.option("--gamma-search", type=click.Choice(["fine", "parity"]), default=d.gamma_search,
                     show_default=True, help="fine: search gamma for --objective; parity: nudge-ft's grid/sweep."),
        click.option("--objective", type=MetricSpec(), default=d.objective, show_default=True,
                     help=f"Validation metric to maximise: ndcg@K, recall@K, mrr@K or hit@K (K: 1-{MAX_K})."),
        click.option("--context", "context_mode", type=click.Choice(["auto", "exact", "search"]), default=d.context,
                     show_default=True, help="exact streams the collection; search uses the database's kNN."),
        click.option("--context-k", type=RunOption("context_k", int), default=d.context_k, show_default=True,
                     help="Depth of each validation query's context (at most the collection's size)."),
        click.option("--val-fraction", type=RunOption("val_fraction", float), default=d.val_fraction,
                     show_default=True,
                     help="Share of queries (by id hash) used for validation when the log has no split."),
        click.option("--split-salt", default=d.split_salt, help="Salt of the train/validation hash split."),
        click.option("--min-val-queries", type=RunOption("min_val_queries", int), default=d.min_val_queries, show_default=True),
        click.option("--min-gain", type=RunOption("min_gain", float), default=d.min_gain, show_default=True,
                     help="Write only if the validation objective improves by more than this (-1 to 1)."),
        click.option("--max-changed-fraction", type=RunOption("max_changed_fraction", float), default=d.max_changed_fraction,
                     show_default=True, help="Refuse to rewrite more than this share of the collection in one run."),
        click.option("--min-new-feedback", type=RunOption("min_new_feedback", int), default=d.min_new_feedback, show_default=True,
                     help="Run only when this many log entries arrived since the last run."),
        click.option("--tolerance", type=RunOption("tolerance", float), default=d.tolerance, show_default=True,
                     help="Stored vectors within this max-abs difference of the target are not rewritten."),
        click.option("--batch-size", type=RunOption("batch_size", int), default=d.batch_size, show_default=True),
        click.option("--lock-ttl", type=RunOption("lock_ttl", float), default=d.lock_ttl,
                     show_default=True, help="Seconds (at most 30 days)."),
        click.option("--break-lock", is_flag=True, help="Remove a stale lock left by a dead run first."),
        click.option("--force", is_flag=True,
                     help="Run in full even when nothing is new since the last run (otherwise exit 3 at once)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn
