"""The application: a separate process that writes to the collection with the database's own
client while nudge-sync runs, the way a service re-embeds and adds documents.

    python -m tests.user._writer '<json config>'

Config: ``backend`` ("chroma" | "milvus" | "qdrant"), ``url`` (``http://127.0.0.1:PORT``; a Milvus
Lite file), or ``path`` (a Chroma persistent directory; a Qdrant local directory), ``token`` (Milvus,
optional), ``collection``, ``dim``, ``mode``:

* ``serve``: one JSON command per stdin line -- ``{"reembed": [ids]}``, ``{"add": n}`` -- each
  answered by one stdout line ``{"writes": [{"op", "id", "vector", "t0", "t1"}]}`` once written
  (the deterministic interleavings drive it while a run is paused at a probe); ``{"free": {...}}``
  runs ``free`` mode with those settings in the same process (its added ids continue the served
  ones'), answered ``{"writes": []}`` once ``stop`` exists;
* ``free``: every ``interval`` seconds re-embed one of ``candidates`` (every ``add_every``-th
  write: add a record) and append each write to ``log`` as the same JSON object, until the file
  ``stop`` exists (the free-running writer); with ``chase`` (a ``NUDGE_SYNC_TRACE`` file) also
  re-embed one record of every batch as soon as the trace shows its originals saved.

Re-embeds write a new unit vector and leave everything else of the record as it was: Chroma
``update(ids, embeddings)``; Milvus has no vector-only update on 2.3.5, so the row is read and
upserted whole with the new vector, as applications do. ``t0`` / ``t1`` (``time.time()`` before
and after the call) bound when the database applied the write.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


class ChromaApp:
    def __init__(self, cfg: dict[str, Any]):
        import chromadb

        if cfg.get("path"):  # a persistent directory another process (nudge-sync) also opens
            self.client = chromadb.PersistentClient(path=cfg["path"])
        else:
            host, port = cfg["url"].removeprefix("http://").rsplit(":", 1)
            self.client = chromadb.HttpClient(host=host, port=int(port))
        self.coll = self.client.get_collection(cfg["collection"], embedding_function=None)

    def reembed(self, ids: list[Any], vectors: np.ndarray) -> None:
        self.coll.update(ids=[str(i) for i in ids], embeddings=vectors)

    def add(self, ids: list[Any], vectors: np.ndarray) -> None:
        self.coll.add(ids=[str(i) for i in ids], embeddings=vectors,
                      metadatas=[{"source": "app", "n": k} for k in range(len(ids))],
                      documents=[f"added by the application: {i}" for i in ids])

    def new_id(self, k: int) -> Any:
        return f"app-{k:06d}"


class MilvusApp:
    def __init__(self, cfg: dict[str, Any]):
        from pymilvus import MilvusClient

        from connectors.milvus import engine_version

        self.name = cfg["collection"]
        self.client = MilvusClient(uri=cfg["url"], token=cfg.get("token") or "", timeout=60)
        self.modern = (engine_version(str(self.client.get_server_version())) or (0,)) >= (2, 4)
        self.client.load_collection(self.name)
        self.str_ids = cfg.get("id_type") == "str"

    def reembed(self, ids: list[Any], vectors: np.ndarray) -> None:
        rows = self.client.query(self.name, ids=list(ids), output_fields=["*"], consistency_level="Strong")
        by_id = {r["pk"]: r for r in rows}
        for i, v in zip(ids, vectors):
            by_id[i]["vector"] = v.tolist()
        self.client.upsert(self.name, [by_id[i] for i in ids])

    def add(self, ids: list[Any], vectors: np.ndarray) -> None:
        from tests.backends.milvus import rich_row

        rows = []
        for k, (i, v) in enumerate(zip(ids, vectors)):
            row = {"pk": i, "vector": v.tolist(), **rich_row(20_000 + k, modern=self.modern)}
            if self.modern:
                row["aux"] = [0.5, 0.25, 0.125]
            rows.append(row)
        self.client.insert(self.name, rows)

    def new_id(self, k: int) -> Any:
        return f"app-{k:06d}" if self.str_ids else 10_000_000 + k


class QdrantApp:
    """Qdrant local mode admits one client per directory: this one runs in nudge-sync's process (a
    thread of bench/bench_writer_race.py) and shares its client (connectors.qdrant.local_client)."""

    def __init__(self, cfg: dict[str, Any]):
        from connectors.qdrant import local_client

        self._hold = local_client(cfg["path"])
        self.client = self._hold.__enter__()
        self.name, self.vector = cfg["collection"], cfg.get("vector")

    def _vec(self, v: np.ndarray) -> Any:
        return {self.vector: v.tolist()} if self.vector else v.tolist()

    def reembed(self, ids: list[Any], vectors: np.ndarray) -> None:
        from qdrant_client import models

        self.client.update_vectors(self.name, [models.PointVectors(id=i, vector=self._vec(v))
                                               for i, v in zip(ids, vectors)], wait=True)

    def add(self, ids: list[Any], vectors: np.ndarray) -> None:
        from qdrant_client import models

        points = [models.PointStruct(id=i, vector={**self._vec(v), "aux": [0.5, 0.25, 0.125]} if self.vector
                                     else self._vec(v), payload={"source": "app"}) for i, v in zip(ids, vectors)]
        self.client.upsert(self.name, points, wait=True)

    def new_id(self, k: int) -> Any:
        return 10_000_000 + k

    def close(self) -> None:
        self._hold.__exit__(None, None, None)


class App:
    """Writes and what it wrote, timed."""

    def __init__(self, cfg: dict[str, Any]):
        self.db = {"chroma": ChromaApp, "milvus": MilvusApp, "qdrant": QdrantApp}[cfg["backend"]](cfg)
        self.dim = int(cfg["dim"])
        self.rng = np.random.default_rng(int(cfg.get("seed", 0)))
        self.added = 0

    def unit(self, n: int) -> np.ndarray:
        v = self.rng.standard_normal((n, self.dim)).astype(np.float64)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def reembed(self, ids: list[Any]) -> list[dict[str, Any]]:
        vectors = self.unit(len(ids))
        t0 = time.time()
        self.db.reembed(ids, vectors)
        return self._done("reembed", ids, vectors, t0)

    def add(self, n: int) -> list[dict[str, Any]]:
        ids = [self.db.new_id(self.added + k) for k in range(n)]
        self.added += n
        vectors = self.unit(n)
        t0 = time.time()
        self.db.add(ids, vectors)
        return self._done("add", ids, vectors, t0)

    @staticmethod
    def _done(op: str, ids: list[Any], vectors: np.ndarray, t0: float) -> list[dict[str, Any]]:
        t1 = time.time()
        return [{"op": op, "id": i, "vector": v.tolist(), "t0": t0, "t1": t1} for i, v in zip(ids, vectors)]


def serve(app: App) -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("free"):
            free(app, cmd["free"])
            print(json.dumps({"writes": []}), flush=True)
            continue
        writes = app.reembed(cmd["reembed"]) if cmd.get("reembed") else []
        writes += app.add(int(cmd["add"])) if cmd.get("add") else []
        print(json.dumps({"writes": writes}), flush=True)


def free(app: App, cfg: dict[str, Any]) -> None:
    candidates = cfg["candidates"]
    pick = random.Random(int(cfg.get("seed", 0)))
    log, stop = Path(cfg["log"]), Path(cfg["stop"])
    every, interval = int(cfg.get("add_every", 5)), float(cfg.get("interval", 0.05))
    chase = Chase(Path(cfg["chase"])) if cfg.get("chase") else None
    n, due = 0, 0.0
    with open(log, "a") as out:
        while not stop.exists():
            writes = []
            batch = chase.new_batch() if chase else None
            if batch:  # a batch's originals were just saved: its re-read and write are under way
                writes = app.reembed([pick.choice(batch)])
            elif time.monotonic() >= due:
                n += 1
                writes = app.add(1) if n % every == 0 else app.reembed([pick.choice(candidates)])
                due = time.monotonic() + interval
            for w in writes:
                out.write(json.dumps({**w, "chased": bool(batch)}) + "\n")
            out.flush()
            time.sleep(0.002 if chase else max(0.0, due - time.monotonic()))


class Chase:
    """``chase``: follows a nudge-sync trace file (NUDGE_SYNC_TRACE) and reports each batch whose
    originals were just saved (``<phase>.save``), so the application re-embeds one of its records
    while the batch is re-read and written -- the window the write protocol leaves."""

    def __init__(self, trace: Path):
        self.trace, self.offset = trace, 0

    def new_batch(self) -> list[Any] | None:
        if not self.trace.exists():
            return None
        with open(self.trace) as f:
            f.seek(self.offset)
            text = f.read()
        complete = text[: text.rfind("\n") + 1]  # a line being appended is read next time
        self.offset += len(complete.encode())
        found = None
        for line in complete.splitlines():
            event = json.loads(line)
            if event["point"].endswith(".save") and event.get("ids"):
                found = event["ids"]
        return found


def main() -> None:
    cfg = json.loads(sys.argv[1])
    app = App(cfg)
    if cfg["mode"] == "serve":
        serve(app)
    else:
        free(app, cfg)


if __name__ == "__main__":
    main()
