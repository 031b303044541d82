"""The click application behind ``nudge-sync`` (see ``cli.py`` for the entry point)."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

import connectors
from connectors import LabelledQuery, VectorStore

from . import _faults, _logs, _ops
from ._config import load_config
from ._engine import sync
from ._errors import ExitCode, NudgeSyncError, RefusedInput, exit_code_for
from ._options import SyncOptions
from ._progress import Progress

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  internal error (a bug: please report it)
  2  usage error (bad option, URI or config file)
  3  nothing to do, or a gate held the run back (nothing written)
  4  refused input (dimension, NaN, metric, options)
  5  the collection's lock is held by another run
  6  database error (unreachable, credentials, missing collection, write not verified);
     a run that had written puts it back first: the collection is as it was
  7  partially written: a run (or rollback) failed part-way and could not put back what
     it wrote; rerun, or `nudge-sync rollback --run ID`, completes it
"""


# -- output ----------------------------------------------------------------------------------------


class BarProgress(Progress):
    """click progress bars on stderr (plain phase lines when stderr is not a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None

    def begin(self, phase: str, total: int | None) -> None:
        if not self.enabled:
            return
        if total:
            self._bar = click.progressbar(length=total, label=f"{phase:<18}", file=sys.stderr, show_eta=True)
            self._bar.__enter__()
        else:
            click.echo(f"{phase} ...", err=True)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _emit(ctx: click.Context, data: Any, human: Callable[[Any], str]) -> None:
    if ctx.obj["json"]:
        _echo(json.dumps(data, indent=2, sort_keys=True, default=_json_default))
    else:
        _echo(human(data))


def _echo(text: str, err: bool = False) -> None:
    """Everything the command prints goes through here: no configured secret ever leaves."""
    click.echo(connectors.redact(text), err=err)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message on stderr (+ JSON on stdout) and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except (NudgeSyncError, connectors.ConnectorError) as exc:
            code = exit_code_for(exc)
            report = getattr(exc, "report", None)
            if ctx.obj["json"]:
                payload = report.to_dict() if report is not None else {"status": "error"}
                payload.update(error=str(exc), exit_code=int(code), error_type=type(exc).__name__)
                _echo(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))
            elif report is not None:
                _echo(_human_run(report.to_dict()))
            label = "nothing to do" if code == ExitCode.NOTHING_TO_DO else "error"
            _echo(f"{label}: {exc}", err=True)
            ctx.exit(int(code))

    return wrapper


# -- shared options --------------------------------------------------------------------------------


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--collection", help="Collection name (overrides the URI's ?collection=).")(fn)
    fn = click.option("--store", "store_uri", envvar="NUDGE_SYNC_STORE", required=True, metavar="URI",
                      help="Store URI, e.g. qdrant:///data/qdrant?collection=docs (env NUDGE_SYNC_STORE). "
                           "Secrets come from env vars (QDRANT_API_KEY, MILVUS_TOKEN, CHROMA_AUTH_TOKEN).")(fn)
    return fn


def state_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--state", "state_name", metavar="NAME",
                        help="Companion state collection (default <collection>_nudge_state).")(fn)


def log_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--log-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                      help="Read the labelled query log from a JSONL, Parquet or NPZ file instead.")(fn)
    fn = click.option("--log", "log_name", metavar="NAME",
                      help="Log collection in the same database (default <collection>_feedback).")(fn)
    return fn


@contextmanager
def opened(store_uri: str, collection: str | None) -> Iterator[VectorStore]:
    store = connectors.open_store(store_uri, collection=collection)
    try:
        yield store
    finally:
        store.close()


def _file_label(log_file: Path | None) -> str:
    return f"log file {str(log_file)!r}" if log_file is not None else ""


def _entries(store: VectorStore, log_name: str | None, log_file: Path | None) -> list[LabelledQuery] | None:
    if log_file is None:
        return None
    if log_name:
        raise RefusedInput("give either --log or --log-file, not both")
    return list(connectors.read_log_file(log_file))


# -- the group ---------------------------------------------------------------------------------------


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), envvar="NUDGE_SYNC_CONFIG",
              help="TOML config file (env NUDGE_SYNC_CONFIG): defaults per command, no secrets.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON report on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars on stderr.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also show the database client libraries' log lines on stderr (secrets redacted).")
@click.version_option(package_name="nudge-sync")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Improve retrieval in a live vector database from user feedback.

    nudge-sync reads the stored vectors and a labelled query log, runs NUDGE on the CPU, and
    writes back only the changed record vectors, in place. Start with `nudge-sync demo`.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(json=as_json, quiet=quiet or as_json and not sys.stderr.isatty())
    _logs.configure(verbose)
    try:
        _faults.check_environment()  # a test's fault rules must never be silently ignored
    except _faults.FaultSpecError as exc:
        raise click.UsageError(str(exc)) from None
    if config is not None:
        try:
            ctx.default_map = load_config(config, cli.commands)
        except RefusedInput as exc:
            raise click.UsageError(str(exc)) from None


def _progress(ctx: click.Context) -> Progress:
    return BarProgress(enabled=not ctx.obj["quiet"])


# -- run / plan --------------------------------------------------------------------------------------


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    d = SyncOptions()
    opts = [
        click.option("--method", type=click.Choice(["nudge-n", "nudge-m"]), default=d.method, show_default=True,
                     help="NUDGE-N keeps vectors unit-norm (any metric); NUDGE-M needs a dot-product collection."),
        click.option("--gamma", type=float, help="Fixed step size; default: chosen on validation."),
        click.option("--gamma-search", type=click.Choice(["fine", "parity"]), default=d.gamma_search,
                     show_default=True, help="fine: search gamma for --objective; parity: nudge-ft's grid/sweep."),
        click.option("--objective", default=d.objective, show_default=True,
                     help="Validation metric to maximise: ndcg@K, recall@K, mrr@K or hit@K."),
        click.option("--context", "context_mode", type=click.Choice(["auto", "exact", "search"]), default=d.context,
                     show_default=True, help="exact streams the collection; search uses the database's kNN."),
        click.option("--context-k", type=int, default=d.context_k, show_default=True),
        click.option("--val-fraction", type=float, default=d.val_fraction, show_default=True,
                     help="Share of queries (by id hash) used for validation when the log has no split."),
        click.option("--split-salt", default=d.split_salt, help="Salt of the train/validation hash split."),
        click.option("--min-val-queries", type=int, default=d.min_val_queries, show_default=True),
        click.option("--min-gain", type=float, default=d.min_gain, show_default=True,
                     help="Write only if the validation objective improves by more than this."),
        click.option("--max-changed-fraction", type=float, default=d.max_changed_fraction, show_default=True,
                     help="Refuse to rewrite more than this share of the collection in one run."),
        click.option("--min-new-feedback", type=int, default=d.min_new_feedback, show_default=True,
                     help="Run only when this many log entries arrived since the last run."),
        click.option("--tolerance", type=float, default=d.tolerance, show_default=True,
                     help="Stored vectors within this max-abs difference of the target are not rewritten."),
        click.option("--batch-size", type=click.IntRange(min=1), default=d.batch_size, show_default=True),
        click.option("--lock-ttl", type=float, default=d.lock_ttl, show_default=True, help="Seconds."),
        click.option("--break-lock", is_flag=True, help="Remove a stale lock left by a dead run first."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _run_command(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None,
                 log_file: Path | None, state_name: str | None, dry_run: bool, **kw: Any) -> None:
    options = SyncOptions(
        log=log_name, state=state_name, method=kw["method"], gamma=kw["gamma"], gamma_search=kw["gamma_search"],
        objective=kw["objective"], context=kw["context_mode"], context_k=kw["context_k"],
        val_fraction=kw["val_fraction"], split_salt=kw["split_salt"], min_val_queries=kw["min_val_queries"],
        min_gain=kw["min_gain"], max_changed_fraction=kw["max_changed_fraction"],
        min_new_feedback=kw["min_new_feedback"], tolerance=kw["tolerance"], batch_size=kw["batch_size"],
        lock_ttl=kw["lock_ttl"], break_lock=kw["break_lock"], dry_run=dry_run,
    )
    config = connectors.parse_uri(store_uri, collection=collection)
    with opened(store_uri, collection) as store:
        report = sync(store, options, entries=_entries(store, log_name, log_file),
                      progress=_progress(ctx), store_label=config.redacted(), log_source=_file_label(log_file))
    _emit(ctx, report.to_dict(), _human_run)


@cli.command("run", epilog=EXIT_CODES_HELP)
@store_options
@log_options
@state_option
@run_options
@click.option("--dry-run", is_flag=True, help="Compute and report; write nothing at all.")
@click.pass_context
@handle_errors
def run_cmd(ctx: click.Context, **kw: Any) -> None:
    """Run one sync: fit NUDGE on the feedback log, write the changed vectors in place."""
    _run_command(ctx, **kw)


@cli.command("plan", epilog=EXIT_CODES_HELP)
@store_options
@log_options
@state_option
@run_options
@click.pass_context
@handle_errors
def plan_cmd(ctx: click.Context, **kw: Any) -> None:
    """Same as `run --dry-run`: what a run would write, writing nothing."""
    _run_command(ctx, dry_run=True, **kw)


def _human_run(r: dict[str, Any]) -> str:
    c = r.get("counts", {})
    lines = [f"run {r['run_id']}: {r['status']}" + (f" — {r['reason']}" if r.get("reason") else "")]
    lines.append(f"  store       {r['store']}")
    if c:
        lines.append(
            f"  feedback    {c.get('queries', 0)} queries: {c.get('train_queries', 0)} train, "
            f"{c.get('val_queries', 0)} val, {c.get('test_queries', 0)} test; "
            f"{c.get('answers_missing', 0)} ids not in the collection"
            + (f" ({c.get('answers_unknown_ids', 0)} answers dropped, {c.get('queries_without_known_answers', 0)} "
               "queries left without answers)" if c.get("answers_missing") else "")
        )
    if r.get("gamma") is not None:
        lines.append(f"  gamma       {r['gamma']:.4g} ({r['method']}, objective {r['objective']}, "
                     f"context {r.get('context_mode')})")
    val = r.get("validation") or {}
    if val.get("before"):
        parts = [f"{m} {val['before'][m]:.4f} -> {val['after'][m]:.4f}" for m in val["before"]]
        lines.append("  validation  " + "; ".join(parts))
    if "to_write" in c:
        lines.append(f"  vectors     {c.get('moved', 0)} moved; {c.get('to_write', 0)} to write "
                     f"({c.get('to_restore', 0)} restores); {c.get('written', 0)} written and verified")
    if c.get("adopted_reembedded"):
        lines.append(f"  adopted     {c['adopted_reembedded']} records re-embedded by someone else (new originals)")
    if c.get("adopted_during_run"):
        lines.append(f"  adopted     {c['adopted_during_run']} records re-embedded by someone else during the run: "
                     "not written (new originals; the next run plans from them)")
    if r.get("took_over_lock"):
        held = r["took_over_lock"]
        lines.append(f"  lock        taken over from {held.get('owner')} (run {held.get('run_id')}), "
                     "a process of this host that no longer runs")
    if r.get("finished"):
        lines.append(f"  time        {r['finished'] - r['started']:.1f} s")
    return "\n".join(lines)


# -- rollback / status / history ---------------------------------------------------------------------


@cli.command("rollback", epilog=EXIT_CODES_HELP)
@store_options
@state_option
@click.option("--run", "run_id", metavar="ID", help="Only the records whose vector this run wrote.")
@click.option("--dry-run", is_flag=True, help="Count what would be restored; write nothing.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--break-lock", is_flag=True, help="Remove a lock left by a run that died, then roll back.")
@click.pass_context
@handle_errors
def rollback_cmd(ctx: click.Context, store_uri: str, collection: str | None, state_name: str | None,
                 run_id: str | None, dry_run: bool, batch_size: int, break_lock: bool) -> None:
    """Restore the original vector of every record nudge-sync changed."""
    with opened(store_uri, collection) as store:
        report = _ops.rollback(store, run_id=run_id, state_name=state_name, dry_run=dry_run,
                               batch_size=batch_size, break_lock=break_lock, progress=_progress(ctx))
    _emit(ctx, report, lambda r: (
        f"rollback {r['run_id']}: {r['status']} — {r.get('restored', 0)} restored "
        f"({r.get('bit_exact', 0)} bit-for-bit), {r['to_restore']} to restore, "
        f"{r.get('already_restored', 0)} already restored, "
        f"{r['skipped_reembedded'] + r.get('adopted_during_rollback', 0)} re-embedded by others left alone"))


@cli.command("status", epilog=EXIT_CODES_HELP)
@store_options
@state_option
@click.option("--log", "log_name", metavar="NAME", help="Log collection (default <collection>_feedback).")
@click.pass_context
@handle_errors
def status_cmd(ctx: click.Context, store_uri: str, collection: str | None, state_name: str | None,
               log_name: str | None) -> None:
    """What is nudged, the last run, the lock and the log watermark."""
    with opened(store_uri, collection) as store:
        report = _ops.status(store, state_name=state_name, log_name=log_name)
    _emit(ctx, report, _human_status)


def _human_status(s: dict[str, Any]) -> str:
    last = s["last_run"]
    lines = [
        f"collection  {s['collection']} ({s['backend']}, {s['count']} records, dim {s['dimension']}, {s['metric']})",
        f"nudged      {s['nudged']} records hold a nudged vector; {s['restored']} hold their original, "
        f"{s['adopted']} were re-embedded by someone else since ({s['pending']} writes pending, "
        f"{s['originals_kept']} originals kept)",
        f"runs        {s['runs']}" + (f"; last {last['run_id']} {last['status']}" if last else ""),
        f"watermark   {_fmt_time(s['watermark'])}",
        f"log         {s['log']} ({'present' if s['log_exists'] else 'absent'})",
        f"lock        {_lock_line(s)}",
    ]
    return "\n".join(lines)


def _lock_line(s: dict[str, Any]) -> str:
    if not s["lock"]:
        return "free"
    line = f"held by {s['lock'].get('owner')}"
    if s.get("lock_stale"):
        line += " (a process of this host that no longer runs: the next run or rollback takes it over)"
    return line


def _fmt_time(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


@cli.command("history", epilog=EXIT_CODES_HELP)
@store_options
@state_option
@click.option("--limit", type=int, help="Only the last N runs.")
@click.pass_context
@handle_errors
def history_cmd(ctx: click.Context, store_uri: str, collection: str | None, state_name: str | None,
                limit: int | None) -> None:
    """Runs so far, oldest first, with their metrics."""
    with opened(store_uri, collection) as store:
        runs = _ops.history(store, state_name=state_name, limit=limit)
    _emit(ctx, runs, _human_history)


def _human_history(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs yet"
    lines = []
    for r in runs:
        val = r.get("validation") or {}
        obj = r.get("objective")
        metric = (f"{obj} {val['before'][obj]:.4f} -> {val['after'][obj]:.4f}"
                  if obj and val.get("before", {}).get(obj) is not None else "")
        gamma = f"gamma {r['gamma']:.4g}" if r.get("gamma") is not None else ""
        lines.append(f"{r['run_id']}  {r['status']:<11} {_fmt_time(r.get('started'))}  "
                     f"written {r.get('written', r.get('restored', 0))}  {gamma}  {metric}".rstrip())
    return "\n".join(lines)


# -- feedback ------------------------------------------------------------------------------------------


@cli.group("feedback")
def feedback_group() -> None:
    """Append labelled queries to the log collection."""


@feedback_group.command("add", epilog=EXIT_CODES_HELP)
@store_options
@click.option("--log", "log_name", metavar="NAME", help="Log collection (default <collection>_feedback).")
@click.option("--query-id", required=True, help="Stable id of the query (re-adding it replaces the entry).")
@click.option("--vector", "vector_text", help="Query embedding as comma-separated numbers.")
@click.option("--vector-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Query embedding from a .npy file or a text file of numbers.")
@click.option("--relevant", "relevant", multiple=True, required=True,
              help="A relevant record id (repeat for several). Digits-only ids are read as ints "
                   "on int-id collections.")
@click.option("--grade", "grades", type=float, multiple=True, help="Graded relevance, one per --relevant.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Pin the split (default: by id hash).")
@click.option("--timestamp", type=float, help="Unix seconds (default: now).")
@click.pass_context
@handle_errors
def feedback_add(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None, query_id: str,
                 vector_text: str | None, vector_file: Path | None, relevant: tuple[str, ...],
                 grades: tuple[float, ...], split: str | None, timestamp: float | None) -> None:
    """Append one labelled query given on the command line."""
    vector = _read_vector(vector_text, vector_file)
    if grades and len(grades) != len(relevant):
        raise RefusedInput(f"{len(grades)} --grade values for {len(relevant)} --relevant ids")
    with opened(store_uri, collection) as store:
        id_type = store.describe().id_type
        ids = [int(r) if id_type == "int" and r.lstrip("-").isdigit() else r for r in relevant]
        entry = LabelledQuery(query_id, vector, ids, list(grades) or None,
                              time.time() if timestamp is None else timestamp, split)
        report = _ops.add_feedback(store, [entry], log_name=log_name)
    _emit(ctx, report, _human_feedback)


def _read_vector(text: str | None, path: Path | None) -> np.ndarray:
    if (text is None) == (path is None):
        raise RefusedInput("give the query embedding with exactly one of --vector or --vector-file")
    try:
        if path is not None:
            return (np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=None, ndmin=1,
                                                                           dtype=np.float64).ravel()).astype(np.float32)
        return np.array([float(x) for x in text.replace(",", " ").split()], dtype=np.float32)
    except ValueError as exc:
        raise RefusedInput(f"the query embedding is not a list of numbers: {exc}") from None


def _human_feedback(r: dict[str, Any]) -> str:
    out = f"appended {r['appended']} entries to {r['log']}"
    if r["unknown_id_count"]:
        out += (f"; warning: {r['unknown_id_count']} relevant ids are not in the collection "
                f"(they will be dropped and counted at the next run), e.g. {r['unknown_ids'][:5]}")
    return out


@feedback_group.command("import", epilog=EXIT_CODES_HELP)
@store_options
@click.option("--log", "log_name", metavar="NAME", help="Log collection (default <collection>_feedback).")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.pass_context
@handle_errors
def feedback_import(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None,
                    path: Path, batch_size: int) -> None:
    """Append labelled queries from a JSONL, Parquet or NPZ file (see README: query log files)."""
    entries = list(connectors.read_log_file(path))
    with opened(store_uri, collection) as store:
        report: dict[str, Any] = {"log": None, "appended": 0, "unknown_ids": [], "unknown_id_count": 0}
        source = _file_label(path)
        for start in range(0, len(entries), batch_size):
            part = _ops.add_feedback(store, entries[start : start + batch_size], log_name=log_name, source=source)
            report.update(log=part["log"], appended=report["appended"] + part["appended"],
                          unknown_ids=(report["unknown_ids"] + part["unknown_ids"])[:20],
                          unknown_id_count=report["unknown_id_count"] + part["unknown_id_count"])
    _emit(ctx, report, _human_feedback)


# -- eval ---------------------------------------------------------------------------------------------------


@cli.command("eval", epilog=EXIT_CODES_HELP)
@store_options
@log_options
@state_option
@click.option("--split", type=click.Choice(["auto", "test", "val", "train", "all"]), default="auto", show_default=True,
              help="auto: the log's pinned test queries if it has any, else the validation queries runs hold out.")
@click.option("--mode", type=click.Choice(["exact", "search"]), default="exact", show_default=True,
              help="exact streams the collection; search uses the database's kNN.")
@click.option("--metric", "metrics", multiple=True, default=_ops.EVAL_METRICS, show_default=True)
@click.option("--val-fraction", type=float, default=None,
              help=f"Default: the last run's (else {SyncOptions.val_fraction}), so 'val' is that run's validation set.")
@click.option("--split-salt", default=None, help="Default: the last run's (else empty).")
@click.pass_context
@handle_errors
def eval_cmd(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None,
             log_file: Path | None, state_name: str | None, split: str, mode: str, metrics: tuple[str, ...],
             val_fraction: float | None, split_salt: str | None) -> None:
    """Retrieval metrics of the collection now vs its original vectors, on the log's queries."""
    with opened(store_uri, collection) as store:
        entries, source = _entries(store, log_name, log_file), _file_label(log_file)
        if entries is None:
            name = log_name or f"{store.describe().collection}_feedback"
            entries, source = store.read_log(name), f"log {name!r}"
        report = _ops.evaluate(store, entries, log_source=source, split=split, metrics=metrics, mode=mode,
                               state_name=state_name, val_fraction=val_fraction, split_salt=split_salt,
                               progress=_progress(ctx))
    _emit(ctx, report, _human_eval)


