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
    return _companion_name(collection, given, "--log", default_log_name(collection), "the query log",
                           {default_state_name(collection): f"nudge-sync's state collection of {collection!r}"})


def state_name_for(collection: str, given: str | None, log: str | None = None) -> str:
    """The state collection a command uses: the one given (--state), else the collection's default.
    It is never the collection itself or its query log (``log``: the --log given, if any)."""
    taken = {default_log_name(collection): f"the query log of {collection!r}"}
    if log is not None:
        taken[log] = f"the query log of {collection!r}"
    return _companion_name(collection, given, "--state", default_state_name(collection), "nudge-sync's state", taken)


def _companion_name(collection: str, given: str | None, option: str, default: str, role: str,
                    taken: dict[str, str]) -> str:
    """A log's or state's name (``given`` for ``option``, else ``default``), refused when it names the
    collection itself or one of ``taken`` (name -> what it is): each lives in a collection of its own."""
    if given is None:
        return default
    name = check_name(given, option)
    what = "the collection itself" if name == collection else taken.get(name)
    if what is not None:
        raise RefusedInput(f"{option} {name!r} names {what}; {role} is kept in a collection of its own "
                           f"(default {default!r})")
    return name


def new_run_id() -> str:
    """A run id that sorts by start time (UTC) and does not collide between machines."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
