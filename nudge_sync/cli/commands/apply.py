"""`nudge-sync apply PLAN.json`: write a plan saved by `nudge-sync plan --out` (the engine's
``apply_plan``), after review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import connectors

from ...engine.apply import apply_plan, plan_store_uri
from ...engine.planfile import load_plan
from ..failures import EXIT_CODES_HELP, handle_errors
from ..observing import Observers, metrics_options
from ..option_types import CollectionName
from ..params import opened
from ..render import emit, human_run, progress_bar


@click.command("apply", epilog=EXIT_CODES_HELP)
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store", "store_uri", envvar="NUDGE_SYNC_STORE", metavar="URI",
              help="Store URI (default: the plan's own, without secrets and without secret_env= / "
                   "secret_file=: give the URI again where they are needed). Must name the plan's "
                   "database and collection.")
@click.option("--collection", type=CollectionName(), help="Collection name (overrides the URI's ?collection=; must be the plan's).")
@click.option("--break-lock", is_flag=True, help="Remove a lock left by a run that died, then apply.")
@metrics_options
@click.pass_context
@handle_errors
def apply_cmd(ctx: click.Context, plan_file: Path, store_uri: str | None, collection: str | None, break_lock: bool,
              metrics_file: Path | None = None, pushgateway: str | None = None, **_: Any) -> None:
    """Write exactly the vectors of a plan saved by `plan --out`, through the run's write path.

    Refused (exit 4, nothing written) if any planned record moved or vanished since the plan, the
    collection's dimension or metric changed, or a run or rollback was recorded since; a plan
    already applied is not applied again (exit 3)."""
    doc = load_plan(plan_file)  # a corrupt, truncated or edited file is refused before anything opens
    uri = plan_store_uri(doc, store_uri, collection)
    config = connectors.parse_uri(uri, collection=collection)
    observers = Observers(config.collection, metrics_file, pushgateway)
    try:
        with opened(uri, collection) as store:
            report = apply_plan(store, doc, progress=progress_bar(ctx), events=observers.events,
                                store_label=config.redacted(), break_lock=break_lock)
    finally:
        observers.close()
    emit(ctx, report.to_dict(), human_run)
