"""How a failure reaches the user: a one-line message on stderr (with the report as JSON on stdout
under --json) and a documented exit code; never a traceback unless asked for."""

from __future__ import annotations

import functools
import json
import logging
import os
import traceback
from collections.abc import Callable
from typing import Any

import click

import connectors

from ..engine.errors import ExitCode, NudgeSyncError, exit_code_for
from . import logs
from .render import echo, human_run, json_default


#: Every exit code in one line each: the help's epilog (README's "Exit codes" table says more, and
#: tests/test_readme.py checks both list every ``ExitCode``).
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL_ERROR: "internal error (a bug: please report it)",
    ExitCode.USAGE_ERROR: "usage error (bad option, URI or config file)",
    ExitCode.NOTHING_TO_DO: "nothing to do, or a gate held the run back (nothing written)",
    ExitCode.REFUSED_INPUT: "refused input (dimension, NaN, metric, options, unverified state entries)",
    ExitCode.LOCK_HELD: "the collection's lock is held by another run",
    ExitCode.DATABASE_ERROR: "database error (unreachable, credentials, missing collection, write not verified);\n"
                             "     a run that had written puts it back first: the collection is as it was",
    ExitCode.PARTIALLY_WRITTEN: "partially written: a run (or rollback) failed part-way and could not put back what\n"
                                "     it wrote; rerun, or `nudge-sync rollback --run ID`, completes it",
    ExitCode.STOPPED_IN_RUN: "(watch) stopped by SIGTERM/SIGINT inside a run, which put back what it wrote",
}
EXIT_CODES_HELP = "\b\nExit codes:\n" + "".join(f"  {int(c)}  {m}\n" for c, m in EXIT_CODE_MEANINGS.items())


#: Set to 1 to get the traceback of an internal error (exit code 1) on stderr.
DEBUG_ENV = "NUDGE_SYNC_DEBUG"


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message on stderr (+ JSON on stdout) and an exit code;
    anything unexpected into "internal error" and exit code 1, never a traceback (unless asked)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except (NudgeSyncError, connectors.ConnectorError) as exc:
            _fail(ctx, exc, exit_code_for(exc), getattr(exc, "report", None))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug: say so in one line, and how to see more
            _fail(ctx, exc, ExitCode.INTERNAL_ERROR, None)

    return wrapper


def _fail(ctx: click.Context, exc: BaseException, code: ExitCode, report: Any) -> None:
    if ctx.obj["json"]:
        payload = report.to_dict() if report is not None else {"status": "error"}
        payload.update(error=str(exc), exit_code=int(code), error_type=type(exc).__name__)
        echo(json.dumps(payload, indent=2, sort_keys=True, default=json_default))
    elif report is not None:
        echo(human_run(report.to_dict()))
    if logs.is_json():  # stderr holds JSON lines only; a failed run's summary record is its error record
        if not logs.failure_logged():
            logs.error(error_line(exc, code), int(code),
                       logging.INFO if code == ExitCode.NOTHING_TO_DO else logging.ERROR)
    else:
        echo(error_line(exc, code), err=True)
    ctx.exit(int(code))


def json_usage_errors(exc: click.ClickException, args: list[str] | None) -> None:
    """Under ``--log-format json`` a usage error (click's, exit 2) is one JSON record on stderr
    like every other error, not click's usage text: click calls ``show`` when it exits."""
    if not logs.wants_json(args):
        return
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""

    def show(file: Any = None) -> None:
        logs.error(f"error: {exc.format_message()}{hint}", exc.exit_code)

    exc.show = show  # type: ignore[method-assign]


def error_line(exc: BaseException, code: ExitCode) -> str:
    if code == ExitCode.INTERNAL_ERROR:
        if os.environ.get(DEBUG_ENV) == "1":
            echo("".join(traceback.format_exception(exc)).rstrip("\n"), err=True)
        return (f"internal error (a bug, please report it): {type(exc).__name__}: {_one_line(exc)}"
                + ("" if os.environ.get(DEBUG_ENV) == "1" else f" (set {DEBUG_ENV}=1 for the traceback)"))
    label = "nothing to do" if code == ExitCode.NOTHING_TO_DO else "error"
    return f"{label}: {exc}"


def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
