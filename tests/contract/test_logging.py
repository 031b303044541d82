"""The connectors report through stdlib ``logging`` under ``connectors.*`` loggers and never print:
writes, query-log appends and their put-backs, file logs, and the widening rounds of the shared
excluded search (whose results are checked here against brute force on numpy)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np
import pytest

import connectors
from connectors import LabelledQuery, WriteFailed
from connectors._search import search_excluding
from connectors.memory import database, forget
from tests.backends import random_vectors

CONNECTORS = Path(connectors.__file__).parent


@pytest.fixture(autouse=True)
def _library_logging_only(monkeypatch):
    """These tests are about the library's own logging. An in-process CLI test that ran earlier on
    the same xdist worker leaves the CLI's takeover hook registered (nudge_sync/cli/logs.py: on
    every backend load it sets the ``connectors`` logger back to WARNING), which would silently undo
    ``caplog.set_level`` when the test opens its store; found when the suite's test order changed."""
    from connectors import _uri

    monkeypatch.setattr(_uri, "_loaded_hooks", [])


@pytest.fixture
def db_name(request):
    name = f"logging-{request.node.name}"
    yield name
    forget(name)


def test_no_connectors_module_prints():
    printing = [f"{path.relative_to(CONNECTORS)}:{node.lineno}"
                for path in sorted(CONNECTORS.rglob("*.py"))
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]
    assert printing == []


def test_writes_and_appends_are_logged_under_connectors(db_name, caplog, tmp_path):
    ids, vectors = [1, 2, 3], random_vectors(3, 4, seed=3)
    connectors.create_collection(f"memory://{db_name}?collection=docs", ids, vectors, metric="dot")
    caplog.set_level(logging.INFO, logger="connectors")
    with connectors.open_store(f"memory://{db_name}?collection=docs") as store:
        store.update_vectors([2, 3], vectors[:2] * 2)
        store.append_log("docs_log", [LabelledQuery(f"q{n}", vectors[n], [1]) for n in range(3)], batch_size=2)
    connectors.write_log_file(tmp_path / "log.jsonl", [LabelledQuery("q", vectors[0], [1])])
    lines = {(r.name, r.levelno, r.getMessage()) for r in caplog.records}
    assert ("connectors.memory.store", logging.INFO, "'docs': 2 vector(s) written and read back") in lines
    assert ("connectors._log", logging.INFO, "query log 'docs_log': appended in 3 write(s)") in lines  # create, 2 rows, 1 row
    assert ("connectors.files.logfile", logging.INFO, f"{tmp_path / 'log.jsonl'}: written, 1 entries (jsonl)") in lines


def test_a_put_back_is_logged_before_the_error(db_name, caplog, monkeypatch):
    ids, vectors = [1, 2], random_vectors(2, 4, seed=4)
    connectors.create_collection(f"memory://{db_name}?collection=docs", ids, vectors, metric="dot")
    client = database(db_name)
    real_upsert, calls = client.upsert, []

    def failing_second_upsert(name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise ConnectionResetError("injected: the connection dropped")
        return real_upsert(name, *args, **kwargs)

    monkeypatch.setattr(client, "upsert", failing_second_upsert)
    caplog.set_level(logging.INFO, logger="connectors")
    with connectors.open_store(f"memory://{db_name}?collection=docs") as store:
        with pytest.raises(WriteFailed, match="the log this append created was removed"):
            store.append_log("docs_log", [LabelledQuery(f"q{n}", vectors[0], [1]) for n in range(3)], batch_size=1)
    messages = [r.getMessage() for r in caplog.records if r.name == "connectors._log"]
    assert messages == ["query log 'docs_log': write 3 of 4 failed (injected: the connection dropped); "
                        "putting the log back"]


def _brute_force_fetch(vectors: np.ndarray, queries: np.ndarray, fetches: list[tuple[int, int]]):
    """A raw search over numpy: top ``n`` by inner product (ties by id), leaving out the filtered ids."""
    def fetch(positions, n, filtered):
        fetches.append((len(positions), n))
        blocked = set(filtered)
        out = []
        for q in queries[positions]:
            scores = vectors @ q
            order = sorted((j for j in range(len(vectors)) if j not in blocked), key=lambda j: (-scores[j], j))
            out.append([(j, float(scores[j])) for j in order[:n]])
        return out
    return fetch


@pytest.mark.parametrize("filter_limit", [None, 8, 10_000], ids=["over-fetch", "full-filter", "met-ids-filter"])
def test_the_shared_excluded_search_finds_the_true_top_k_and_logs_its_widening(filter_limit, caplog):
    rng = np.random.default_rng(7)
    vectors, queries = rng.normal(size=(300, 8)), rng.normal(size=(6, 8))
    k = 5
    truth = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")
    # each query's 40 best records are excluded, so the first window (k + 32) is never enough
    excluded = {int(j) for j in truth[:, :40].ravel()} | {int(j) for j in rng.choice(300, 30, replace=False)}
    fetches: list[tuple[int, int]] = []
    caplog.set_level(logging.DEBUG, logger="connectors")
    ceiling = len(vectors) if filter_limit is not None else min(len(vectors), k + len(excluded))
    rows = search_excluding(len(queries), k, excluded, _brute_force_fetch(vectors, queries, fetches),
                            ceiling=ceiling, first_extra=32, growth=4, filter_limit=filter_limit)
    for qi, row in enumerate(rows):
        want = [int(j) for j in truth[qi] if int(j) not in excluded][:k]
        assert [i for i, _ in row[:k]] == want
    assert fetches[0] == (6, k + 32) and len(fetches) > 1  # widened only for the short queries
    widening = [r.getMessage() for r in caplog.records if r.name == "connectors._search"]
    assert len(widening) == len(fetches) - 1 and all("short of k=5 survivors" in m for m in widening)
