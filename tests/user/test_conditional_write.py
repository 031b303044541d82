"""Qdrant closes the remaining window with a conditional write (issue #10, defect 2): with
``version_field=updated_at`` in the URI, a batch is written with ``update_vectors(update_filter=...)``
against the version each record had when the batch was re-read, so an application write landing
between the re-read and our write survives -- during a run and during a rollback.

Qdrant local mode admits one process per directory, so the "application" here writes from inside
the nudge-sync process, with the same native client, at the probe that marks the window
(``run.before_write`` / ``rollback.before_write``: the batch was re-read, its write is next); the
CLI itself runs in this process too (click's runner). Without ``version_field`` the same write is
lost: the window the README documents.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from qdrant_client import models

from connectors.qdrant import local_client
from nudge_sync.engine import faults
from nudge_sync.cli.app import cli
from tests.backends import RecordId
from tests.backends import fast_tmp_dir
from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, DIM, Collection, make_collection
from tests.user._native import embedded_backend
from tests.user._runner import leaks

pytestmark = pytest.mark.skipif("qdrant-local" not in selected_harnesses(), reason="qdrant-local not selected")
VERSION = "updated_at"


def in_process(*args: str) -> dict[str, Any]:
    """The CLI in this process (so a probe callable can act inside the window); no leaks allowed."""
    result = CliRunner().invoke(cli, ["--json", "-q", *args], obj={}, catch_exceptions=False)
    assert not leaks(result.output), result.output
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


class Application:
    """Re-embeds a record the way an application maintaining a version field does: the whole
    point upserted with a new vector and ``updated_at`` + 1."""

    def __init__(self, coll: Collection):
        self.path, self.name = str(coll.backend.path), coll.name
        self.written: dict[RecordId, np.ndarray] = {}

    def reembed(self, record: RecordId) -> None:
        rng = np.random.default_rng(len(self.written) + 1)
        vector = rng.standard_normal(DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        with local_client(self.path) as client:  # the client this process already holds
            (point,) = client.retrieve(self.name, [record], with_payload=True, with_vectors=True)
            payload = {**(point.payload or {}), VERSION: (point.payload or {}).get(VERSION, 0) + 1}
            client.upsert(self.name, [models.PointStruct(id=record, vector={**point.vector, "text": vector.tolist()},
                                                         payload=payload)], wait=True)
        self.written[record] = vector

    @contextmanager
    def inside_window(self, point: str, hit: int) -> Iterator[None]:
        """Re-embed the first record of the ``hit``-th batch right before nudge-sync writes it."""
        def act(n: int, ids: list[Any] | None) -> None:
            if n == hit and ids:
                self.reembed(ids[0])

        faults.on(point, act)
        try:
            yield
        finally:
            faults.clear()


@pytest.fixture
def qdrant_dir(tmp_path) -> Iterator[Path]:
    """Qdrant local mode on tmpfs, as the user_backend fixture has it (on disk its writes are slow)."""
    directory = fast_tmp_dir("nudge-sync-conditional-", tmp_path)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def versioned_collection(tmp_path: Path, qdrant_dir: Path, name: str) -> Collection:
    backend = embedded_backend("qdrant-local", qdrant_dir)
    coll = make_collection(backend, name, tmp_path, metric="cosine")
    with backend.native() as h:  # the application's version field on every record
        h.client.set_payload(name, {VERSION: 1}, points=models.Filter(), wait=True)
    return coll


def survived(coll: Collection, app: Application) -> list[RecordId]:
    now = coll.backend.vectors(coll.name)
    # cosine: Qdrant stores the normalised vector; the application wrote unit vectors
    return [i for i, v in app.written.items() if np.max(np.abs(now[i] - v)) <= 1e-6]


def test_version_field_closes_the_window(tmp_path, qdrant_dir, collection_name, tally):
    coll = versioned_collection(tmp_path, qdrant_dir, collection_name)
    app = Application(coll)
    uri = coll.uri + f"&version_field={VERSION}"
    for command, point in (("run", "run.before_write"), ("rollback", "rollback.before_write")):
        with tally.counting("qdrant-local", "conditional-write", fault=f"{command}: write inside the window"):
            before = dict(app.written)
            with app.inside_window(point, hit=2):
                report = in_process(command, "--store", uri, *BATCH_ARGS)
            assert len(app.written) == len(before) + 1, "the application did not write inside the window"
            assert sorted(survived(coll, app), key=repr) == sorted(app.written, key=repr), report
    status = in_process("status", "--store", uri)
    assert (status["nudged"], status["pending"], status["lock"]) == (0, 0, None), status


def test_without_version_field_a_write_inside_the_window_is_lost(tmp_path, qdrant_dir, collection_name, tally):
    """The documented remaining window (README): one batch, between its re-read and its write."""
    coll = versioned_collection(tmp_path, qdrant_dir, collection_name)
    app = Application(coll)
    with tally.counting("qdrant-local", "conditional-write", fault="run: write inside the window, no version_field"):
        with app.inside_window("run.before_write", hit=2):
            in_process("run", "--store", coll.uri, *BATCH_ARGS)
        assert len(app.written) == 1 and survived(coll, app) == [], "expected the documented window to lose it"
