"""Logging of the ``nudge-sync`` command: third-party log lines hidden unless asked for, and redacted.

Client libraries log on their own: pymilvus prints an ``[ERROR]`` line with a whole traceback on
stderr for every failed RPC (even one nudge-sync handles), and any of them may log a request or an
answer holding a credential. The command line owns stderr: its own one-line messages go there, and
everything logged through the stdlib ``logging`` module (nudge-sync's retries included) goes through
one handler that redacts every configured secret. Our own warnings (a database call being retried)
are shown; the client libraries' log lines only with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys

import connectors

from ..observe.jsonlog import JsonFormatter

_FORMAT = "nudge-sync: %(levelname)s %(name)s: %(message)s"
#: Loggers of this project (shown without --verbose from WARNING up).
OURS = ("nudge_sync", "connectors")


class RedactingFormatter(logging.Formatter):
    """Formats a record (its traceback included) and removes every configured secret from it."""

    def format(self, record: logging.LogRecord) -> str:
        return connectors.redact(super().format(record))


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        global _failure_logged
        if getattr(record, "event", None) == "summary" and "error" in (getattr(record, "fields", None) or {}):
            # a failed run's summary: in text, the command's closing "error:" line says the same (a
            # watcher, which goes on, has none: its summaries are its output); in JSON it is the
            # closing record itself. Either way the error is on stderr once.
            if not (_json or _watching):
                return
            _failure_logged = True
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a log line must never break a command
            self.handleError(record)


#: ``--log-format`` values: human lines, or one JSON object per line (``nudge_sync.observe.jsonlog``).
FORMATS = ("text", "json")
#: The environment variable that sets ``--log-format`` (unattended jobs set it once).
FORMAT_ENV = "NUDGE_SYNC_LOG_FORMAT"

_handler: logging.Handler | None = None
_verbose = False
_json = False
_watching = False  #: a watcher's run summaries are its output, failed ones included
_failure_logged = False  #: a failed run's summary record was written


def configure(verbose: bool, log_format: str = "text") -> None:
    """Route every logger through one redacting stderr handler, shown only when ``verbose``; with
    ``log_format="json"`` every record is one JSON line (secrets redacted in every string of it) and
    the run's events and summary (INFO) are shown too."""
    global _handler, _verbose, _json, _watching, _failure_logged
    _verbose, _json = verbose, log_format == "json"
    _watching = _failure_logged = False  # one command per configuration (tests run many in a process)
    if _handler is None:
        _handler = StderrHandler()
        connectors.on_backend_loaded(lambda backend: _take_over())
    _handler.setFormatter(JsonFormatter(redact=connectors.redact) if _json else RedactingFormatter(_FORMAT))
    # Python warnings (a client library's UserWarning) would be bare lines between the JSON ones:
    # as records of the `py.warnings` logger they are JSON too (shown with --verbose, as library lines are)
    logging.captureWarnings(_json)
    _take_over()


def is_json() -> bool:
    return _json


def watching() -> None:
    """The command is a watcher: every run's summary is shown (there is no closing line per run)."""
    global _watching
    _watching = True


def failure_logged() -> bool:
    """Whether a failed run's summary record (which holds the error) is already on stderr."""
    return _failure_logged


def wants_json(args: list[str] | None = None) -> bool:
    """Whether stderr is JSON lines: as the group's options set it up (``args`` None), or, for a
    usage error before the group ran, as the environment or the command line ``args`` ask."""
    if args is None:
        return _json
    words, given = list(args), os.environ.get(FORMAT_ENV)
    for i, word in enumerate(words):  # the flag beats the environment, as in click
        if word.startswith("--log-format="):
            given = word.split("=", 1)[1]
        elif word == "--log-format" and i + 1 < len(words):
            given = words[i + 1]
    return given == "json"


def error(message: str, exit_code: int | None = None, level: int = logging.ERROR) -> None:
    """The command's closing error line, as a JSON record under ``--log-format json``; ``level``
    INFO for exit 3 (nothing to do: a quiet night is not an error anyone should be paged for)."""
    if _handler is None or not _json:  # a usage error before the group set logging up
        configure(_verbose, "json")
    record = logging.LogRecord("nudge_sync.cli", level, __file__, 0, message, None, None)
    if exit_code is not None:
        record.fields = {"exit_code": exit_code}
    assert _handler is not None
    _handler.handle(record)


def _take_over() -> None:
    """Make the root logger ours again, and every other logger propagate to it without handlers
    of its own (called again after a client library configured logging at import)."""
    assert _handler is not None
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    # a logger's effective level decides whether a record is made at all: third-party loggers
    # inherit the root's, ours have their own
    root.setLevel(logging.WARNING if _verbose else logging.CRITICAL + 1)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and not name.startswith(OURS):
            for handler in logger.handlers[:]:
                logger.removeHandler(handler)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
    for name in OURS:
        logging.getLogger(name).setLevel(logging.INFO if _verbose or _json else logging.WARNING)
