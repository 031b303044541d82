"""Fixtures of the user-level suite: the backends as seen from outside, counted trials, cleanup."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import fast_tmp_dir
from tests.conftest import fixture_name, selected_harnesses
from tests.user._data import SWEEP
from tests.user._native import EMBEDDED, UserBackend, SharedServerBackend, embedded_backend
from tests.user._runner import COST, kill_leftovers
from tests.user._tally import TRIALS_FILE, Tally, trials_dir

if SWEEP not in ("ci", "long"):
    raise pytest.UsageError(f"NUDGE_SYNC_SWEEP={SWEEP!r}: expected 'ci' (default) or 'long'")


def backend_for(name: str, request: pytest.FixtureRequest, directory: Path) -> UserBackend:
    if name in EMBEDDED:
        return embedded_backend(name, directory)
    return SharedServerBackend(request.getfixturevalue(fixture_name(name)))


@pytest.fixture(params=selected_harnesses())
def user_backend(request, tmp_path) -> Iterator[UserBackend]:
    """Each of the selected backends; embedded ones in a directory of their own for this test."""
    # on tmpfs: the embedded engines' writes without the fsync wait (tests/backends: fast_tmp_dir)
    directory = fast_tmp_dir("nudge-sync-user-", tmp_path) if request.param in EMBEDDED else tmp_path / "db"
    try:
        yield backend_for(request.param, request, directory)
    finally:
        if request.param in EMBEDDED:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tally(request, tmp_path_factory) -> Tally:
    path = trials_dir(tmp_path_factory.getbasetemp()) / TRIALS_FILE
    return Tally(path, request.node.nodeid, SWEEP)


@pytest.fixture(autouse=True)
def _cost_and_cleanup(request, tmp_path_factory) -> Iterator[None]:
    """Count what each test cost (nudge-sync processes, their CPU), and never leave a paused
    nudge-sync process behind a failed test (a pause gives up only after 300 s)."""
    processes, cpu, started = COST["processes"], COST["cpu_s"], time.monotonic()
    yield
    kill_leftovers()
    tally = Tally(trials_dir(tmp_path_factory.getbasetemp()) / TRIALS_FILE, request.node.nodeid, SWEEP)
    tally.cost(COST["processes"] - processes, COST["cpu_s"] - cpu, time.monotonic() - started)


def pytest_collection_modifyitems(config, items) -> None:
    """The user-level suite's long tests (marked ``slow``) first: under ``-n 2`` the shorter tests
    then fill both workers at the end instead of one long test running alone (same order on every
    worker, as xdist requires)."""
    heavy = [item for item in items if item.get_closest_marker("slow") and "tests/user/" in item.nodeid]
    if heavy:
        first = set(heavy)
        items[:] = heavy + [item for item in items if item not in first]
