"""The command line's observers: the flags that subscribe outputs to a command's event stream
(``--metrics-file``, ``--pushgateway``, ``--report``; JSON logs come from the global
``--log-format``), checked before anything is opened, and the call that runs an engine command
with them.

The engine emits the events (``nudge_sync.engine.events``); the subscribers are in
``nudge_sync.observe``; the engine's commands take the sink as ``events=``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ..engine.events import Events
from ..observe.jsonlog import EventLog
from .render import echo

__all__ = ["Observers", "check_output_path", "metrics_options", "report_option", "write_report"]


def check_output_path(value: Path | None, flag: str) -> Path | None:
    """A file the command will write: its folder must exist and be writable, and it must not be a folder."""
    if value is None:
        return None
    path = value.expanduser().absolute()
    if path.is_dir():
        raise click.BadParameter(f"{str(value)!r} is a directory; give a file name", param_hint=flag)
    if not path.parent.is_dir():
        raise click.BadParameter(f"{str(value)!r}: folder {str(path.parent)!r} does not exist", param_hint=flag)
    if path.exists() and not path.is_file():  # the file is replaced by a rename: never a device's node
        raise click.BadParameter(f"{str(value)!r} is not a regular file", param_hint=flag)
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.BadParameter(f"{str(value)!r} is not writable", param_hint=flag)
    try:  # what the end of the run does (a temporary file beside it); os.access says yes to root everywhere
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".check")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise click.BadParameter(f"{str(value)!r} is not writable: {exc.strerror or exc}", param_hint=flag) from None
    return path


def _output_path(flag: str) -> Callable[[click.Context, click.Parameter, Any], Path | None]:
    return lambda ctx, param, value: check_output_path(value, flag)


def _check_gateway(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a URL: {exc}", param_hint="--pushgateway") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r}: expected http://host:port (the Pushgateway's address)",
                                 param_hint="--pushgateway")
    return value


def report_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--report", "report_path", type=click.Path(path_type=Path), callback=_output_path("--report"),
                        metavar="FILE.html", help="Also write a self-contained HTML report (plots inline).")(fn)


def metrics_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--pushgateway", metavar="URL", callback=_check_gateway,
                      help="Push the run's metrics to this Prometheus Pushgateway (push-add: a failed run "
                           "keeps the last success time).")(fn)
    fn = click.option("--metrics-file", type=click.Path(path_type=Path), callback=_output_path("--metrics-file"),
                      metavar="PATH", help="Write the run's Prometheus metrics here (textfile-collector format, "
                                           "atomically).")(fn)
    return fn


@dataclass
class Observers:
    """The subscribers the flags asked for, on one sink; ``close`` writes what is written at the end."""

    collection: str
    metrics_file: Path | None = None
    pushgateway: str | None = None
    report_path: Path | None = None
    events: Events = field(default_factory=Events)
    metrics: Any = None  #: a RunMetrics, where asked for
    report: Any = None  #: a RunReport, where asked for

    def __post_init__(self) -> None:
        # prometheus-client and matplotlib are imported only by the commands that use them
        self.events.subscribe(EventLog())
        if self.metrics_file is not None or self.pushgateway:
            from ..observe.metrics import RunMetrics

            self.metrics = RunMetrics(self.collection)
            self.events.subscribe(self.metrics)
        if self.report_path is not None:
            from ..observe.report import RunReport

            self.report = RunReport(self.report_path)
            self.events.subscribe(self.report)

    def close(self) -> None:
        """Write the metrics file and push; a failure to do so is a warning, not the run's outcome."""
        if self.metrics is not None and self.metrics_file is not None:
            _try(lambda: self.metrics.write_textfile(self.metrics_file), f"metrics file {str(self.metrics_file)!r}")
        if self.metrics is not None and self.pushgateway:
            _try(lambda: self.metrics.push(self.pushgateway), f"Pushgateway {self.pushgateway!r}")
        if self.report is not None and self.report.error is not None:
            echo(f"warning: report {str(self.report_path)!r} not written: {self.report.error}", err=True)


def _try(action: Callable[[], None], what: str) -> None:
    try:
        action()
    except Exception as exc:
        echo(f"warning: {what} not written: {type(exc).__name__}: {exc}", err=True)


def write_report(path: Path | None, page: str, *args: Any) -> None:
    """Write ``observe.report.<page>(*args)`` to ``path`` (eval and history: drawn from their reports)."""
    if path is None:
        return
    from ..observe import report

    report.write_page(path, getattr(report, page)(*args))
