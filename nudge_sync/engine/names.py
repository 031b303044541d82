"""The names a run gives things, decided in one place: the default log and state collections of
a collection, and run ids."""

from __future__ import annotations

import time
import uuid


def default_log_name(collection: str) -> str:
    return f"{collection}_feedback"


def default_state_name(collection: str) -> str:
    return f"{collection}_nudge_state"


def log_name_for(collection: str, given: str | None) -> str:
    """The log collection a command reads: the one given (--log), else the collection's default."""
    return given or default_log_name(collection)


def state_name_for(collection: str, given: str | None) -> str:
    """The state collection a command uses: the one given (--state), else the collection's default."""
    return given or default_state_name(collection)


def new_run_id() -> str:
    """A run id that sorts by start time (UTC) and does not collide between machines."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
