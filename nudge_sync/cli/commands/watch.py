"""`nudge-sync watch`: the watcher loop (``nudge_sync.watch.loop``) as a long-running command, with
signals, logs, metrics (file, Pushgateway, HTTP) and the report wired to it."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from dataclasses import fields
import threading
from pathlib import Path
from typing import Any

import click

import connectors

from ...engine.options import SyncOptions
from ...watch.loop import WatchPlan, watch
from ...watch.schedule import Schedule, parse_every
from .. import logs
from ..failures import EXIT_CODES_HELP, handle_errors
from ..observing import Observers, metrics_options, report_option
from ..option_types import CollectionName
from ..params import run_options, skip_unverified_option, state_option, store_options
from .run import gamma_margin_option


def _every(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    try:
        return None if value is None else parse_every(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _cron(ctx: click.Context, param: click.Parameter, value: str | None) -> Schedule | None:
    try:
        return None if value is None else Schedule(cron=value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


#: run options whose click parameter is named differently from their SyncOptions field
_RENAMED = {"context_mode": "context"}


def _options(kw: dict[str, Any], log_name: str | None, state_name: str | None) -> SyncOptions:
    """The run options of every cycle, from the same flags as `run` (every SyncOptions field they set)."""
    fields_ = {f.name for f in fields(SyncOptions)}
    given = {_RENAMED.get(k, k): v for k, v in kw.items()}
    return SyncOptions(log=log_name, state=state_name, **{k: v for k, v in given.items() if k in fields_}).validate()


@click.command("watch", epilog=EXIT_CODES_HELP)
@store_options
@click.option("--log", "log_name", metavar="NAME", type=CollectionName(),
              help="Log collection (default <collection>_feedback).")
@state_option
@run_options
@skip_unverified_option
@gamma_margin_option
@click.option("--every", callback=_every, metavar="INTERVAL", help="Run every INTERVAL: 6h, 30m, 1h30m, 90s, 1d.")
@click.option("--cron", "cron", callback=_cron, metavar="EXPR",
              help='Run on a cron schedule, five fields, UTC (e.g. "0 3 * * *").')
@click.option("--poll", type=click.FloatRange(0.1, 86_400), default=60.0, show_default=True,
              help="Seconds between feedback counts (with --min-new-feedback).")
@click.option("--retry-budget", type=click.FloatRange(0, 86_400), default=300.0, show_default=True,
              help="Seconds to retry a cycle whose database is down or locked before skipping it.")
@click.option("--max-runs", type=click.IntRange(min=1), help="Exit (0) after this many runs.")
@click.option("--metrics-port", type=click.IntRange(1, 65_535), metavar="N",
              help="Serve Prometheus metrics on http://ADDR:N/metrics.")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address to serve --metrics-port on (0.0.0.0: every interface).")
@metrics_options
@report_option
@click.pass_context
@handle_errors
def watch_cmd(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None,
              state_name: str | None, every: float | None, cron: Schedule | None, poll: float, retry_budget: float,
              max_runs: int | None, metrics_port: int | None, metrics_addr: str, metrics_file: Path | None,
              pushgateway: str | None, report_path: Path | None, **kw: Any) -> None:
    """Run a sync on a schedule and/or when enough new feedback arrived, until stopped.

    The lock is held only while a run is active, and the store is closed between cycles. SIGTERM
    or SIGINT between runs exits 0 at once; inside a run, the run stops at its next batch boundary
    and puts back what it wrote (exit 8; 7 if it could not).
    """
    if every is not None and cron is not None:
        raise click.UsageError("give either --every or --cron, not both")
    schedule = Schedule(every=every) if every is not None else cron
    if schedule is None and not kw["min_new_feedback"]:
        raise click.UsageError("watch needs --every, --cron or --min-new-feedback N (N >= 1)")
    options = _options(kw, log_name, state_name)
    config = connectors.parse_uri(store_uri, collection=collection)
    observers = Observers(config.collection, metrics_file, pushgateway, report_path)
    if metrics_port is not None:
        from ...observe.metrics import RunMetrics

        if observers.metrics is None:
            observers.metrics = RunMetrics(config.collection)
            observers.events.subscribe(observers.metrics)
        try:
            observers.metrics.serve(metrics_port, metrics_addr)
        except OSError as exc:  # an address that does not resolve or is not this host's, else the port
            bad_addr = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
            raise click.BadParameter(f"cannot serve on {metrics_addr}:{metrics_port}: {exc.strerror or exc}",
                                     param_hint="--metrics-addr" if bad_addr else "--metrics-port") from None
    for name in ("nudge_sync.watch", "nudge_sync.run"):  # a watcher's log is its output
        logging.getLogger(name).setLevel(logging.INFO)
    logs.watching()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    plan = WatchPlan(store=store_uri, options=options, schedule=schedule, min_new_feedback=kw["min_new_feedback"],
                     poll=poll, retry_budget=retry_budget, max_cycles=max_runs, collection=collection)
    code = watch(plan, observers.events, stop, on_cycle=observers.close)
    ctx.exit(code)
