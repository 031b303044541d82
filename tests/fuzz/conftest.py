"""Fixtures of the bad-input suites: a fresh copy of a small embedded database per test."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from tests.fuzz._db import EmbeddedDB, build_template


@pytest.fixture(scope="session")
def _templates(tmp_path_factory, worker_id) -> Callable[[str], EmbeddedDB]:
    """One template database per backend, built on first use and shared by the xdist workers (under
    the run's common temporary directory, behind a file lock): each costs a few seconds to build."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    built: dict[str, EmbeddedDB] = {}

    def template(backend: str) -> EmbeddedDB:
        if backend not in built:
            root = shared / f"nudge-sync-bad-input-{backend}"
            with FileLock(str(root) + ".lock"):
                db = build_template(backend, root, reuse=os.path.exists(root / "ready"))
                (root / "ready").touch()
            built[backend] = db
        return built[backend]

    return template


@pytest.fixture
def fresh_db(_templates, tmp_path: Path) -> Callable[[str], EmbeddedDB]:
    """``fresh_db("chroma")``: a copy of the template, this test's alone."""
    def copy(backend: str) -> EmbeddedDB:
        return _templates(backend).copy_to(tmp_path / f"db-{backend}")

    return copy
