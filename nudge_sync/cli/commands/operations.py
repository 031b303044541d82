"""`nudge-sync rollback`, `status`, `history` and `eval`: the engine's operations besides a run."""

from __future__ import annotations

from pathlib import Path

import click

import connectors

from ...engine import ops
from ...engine.names import log_name_for
from ...engine.options import MAX_K, SyncOptions
from ..failures import EXIT_CODES_HELP, handle_errors
from ..observing import Observers, metrics_options, report_option, write_report
from ..option_types import CollectionName, FiniteFloat, MetricSpec
from ..params import (MAX_BATCH, entries_from_file, file_label, log_options, opened, skip_unverified_option,
                      state_option, store_options)
from ..render import emit, human_eval, human_history, human_status, progress_bar


# -- rollback / status / history ---------------------------------------------------------------------


@click.command("rollback", epilog=EXIT_CODES_HELP)
@store_options
@state_option
@click.option("--run", "run_id", metavar="ID", help="Only the records whose vector this run wrote.")
@click.option("--dry-run", is_flag=True, help="Count what would be restored; write nothing.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=1000, show_default=True)
@click.option("--break-lock", is_flag=True, help="Remove a lock left by a run that died, then roll back.")
@skip_unverified_option
@metrics_options
@click.pass_context
@handle_errors
def rollback_cmd(ctx: click.Context, store_uri: str, collection: str | None, state_name: str | None,
                 run_id: str | None, dry_run: bool, batch_size: int, break_lock: bool, skip_unverified: bool,
                 metrics_file: Path | None = None, pushgateway: str | None = None) -> None:
    """Restore the original vector of every record nudge-sync changed."""
    observers = Observers(connectors.parse_uri(store_uri, collection=collection).collection, metrics_file, pushgateway)
    try:
        with opened(store_uri, collection) as store:
            report = ops.rollback(store, run_id=run_id, state_name=state_name, dry_run=dry_run,
                                   batch_size=batch_size, break_lock=break_lock, progress=progress_bar(ctx),
                                   skip_unverified=skip_unverified, events=observers.events)
    finally:
        observers.close()
    emit(ctx, report, lambda r: (
        f"rollback {r['run_id']}: {r['status']} — {r.get('restored', 0)} restored "
        f"({r.get('bit_exact', 0)} bit-for-bit), {r['to_restore']} to restore, "
        f"{r.get('already_restored', 0)} already restored, "
        f"{r['skipped_reembedded'] + r.get('adopted_during_rollback', 0)} re-embedded by others left alone"))


@click.command("status", epilog=EXIT_CODES_HELP)
@store_options
@state_option
@click.option("--log", "log_name", metavar="NAME", type=CollectionName(), help="Log collection (default <collection>_feedback).")
@skip_unverified_option
@click.pass_context
@handle_errors
def status_cmd(ctx: click.Context, store_uri: str, collection: str | None, state_name: str | None,
               log_name: str | None, skip_unverified: bool) -> None:
    """What is nudged, the last run, the lock and the log watermark."""
    with opened(store_uri, collection) as store:
        report = ops.status(store, state_name=state_name, log_name=log_name, skip_unverified=skip_unverified)
    emit(ctx, report, human_status)


@click.command("history", epilog=EXIT_CODES_HELP)
@store_options
@state_option
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N runs (N >= 1).")
@report_option
@click.pass_context
@handle_errors
def history_cmd(ctx: click.Context, store_uri: str, collection: str | None, state_name: str | None,
                limit: int | None, report_path: Path | None) -> None:
    """Runs so far, oldest first, with their metrics."""
    with opened(store_uri, collection) as store:
        runs = ops.history(store, state_name=state_name, limit=limit)
        name = store.describe().collection if report_path is not None else ""
    write_report(report_path, "history_page", runs, name)
    emit(ctx, runs, human_history)


# -- eval ---------------------------------------------------------------------------------------------------


@click.command("eval", epilog=EXIT_CODES_HELP)
@store_options
@log_options
@state_option
@click.option("--split", type=click.Choice(["auto", "test", "val", "train", "all"]), default="auto", show_default=True,
              help="auto: the log's pinned test queries if it has any, else the validation queries runs hold out.")
@click.option("--mode", type=click.Choice(["exact", "search"]), default="exact", show_default=True,
              help="exact streams the collection; search uses the database's kNN.")
@click.option("--metric", "metrics", type=MetricSpec(), multiple=True, default=ops.EVAL_METRICS, show_default=True,
              help=f"ndcg@K, recall@K, mrr@K or hit@K (K: 1-{MAX_K}); repeat for several.")
@click.option("--val-fraction", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=None,
              help=f"Default: the last run's (else {SyncOptions.val_fraction}), so 'val' is that run's validation set.")
@click.option("--split-salt", default=None, help="Default: the last run's (else empty).")
@skip_unverified_option
@report_option
@click.pass_context
@handle_errors
def eval_cmd(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None,
             log_file: Path | None, state_name: str | None, split: str, mode: str, metrics: tuple[str, ...],
             val_fraction: float | None, split_salt: str | None, skip_unverified: bool,
             report_path: Path | None = None) -> None:
    """Retrieval metrics of the collection now vs its original vectors, on the log's queries."""
    with opened(store_uri, collection) as store:
        entries, source = entries_from_file(store, log_name, log_file), file_label(log_file)
        if entries is None:
            name = log_name_for(store.describe().collection, log_name)
            entries, source = store.read_log(name), f"log {name!r}"
        report = ops.evaluate(store, entries, log_source=source, split=split, metrics=metrics, mode=mode,
                               state_name=state_name, val_fraction=val_fraction, split_salt=split_salt,
                               progress=progress_bar(ctx), skip_unverified=skip_unverified)
    write_report(report_path, "eval_page", report)
    emit(ctx, report, human_eval)
