"""Milvus harnesses: ``milvus-lite`` (MilvusClient on a temp ``.db`` file, in process),
``milvus-lite-server`` (``milvus-lite server`` on a free loopback port) and ``milvus-2.3.5``
(PyPI ``milvus==2.3.5``'s real standalone ``milvus-server``), each started and stopped by PID.

``rich=True`` collections have scalar fields of several types, a JSON field, dynamic fields, a
VARCHAR document and a second vector field ``aux`` (all must stay byte-identical); the target
vector field is ``vector`` and the URI names it (``vector=vector``).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests._procs import ServerProcess, closed_port, free_port
from tests.backends import Harness, RecordId

__all__ = ["harness_milvus_lite", "harness_milvus_lite_server", "harness_milvus_2_3_5", "MilvusHarness"]

METRICS = {"cosine": "COSINE", "dot": "IP", "l2": "L2"}
SERVER_PORT_FLAGS = ("--etcd-port", "--root-coord-port", "--proxy-internal-port", "--query-coord-port",
                     "--query-node-port", "--index-coord-port", "--index-node-port", "--data-coord-port",
                     "--data-node-port")


def rich_row(i: int) -> dict[str, Any]:
    return {
        "title": f"Título nº{i} — ünïcödé ✓ 日本語", "n": i, "score": i * 0.5 + 0.25, "flag": i % 2 == 0,
        "meta": {"tags": ["a", f"t{i % 5}"], "nested": {"x": i, "none": None}},
        "document": f"document {i}: naïve café 🙂",
        "dyn_text": f"dynamic {i}", "dyn_num": i * 3,
    }


class MilvusHarness(Harness):
    backend = "milvus"
    id_types = ("int", "str")

    def __init__(self, name: str, uri: str, store_base: str, is_server: bool, proc: ServerProcess | None = None):
        self.name = name
        self.client_uri = uri
        self.store_base = store_base
        self.is_server = is_server
        self.proc = proc
        self.client = MilvusClient(uri=uri, timeout=60)
        from connectors.milvus import _engine_version

        # Milvus < 2.4 allows one vector field per collection (the second one is skipped there)
        self.multi_vector = _engine_version(str(self.client.get_server_version())) >= (2, 4)

    def close(self) -> None:
        self.client.close()
        if self.proc is not None:
            self.proc.stop()

    def uri(self, collection: str) -> str:
        return f"{self.store_base}?collection={collection}&vector=vector"

    def create(self, collection: str, ids: Sequence[RecordId], vectors: np.ndarray, *,
               metric: str = "cosine", rich: bool = True) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=rich)
        if isinstance(ids[0], int):
            schema.add_field("pk", DataType.INT64, is_primary=True)
        else:
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type=METRICS[metric])
        if rich:
            schema.add_field("title", DataType.VARCHAR, max_length=512)
            schema.add_field("n", DataType.INT64)
            schema.add_field("score", DataType.DOUBLE)
            schema.add_field("flag", DataType.BOOL)
            schema.add_field("meta", DataType.JSON)
            schema.add_field("document", DataType.VARCHAR, max_length=4096)
            if self.multi_vector:
                schema.add_field("aux", DataType.FLOAT_VECTOR, dim=3)
                index.add_index("aux", index_type="FLAT", metric_type="L2")
        self.client.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong")
        rng = np.random.default_rng(len(ids))
        for s in range(0, len(ids), 5000):
            rows = []
            for j in range(s, min(len(ids), s + 5000)):
                row: dict[str, Any] = {"pk": ids[j], "vector": vectors[j].tolist()}
                if rich:
                    row.update(rich_row(j))
                    if self.multi_vector:
                        row["aux"] = rng.standard_normal(3).astype(np.float32).tolist()
                rows.append(row)
            self.client.insert(collection, rows)
        self.client.load_collection(collection)

    def _rows(self, collection: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        it = self.client.query_iterator(collection, batch_size=5000, filter="", output_fields=fields,
                                        consistency_level="Strong")
        try:
            while True:
                rows = it.next()
                if not rows:
                    return
                yield from rows
        finally:
            it.close()

    def snapshot(self, collection: str) -> dict[RecordId, bytes]:
        out: dict[RecordId, bytes] = {}
        for row in self._rows(collection, ["*"]):
            rest = {k: v for k, v in row.items() if k not in ("vector", "pk")}
            if "aux" in rest:
                rest["aux"] = np.asarray(rest["aux"], np.float32).tobytes().hex()
            out[row["pk"]] = json.dumps(rest, sort_keys=True, ensure_ascii=False, default=str).encode()
        return out

    def vectors(self, collection: str) -> dict[RecordId, np.ndarray]:
        return {r["pk"]: np.asarray(r["vector"], np.float32) for r in self._rows(collection, ["vector"])}

    def count(self, collection: str) -> int:
        return int(self.client.query(collection, filter="", output_fields=["count(*)"],
                                     consistency_level="Strong")[0]["count(*)"])

    def drop(self, collection: str) -> None:
        if self.client.has_collection(collection):
            self.client.drop_collection(collection)

    def collections(self) -> list[str]:
        return list(self.client.list_collections())

    def create_auto_id(self, collection: str, dim: int) -> bool:
        schema = self.client.create_schema(auto_id=True)
        schema.add_field("pk", DataType.INT64, is_primary=True, auto_id=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        self.client.create_collection(collection, schema=schema, index_params=index)
        self.client.insert(collection, [{"vector": [0.5] * dim}])
        return True

    def unreachable_uri(self, collection: str) -> str | None:
        if not self.is_server:
            return None
        return f"milvus+http://127.0.0.1:{closed_port()}?collection={collection}&timeout=5"

    def extra(self) -> dict[str, Any]:
        return {"server_version": self.client.get_server_version()}


def _binary(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"`{name}` is not installed")
    return found


def _ready(uri: str) -> bool:
    try:
        c = MilvusClient(uri=uri, timeout=3)
        c.get_server_version()
        c.close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def harness_milvus_lite(tmp_path_factory) -> Iterator[MilvusHarness]:
    path = tmp_path_factory.mktemp("milvus-lite") / "lite.db"
    h = MilvusHarness("milvus-lite", str(path), f"milvus://{path}", is_server=False)
    yield h
    h.close()


@pytest.fixture(scope="session")
def harness_milvus_lite_server(tmp_path_factory, server_logs) -> Iterator[MilvusHarness]:
    data = tmp_path_factory.mktemp("milvus-lite-server")
    port = free_port()
    proc = ServerProcess(f"milvus-lite-{port}", [_binary("milvus-lite"), "server", "--data-dir", str(data),
                                                  "--host", "127.0.0.1", "--port", str(port)], server_logs).start()
    uri = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: _ready(uri), timeout=90)
    h = MilvusHarness("milvus-lite-server", uri, f"milvus+{uri}", is_server=True, proc=proc)
    yield h
    h.close()


@pytest.fixture(scope="session")
def harness_milvus_2_3_5(tmp_path_factory, server_logs) -> Iterator[MilvusHarness]:
    data = tmp_path_factory.mktemp("milvus-2.3.5")
    port = free_port()
    # it opens a port per component: give each a free one so parallel runs never collide
    ports = [arg for flag in SERVER_PORT_FLAGS for arg in (flag, str(free_port()))]
    proc = ServerProcess(f"milvus-server-{port}", [_binary("milvus-server"), "--data", str(data),
                                                   "--proxy-port", str(port), *ports], server_logs).start()
    uri = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: _ready(uri), timeout=180)
    h = MilvusHarness("milvus-2.3.5", uri, f"milvus+{uri}", is_server=True, proc=proc)
    yield h
    h.close()
