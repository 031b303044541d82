"""The names a run gives things, decided in one place: the default log and state collections of
a collection, and run ids."""

from __future__ import annotations

import time
import uuid

from connectors import state_name_problem

from .errors import RefusedInput


def default_log_name(collection: str) -> str:
    return f"{collection}_feedback"


def default_state_name(collection: str) -> str:
    return f"{collection}_nudge_state"


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a log or state collection (the connectors' one rule), or None."""
    return state_name_problem(name)


def check_name(name: object, option: str) -> str:
    """``name`` given for ``option`` (--log, --state), or RefusedInput: an empty name never means
    "the default" (it used to, silently)."""
    problem = name_problem(name)
    if problem:
        raise RefusedInput(f"{option} {name!r}: a collection name that {problem} is not usable")
    assert isinstance(name, str)
    return name


def log_name_for(collection: str, given: str | None) -> str:
    """The log collection a command reads: the one given (--log), else the collection's default.
    The collection itself and its default state collection are never a log."""
    if given is None:
        return default_log_name(collection)
    name = check_name(given, "--log")
    if name == collection:
        raise RefusedInput(f"--log {name!r} names the collection itself: the query log is a collection of its own "
                           f"(default {default_log_name(collection)!r})")
    if name == default_state_name(collection):
        raise RefusedInput(f"--log {name!r} names nudge-sync's state collection of {collection!r}, not a query log")
    return name


def state_name_for(collection: str, given: str | None, log: str | None = None) -> str:
    """The state collection a command uses: the one given (--state), else the collection's default.
    It is never the collection itself or its query log (``log``: the --log given, if any)."""
    if given is None:
        return default_state_name(collection)
    name = check_name(given, "--state")
    if name == collection:
        raise RefusedInput(f"--state {name!r} names the collection itself; nudge-sync keeps its state in a "
                           f"collection of its own (default {default_state_name(collection)!r})")
    if name in (default_log_name(collection), log):
        raise RefusedInput(f"--state {name!r} names the query log of {collection!r}; nudge-sync keeps its state in "
                           f"a collection of its own (default {default_state_name(collection)!r})")
    return name


def new_run_id() -> str:
    """A run id that sorts by start time (UTC) and does not collide between machines."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
