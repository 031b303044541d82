"""The regression corpus of issue #11 through the ``nudge-sync`` command, as separate processes, on
embedded Qdrant, Milvus Lite and Chroma: each input gets its documented exit code and a message
that names the problem, and a refused command leaves every collection byte for byte as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fuzz._cases import ALL, CASES, ONE, Case
from tests.fuzz._db import DOCUMENTED_EXIT_CODES, EmbeddedDB, run_cli

CORPUS = Path(__file__).resolve().parent / "corpus"


def _runs() -> list:
    """(case, backend) pairs; inputs refused before any database is opened take turns over the three."""
    out = []
    for n, case in enumerate(CASES):
        backends = (ALL[n % len(ALL)],) if case.backends == ONE else case.backends
        out += [pytest.param(case, b, id=f"{case.name}-{b}") for b in backends]
    return out


def expand(args: tuple[str, ...], db: EmbeddedDB) -> list[str]:
    return [a.replace("{uri}", db.uri()).replace("{corpus}", str(CORPUS)) for a in args]


@pytest.mark.parametrize("case, backend", _runs())
def test_regression_corpus(case: Case, backend: str, fresh_db) -> None:
    db = fresh_db(backend)
    before = db.snapshot()
    out = run_cli(*expand(case.args, db))
    assert out.code == case.code_on(backend), out.describe()
    assert out.code in DOCUMENTED_EXIT_CODES and "Traceback" not in out.stderr, out.describe()
    where = out.stdout + out.stderr if out.code in (0, 3) else out.message
    assert re.search(case.message, where), out.describe()
    assert "allow_pickle" not in out.stderr  # never advise loading a pickle
    if out.code != 0:
        assert db.snapshot() == before, f"a refused command changed the database: {out.describe()}"
    if case.then:
        later = run_cli(*expand(case.then, db))
        assert later.code in (0, 3), f"the log is no longer usable after {case.label!r}: {later.describe()}"


def test_the_readme_table_is_generated_from_this_corpus() -> None:
    from tests.fuzz._table import table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert table() in readme, "README's bad-input table is stale: paste the output of `python -m tests.fuzz._table`"
