"""Small embedded databases for the bad-input suites, one per database engine, and the ``nudge-sync``
command run as a separate process against them.

Each database holds a user collection ``docs`` (60 records x 8 dims, cosine, with payloads /
metadata / documents), its query log ``docs_feedback`` and its state ``docs_nudge_state`` (one run
has written nudged vectors), so "the database is unchanged" covers data, log and state alike.
A template is built once per test session and worker; every test gets a fresh copy (a directory
copy: milliseconds), so examples that are accepted and write never leak into another test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tests.backends.dump import dump_database, embedded_client

BACKENDS = ("qdrant", "milvus", "chroma")
LOCATIONS = {"qdrant": "qdrant", "milvus": "milvus.db", "chroma": "chroma"}
N, DIM, QUERIES = 60, 8, 40
COLLECTION, LOG, STATE = "docs", "docs_feedback", "docs_nudge_state"
#: The exit codes the README documents; 1 (internal error) is a bug.
DOCUMENTED_EXIT_CODES = frozenset({0, 2, 3, 4, 5, 6})
EXE = str(Path(sys.executable).with_name("nudge-sync"))
#: The timestamp of the template's feedback (2026-01-01T00:00:00Z).
T0 = 1_767_225_600.0
#: Backends whose template has no state collection yet. Milvus Lite releases every collection when a
#: process opens it, and the connector loads the data and log collections but not the state one, so
#: any command after a first run fails with exit 6 ("docs_nudge_state is in state 'released'"); the
#: loading of released collections is issue #10's. Remove "milvus" here once that has landed.
WITHOUT_STATE = frozenset({"milvus"})


@dataclass(frozen=True)
class Outcome:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """The last line on stderr: where every error ends up."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        return f"nudge-sync {' '.join(map(repr, self.args))} -> exit {self.code}\nstderr: {self.stderr[-2000:]}"


def run_cli(*args: Any, timeout: float = 120) -> Outcome:
    """``nudge-sync -q ARGS`` as its own process (the console script of this environment)."""
    argv = tuple(str(a) for a in args)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("NUDGE_SYNC_STORE", None)
    env.pop("NUDGE_SYNC_CONFIG", None)
    env.pop("NUDGE_SYNC_DEBUG", None)  # as a user runs it: an internal error would print one line
    done = subprocess.run([EXE, "-q", *argv], capture_output=True, text=True, timeout=timeout, env=env,
                          errors="replace")
    return Outcome(argv, done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class EmbeddedDB:
    backend: str
    root: Path
    ids: tuple[Any, ...]
    vectors: np.ndarray

    @property
    def location(self) -> Path:
        return self.root / LOCATIONS[self.backend]

    def uri(self, collection: str = COLLECTION) -> str:
        return f"{self.backend}://{self.location}?collection={collection}"

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Every collection, every record, as its own client reads it (client released afterwards)."""
        with embedded_client(self.backend, self.location) as client:
            return dump_database(self.backend, client)

    def copy_to(self, root: Path) -> EmbeddedDB:
        shutil.copytree(self.location, root / LOCATIONS[self.backend])
        return replace(self, root=root)

    def entries(self, n: int = QUERIES, seed: int = 0) -> list[dict[str, Any]]:
        """Valid JSONL entries for this collection: queries near one of its records."""
        rng = np.random.default_rng(seed)
        out = []
        for q in range(n):
            row = int(rng.integers(len(self.ids)))
            vec = self.vectors[row] + 0.3 * rng.standard_normal(DIM).astype(np.float32)
            out.append({"query_id": f"q{q}", "vector": [float(x) for x in vec], "relevant_ids": [self.ids[row]],
                        "timestamp": T0 + q, "split": "val" if q % 4 == 0 else "train"})
        return out


def write_jsonl(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    return path


def build_template(backend: str, root: Path, *, reuse: bool = False) -> EmbeddedDB:
    """The database every test copies: user collection created with the native client, the log
    imported and one run written with ``nudge-sync`` itself, as a user would. ``reuse``: the one
    already built at ``root`` (same content: everything here is deterministic)."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = tuple(f"doc-{i:03d}" for i in range(N)) if backend == "chroma" else tuple(range(1, 3 * N, 3))
    db = EmbeddedDB(backend, root, ids, vectors)
    if reuse:
        return db
    if root.exists():  # a template left half-built by an interrupted session
        shutil.rmtree(root)
    root.mkdir(parents=True)
    if backend == "milvus":
        db.location.mkdir()  # MilvusClient creates a Milvus Lite database at an existing .db path
    with embedded_client(backend, db.location) as client:
        _create(backend, client, ids, vectors)
    log = write_jsonl(root / "template-feedback.jsonl", db.entries())
    commands = [("feedback", "import", "--store", db.uri(), log)]
    if backend not in WITHOUT_STATE:
        commands.append(("run", "--store", db.uri(), "--max-changed-fraction", "1", "--min-val-queries", "1"))
    for args in commands:
        done = run_cli(*args)
        if done.code != 0:
            raise RuntimeError(f"building the {backend} template failed: {done.describe()}")
    return db


def _create(backend: str, client: Any, ids: tuple[Any, ...], vectors: np.ndarray) -> None:
    payloads = [{"title": f"record {i} — ünïcode ✓", "n": i, "tags": ["a", f"t{i % 3}"]} for i in range(len(ids))]
    if backend == "qdrant":
        from qdrant_client import models

        client.create_collection(COLLECTION, vectors_config=models.VectorParams(size=DIM,
                                                                                 distance=models.Distance.COSINE))
        client.upsert(COLLECTION, points=models.Batch(ids=list(ids), vectors=vectors.tolist(), payloads=payloads),
                      wait=True)
    elif backend == "milvus":
        from pymilvus import DataType

        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("title", DataType.VARCHAR, max_length=256)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")
        client.create_collection(COLLECTION, schema=schema, index_params=index, consistency_level="Strong")
        client.insert(COLLECTION, [{"pk": i, "vector": v.tolist(), **p} for i, v, p in zip(ids, vectors, payloads)])
    else:
        coll = client.create_collection(COLLECTION, configuration={"hnsw": {"space": "cosine"}},
                                        embedding_function=None)
        coll.add(ids=list(ids), embeddings=vectors, documents=[p["title"] for p in payloads],
                 metadatas=[{"n": p["n"], "tags": p["tags"]} for p in payloads])
