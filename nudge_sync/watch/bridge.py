"""Running an engine command with an event sink, whether or not the engine emits into it itself.

``call_observed`` passes the sink to an engine function that takes ``events=``; for one that does
not, it emits the command's bracketing events itself (``RunStarted``, the report's step times,
``RunFinished`` / ``RunFailed``) from what the function returns or raises, so the subscribers
(logs, metrics, reports, the watcher) see the same outcome either way.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from ..engine.errors import ExitCode, NothingToDo, exit_code_for
from ..engine.events import Events, RunFailed, RunFinished, RunStarted, StepFinished

__all__ = ["call_observed"]


def call_observed(fn: Callable[..., Any], events: Events, start: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with the sink: passed as ``events=`` where ``fn`` takes it, else
    bracketed here; ``start`` holds the fields of ``RunStarted`` (command, store, collection, options)."""
    if "events" in inspect.signature(fn).parameters:
        return fn(*args, events=events, **kwargs)
    started = time.time()
    run_id = ""
    command = start["command"]
    events.emit(RunStarted(run_id, **start))
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        report = getattr(exc, "report", None)
        report_dict = report.to_dict() if report is not None else None
        run_id = (report_dict or {}).get("run_id", "")
        for step, seconds in ((report_dict or {}).get("timings") or {}).items():
            events.emit(StepFinished(run_id, step=step, seconds=float(seconds)))
        seconds = time.time() - started
        if isinstance(exc, NothingToDo) and report_dict is not None:
            events.emit(RunFinished(run_id, command=command, status=report_dict.get("status", "gated"),
                                    report=report_dict, seconds=seconds, exit_code=int(ExitCode.NOTHING_TO_DO)))
        elif isinstance(exc, Exception):
            events.emit(RunFailed(run_id, command=command, error=type(exc).__name__, message=str(exc),
                                  exit_code=int(exit_code_for(exc)), seconds=seconds, report=report_dict))
        raise
    report_dict = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    run_id = report_dict.get("run_id", "")
    for step, seconds in (report_dict.get("timings") or {}).items():
        events.emit(StepFinished(run_id, step=step, seconds=float(seconds)))
    events.emit(RunFinished(run_id, command=command, status=report_dict.get("status", ""), report=report_dict,
                            seconds=time.time() - started, exit_code=0))
    return result
