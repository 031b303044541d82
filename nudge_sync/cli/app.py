"""The click application behind ``nudge-sync``: the group and its global options, the commands
(``commands/``) registered on it, and the console script's entry point (``main``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..engine import faults
from ..engine.errors import ExitCode, RefusedInput
from . import logs
from .commands.apply import apply_cmd
from .commands.demo import demo_cmd
from .commands.feedback import feedback_group
from .commands.operations import eval_cmd, history_cmd, rollback_cmd, status_cmd
from .commands.run import plan_cmd, run_cmd
from .commands.watch import watch_cmd
from .config import load_config
from .failures import DEBUG_ENV, EXIT_CODES_HELP, error_line, json_usage_errors
from .render import echo


# -- the group ---------------------------------------------------------------------------------------


class _Group(click.Group):
    """click's group, whose usage errors follow ``--log-format`` (parsing the group's own options
    or a command's, both happen inside these two calls)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        given = list(args)  # click consumes the list it parses
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            json_usage_errors(exc, given if parent is None else None)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # the command's name is resolved before the group's callback ran
            json_usage_errors(exc, ["--log-format", str(ctx.params.get("log_format"))])
            raise


@click.group(cls=_Group, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), envvar="NUDGE_SYNC_CONFIG",
              help="TOML config file (env NUDGE_SYNC_CONFIG): defaults per command, no secrets.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON report on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars on stderr.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also show the database client libraries' log lines on stderr (secrets redacted; "
                   f"{DEBUG_ENV}=1 does too).")
@click.option("--log-format", type=click.Choice(logs.FORMATS), default="text", show_default=True,
              envvar=logs.FORMAT_ENV,
              help=f"json: one JSON object per line on stderr (time, level, logger, message, run id, the "
                   f"event's fields) and a summary record per run; no progress bars (env {logs.FORMAT_ENV}).")
@click.version_option(package_name="nudge-sync")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, as_json: bool, quiet: bool, verbose: bool, log_format: str) -> None:
    """Improve retrieval in a live vector database from user feedback.

    nudge-sync reads the stored vectors and a labelled query log, runs NUDGE on the CPU, and
    writes back only the changed record vectors, in place. Start with `nudge-sync demo`.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(json=as_json, quiet=quiet or log_format == "json" or as_json and not sys.stderr.isatty())
    logs.configure(verbose or os.environ.get(DEBUG_ENV) == "1", log_format)
    try:
        faults.check_environment()  # a test's fault rules must never be silently ignored
    except faults.FaultSpecError as exc:
        raise click.UsageError(str(exc)) from None
    if config is not None:
        try:
            ctx.default_map = load_config(config, cli.commands)
        except RefusedInput as exc:
            raise click.UsageError(str(exc)) from None


for command in (run_cmd, plan_cmd, apply_cmd, rollback_cmd, status_cmd, history_cmd, feedback_group, eval_cmd, demo_cmd,
                watch_cmd):
    cli.add_command(command)


def main() -> None:
    """The console script: every failure ends in a one-line message and a documented exit code.
    Client libraries' own log lines (pymilvus prints a traceback for every failed RPC) are hidden
    by the group's logging set-up (``_logs``) unless --verbose asks for them."""
    try:
        cli(obj={}, auto_envvar_prefix="NUDGE_SYNC")
    except Exception as exc:  # outside a command (option parsing, the group): still never a traceback
        echo(error_line(exc, ExitCode.INTERNAL_ERROR), err=True)
        sys.exit(int(ExitCode.INTERNAL_ERROR))


if __name__ == "__main__":  # pragma: no cover
    main()