def _human_eval(r: dict[str, Any]) -> str:
    lines = [f"{r['collection']}: {r['queries']} {r['split']} queries ({r['mode']}), "
             f"{r['nudged_records']} nudged records"]
    lines.append(f"  {'metric':<10} {'original':>9} {'current':>9} {'delta':>9}")
    for m in r["current"]:
        lines.append(f"  {m:<10} {r['original'][m]:>9.4f} {r['current'][m]:>9.4f} {r['delta'][m]:>+9.4f}")
    return "\n".join(lines)


# -- demo ------------------------------------------------------------------------------------------------------


@cli.command("demo", epilog=EXIT_CODES_HELP)
@click.option("--backend", type=click.Choice(["qdrant", "milvus", "chroma"]), default="qdrant", show_default=True,
              help="Embedded database to create (no server needed).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("nudge-sync-demo"), show_default=True, help="Where the demo database is created.")
@click.option("--records", type=int, default=10_000, show_default=True)
@click.option("--dim", type=int, default=128, show_default=True)
@click.option("--queries", type=int, default=2_000, show_default=True, help="Labelled queries in the log.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
@handle_errors
def demo_cmd(ctx: click.Context, backend: str, directory: Path, records: int, dim: int, queries: int,
             seed: int) -> None:
    """Create an embedded database with a synthetic corpus and feedback, sync it, show the gain."""
    from ._demo import run_demo

    report = run_demo(backend=backend, directory=directory, records=records, dim=dim, queries=queries,
                      seed=seed, progress=_progress(ctx), say=(lambda s: None) if ctx.obj["json"] else
                      (lambda s: _echo(s, err=True)))
    _emit(ctx, report, _human_demo)


def _human_demo(r: dict[str, Any]) -> str:
    ev = r["eval"]
    lines = [f"demo: {r['records']} records x {r['dim']} dims in {r['store']}",
             f"  run: {r['run']['status']}, gamma {r['run']['gamma']:.4g}, "
             f"{r['run']['counts'].get('written', 0)} vectors written in {r['run_seconds']:.1f} s",
             f"  held-out test queries ({ev['queries']}):",
             f"  {'metric':<10} {'before':>9} {'after':>9} {'gain':>9}"]
    for m in ev["current"]:
        lines.append(f"  {m:<10} {ev['original'][m]:>9.4f} {ev['current'][m]:>9.4f} {ev['delta'][m]:>+9.4f}")
    lines.append(f"  try: nudge-sync status --store '{r['store']}'")
    return "\n".join(lines)


def main() -> None:
    cli(obj={}, auto_envvar_prefix="NUDGE_SYNC")


if __name__ == "__main__":  # pragma: no cover
    main()
