"""`nudge-sync run` and `nudge-sync plan` (``--out``: the plan file `apply` writes): one sync through the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import connectors

from ...engine.options import DEFAULT_GAMMA_MARGIN, SyncOptions
from ...engine.run import sync
from ..failures import EXIT_CODES_HELP, handle_errors
from ..observing import Observers, check_output_path, metrics_options, report_option
from ..option_types import RunOption
from ..params import (entries_from_file, file_label, log_options, opened, run_options, skip_unverified_option,
                      state_option, store_options)
from ..render import echo, emit, human_run, progress_bar


def _run_command(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None,
                 log_file: Path | None, state_name: str | None, dry_run: bool, metrics_file: Path | None = None,
                 pushgateway: str | None = None, report_path: Path | None = None, plan_out: Path | None = None,
                 **kw: Any) -> None:
    options = SyncOptions(
        log=log_name, state=state_name, method=kw["method"], gamma=kw["gamma"], gamma_search=kw["gamma_search"],
        objective=kw["objective"], context=kw["context_mode"], context_k=kw["context_k"],
        val_fraction=kw["val_fraction"], split_salt=kw["split_salt"], min_val_queries=kw["min_val_queries"],
        min_gain=kw["min_gain"], max_changed_fraction=kw["max_changed_fraction"],
        min_new_feedback=kw["min_new_feedback"], tolerance=kw["tolerance"], batch_size=kw["batch_size"],
        lock_ttl=kw["lock_ttl"], break_lock=kw["break_lock"], dry_run=dry_run, skip_unverified=kw["skip_unverified"],
        gamma_margin=kw["gamma_margin"], force=kw["force"],
    )
    config = connectors.parse_uri(store_uri, collection=collection)
    observers = Observers(config.collection, metrics_file, pushgateway, report_path)
    try:
        with opened(store_uri, collection) as store:
            report = sync(store, options, entries=entries_from_file(store, log_name, log_file),
                          progress=progress_bar(ctx), events=observers.events, store_label=config.redacted(),
                          log_source=file_label(log_file), plan_out=plan_out)
    finally:
        observers.close()
    emit(ctx, report.to_dict(), human_run)
    if plan_out is not None and not ctx.obj["json"]:
        echo(f"  plan file   {plan_out} (review it, then `nudge-sync apply {plan_out}`)")


#: search mode's sticky γ (engine/sticky.py): added here, beside the run options of params.py
gamma_margin_option = click.option(
    "--gamma-margin", type=RunOption("gamma_margin", float), default=DEFAULT_GAMMA_MARGIN, show_default=True,
    help="Search mode: keep the last run's gamma unless the new one beats it on validation by more than this.")


@click.command("run", epilog=EXIT_CODES_HELP)
@store_options
@log_options
@state_option
@run_options
@skip_unverified_option
@gamma_margin_option
@click.option("--dry-run", is_flag=True, help="Compute and report; write nothing at all.")
@metrics_options
@report_option
@click.pass_context
@handle_errors
def run_cmd(ctx: click.Context, **kw: Any) -> None:
    """Run one sync: fit NUDGE on the feedback log, write the changed vectors in place."""
    _run_command(ctx, **kw)


# the run it previews: NUDGE_SYNC_RUN_* (not NUDGE_SYNC_PLAN_*) and the config's [run] table
@click.command("plan", epilog=EXIT_CODES_HELP, context_settings={"auto_envvar_prefix": "NUDGE_SYNC_RUN"})
@store_options
@log_options
@state_option
@run_options
@skip_unverified_option
@gamma_margin_option
@click.option("--out", "plan_out", type=click.Path(path_type=Path), metavar="PLAN.json",
              callback=lambda c, p, v: check_output_path(v, "--out"),
              help="Also save the plan (targets, the stored vectors' fingerprints, options, watermark; no "
                   "secrets) for `nudge-sync apply`.")
@metrics_options
@report_option
@click.pass_context
@handle_errors
def plan_cmd(ctx: click.Context, **kw: Any) -> None:
    """Same as `run --dry-run`: what a run would write, writing nothing (--out: save it to apply later)."""
    _run_command(ctx, dry_run=True, **kw)
