"""`nudge-sync demo`: an embedded database with a synthetic corpus and feedback, synced."""

from __future__ import annotations

from pathlib import Path

import click

from ..failures import EXIT_CODES_HELP, handle_errors
from ..render import echo, emit, human_demo, progress_bar


@click.command("demo", epilog=EXIT_CODES_HELP)
@click.option("--backend", type=click.Choice(["qdrant", "milvus", "chroma"]), default="qdrant", show_default=True,
              help="Embedded database to create (no server needed).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("nudge-sync-demo"), show_default=True, help="Where the demo database is created.")
@click.option("--records", type=click.IntRange(100, 1_000_000), default=10_000, show_default=True)
@click.option("--dim", type=click.IntRange(2, 4096), default=128, show_default=True)
@click.option("--queries", type=click.IntRange(50, 200_000), default=2_000, show_default=True,
              help="Labelled queries in the log.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.pass_context
@handle_errors
def demo_cmd(ctx: click.Context, backend: str, directory: Path, records: int, dim: int, queries: int,
             seed: int) -> None:
    """Create an embedded database with a synthetic corpus and feedback, sync it, show the gain."""
    from ..demo import run_demo

    report = run_demo(backend=backend, directory=directory, records=records, dim=dim, queries=queries,
                      seed=seed, progress=progress_bar(ctx), say=(lambda s: None) if ctx.obj["json"] else
                      (lambda s: echo(s, err=True)))
    emit(ctx, report, human_demo)
