"""Milvus connector: Milvus Lite (a local ``.db`` file) and Milvus servers, through pymilvus.

URIs::

    milvus:///abs/file.db?collection=docs        Milvus Lite, embedded (the file must exist)
    milvus+http://host:19530?collection=docs     a server (``+https`` for TLS); ``db_name=``
    options: vector=<float vector field>, timeout=<seconds>

The token comes from ``MILVUS_TOKEN`` (``user:password`` or an API key; or ``secret_env=NAME`` /
``secret_file=PATH``).

Write path and its traps
------------------------
* A default ``upsert`` replaces the whole row: a vector-only upsert fails or, worse, resets every
  other field. Where the engine supports it (Milvus Lite, servers >= 2.6.2) vectors are written
  with ``upsert(partial_update=True)`` carrying only the primary key and the vector; elsewhere
  (e.g. Milvus 2.3.5) the full rows are read (every field, dynamic fields included), the vector
  replaced, and the rows upserted. ``describe().details["write_path"]`` says which.
* Auto-id collections are refused: an upsert there assigns new primary keys (the id users and
  logs know would vanish).
* Unknown ids are checked first (UnknownIds, nothing written); every batch is read back.
* Reads use ``query_iterator`` (offset paging breaks past 16,384 rows on a server) and strong
  consistency, so a read after a write sees it.
* Scores: COSINE and IP are similarities; L2 returns the squared distance, reported as its negative.

Query log: a collection with a VARCHAR primary key ``query_id``, the query embedding (IP, FLAT)
and a JSON field ``fields`` holding ``relevant_ids``, ``grades``, ``timestamp``, ``split`` (see
``connectors/_log.py``). State: VARCHAR key ``"<kind>:<key>"``, ``kind``, ``meta`` (JSON text),
``has_vector`` and an IP vector (bit-exact round trips).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from ._base import (
    CollectionInfo,
    LabelledQuery,
    Metric,
    RecordId,
    SearchResult,
    StateCollection,
    StateRecord,
    VectorStore,
    as_vectors,
    check_ids,
    dedupe,
    pad_results,
)
from ._errors import (
    AuthenticationFailed,
    CollectionNotFound,
    ConnectionFailed,
    ConnectorError,
    InvalidVectors,
    UnknownIds,
    UnsupportedCollection,
    WriteFailed,
)
from ._log import check_query_id, entry_fields, entry_from_fields
from ._uri import StoreConfig

__all__ = ["MilvusStore", "MilvusState", "create_collection", "open_store"]

METRIC_FROM_MILVUS: dict[str, Metric] = {"COSINE": "cosine", "IP": "dot", "L2": "l2"}
METRIC_TO_MILVUS = {v: k for k, v in METRIC_FROM_MILVUS.items()}
BATCH = 1000
STRONG = "Strong"
_CLIENT_VERSION = package_version("pymilvus")
_FLOAT_VECTOR = DataType.FLOAT_VECTOR


def open_store(config: StoreConfig) -> MilvusStore:
    return MilvusStore(config)


class _Connection:
    def __init__(self, config: StoreConfig):
        self.config = config
        timeout = config.timeout(10.0)
        if config.is_server:
            self.where = f"Milvus server {config.location}"
            uri = config.location
        else:
            if config.transport == "memory":
                raise ConnectorError("Milvus has no in-memory mode; use milvus:///path/to/file.db")
            path = Path(config.location)
            if not path.exists():
                # MilvusClient would silently create an empty database file here.
                raise CollectionNotFound(f"no Milvus Lite database at {path}, so collection "
                                         f"{config.collection!r} does not exist")
            self.where = f"Milvus Lite {path}"
            uri = str(path)
        kwargs: dict[str, Any] = {"uri": uri, "timeout": timeout}
        if config.secret:
            kwargs["token"] = config.secret
        if config.option("db_name"):
            kwargs["db_name"] = config.option("db_name")
        try:
            self.client = MilvusClient(**kwargs)
        except MilvusException as exc:
            raise _translate(exc, f"cannot connect to {self.where}", config.collection, self.where) from None
        except Exception as exc:  # grpc channel errors surface as plain exceptions
            raise ConnectionFailed(f"cannot reach {self.where}: {type(exc).__name__}: {exc}") from None
        self._version: str | None = None

    @contextmanager
    def calls(self, what: str, collection: str, *, write: bool = False) -> Iterator[None]:
        try:
            yield
        except ConnectorError:
            raise
        except MilvusException as exc:
            raise _translate(exc, what, collection, self.where, write) from None
        except Exception as exc:
            cls = WriteFailed if write else ConnectorError
            raise cls(f"{what} on Milvus collection {collection!r} ({self.where}) failed: "
                      f"{type(exc).__name__}: {exc}") from exc

    def exists(self, name: str) -> bool:
        with self.calls("has_collection", name):
            return bool(self.client.has_collection(name))

    def version(self) -> str:
        if self._version is None:
            with self.calls("get_server_version", "-"):
                self._version = str(self.client.get_server_version())
        return self._version

    def supports_partial_update(self) -> bool:
        """Milvus Lite and servers >= 2.6.2 take ``upsert(partial_update=True)``.

        Milvus Lite reports "milvus_lite-<its own version>"; the PyPI Milvus 2.3.5 standalone reports
        "v2.3.5-lite" although it is a full server, so only the leading number counts there."""
        return _engine_version(self.version()) >= (2, 6, 2)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing must never mask the caller's own error
                pass


def _engine_version(reported: str) -> tuple[int, ...]:
    """(major, minor, patch) of the Milvus engine; Milvus Lite counts as the newest."""
    if reported.startswith("milvus_lite"):
        return (99, 0, 0)
    head = reported.lstrip("v").split("-")[0]
    return tuple(int(p) for p in head.split(".")[:3] if p.isdigit())


def _translate(exc: MilvusException, what: str, collection: str, where: str, write: bool = False) -> ConnectorError:
    text = str(getattr(exc, "message", "") or exc)
    low = text.lower()
    if "auth" in low or "credential" in low or "permission" in low or "token" in low or exc.code in (1800, 2):
        if "auth" in low or "credential" in low or "token" in low or "permission" in low:
            return AuthenticationFailed(f"{where} refused the credentials on {what}: {text}; check MILVUS_TOKEN")
    if "collection not found" in low or "can't find collection" in low or "not exist" in low:
        return CollectionNotFound(f"{what}: Milvus collection {collection!r} does not exist in {where}")
    if "fail connecting" in low or "unavailable" in low or "deadline" in low or "connect" in low:
        return ConnectionFailed(f"{what}: cannot reach {where}: {text}")
    cls = WriteFailed if write else ConnectorError
    return cls(f"{what} on Milvus collection {collection!r} ({where}) failed: {text}")


class _Layout:
    """What we need to know about a user collection's schema."""

    def __init__(self, name: str, desc: Mapping[str, Any], wanted: str | None):
        fields = desc["fields"]
        pk = [f for f in fields if f.get("is_primary")]
        if not pk:
            raise UnsupportedCollection(f"Milvus collection {name!r} has no primary key field")
        self.pk = pk[0]["name"]
        if desc.get("auto_id") or pk[0].get("auto_id"):
            raise UnsupportedCollection(
                f"Milvus collection {name!r} uses auto_id primary keys: an upsert there assigns new ids, so "
                "nudge-sync refuses to write to it (copy it into a collection with explicit ids)")
        pk_type = pk[0]["type"]
        if pk_type == DataType.INT64:
            self.id_type = "int"
        elif pk_type == DataType.VARCHAR:
            self.id_type = "str"
        else:
            raise UnsupportedCollection(f"Milvus collection {name!r}: primary key type {pk_type} is not supported")
        dense = [f for f in fields if f["type"] == _FLOAT_VECTOR]
        if wanted is None:
            if len(dense) != 1:
                names = sorted(f["name"] for f in dense)
                raise UnsupportedCollection(
                    f"Milvus collection {name!r} has {len(dense)} float vector fields {names}; "
                    "choose one with the URI option vector=NAME" if dense else
                    f"Milvus collection {name!r} has no FLOAT_VECTOR field")
            field = dense[0]
        else:
            match = [f for f in dense if f["name"] == wanted]
            if not match:
                raise UnsupportedCollection(f"Milvus collection {name!r} has no float vector field {wanted!r}; "
                                            f"it has {sorted(f['name'] for f in dense)}")
            field = match[0]
        self.vector = field["name"]
        self.dim = int(field["params"]["dim"])
        self.metric: str | None = None


class MilvusStore(VectorStore):
    def __init__(self, config: StoreConfig):
        self.config = config
        self.name = config.collection
        self._conn: _Connection | None = _Connection(config)
        self._layout: _Layout | None = None

    @property
    def conn(self) -> _Connection:
        if self._conn is None:
            raise ConnectorError("the Milvus store is closed")
        return self._conn

    def _calls(self, what: str, *, write: bool = False):
        return self.conn.calls(what, self.name, write=write)

    def layout(self) -> _Layout:
        if self._layout is None:
            if not self.conn.exists(self.name):
                raise CollectionNotFound(f"Milvus collection {self.name!r} does not exist in {self.conn.where}")
            with self._calls("describe_collection"):
                desc = self.conn.client.describe_collection(self.name)
            layout = _Layout(self.name, desc, self.config.option("vector"))
            with self._calls("describe_index"):
                for index in self.conn.client.list_indexes(self.name):
                    info = self.conn.client.describe_index(self.name, index)
                    if info.get("field_name") == layout.vector:
                        layout.metric = str(info.get("metric_type", "")).upper()
            if layout.metric not in METRIC_FROM_MILVUS:
                raise UnsupportedCollection(
                    f"Milvus collection {self.name!r}: vector field {layout.vector!r} has "
                    + ("no index (create one; its metric type is the collection's metric)" if layout.metric is None
                       else f"metric {layout.metric}, not COSINE, IP or L2"))
            with self._calls("load_collection"):
                self.conn.client.load_collection(self.name)
            self._layout = layout
        return self._layout

    def describe(self) -> CollectionInfo:
        lay = self.layout()
        with self._calls("count"):
            count = int(self.conn.client.query(self.name, filter="", output_fields=["count(*)"],
                                               consistency_level=STRONG)[0]["count(*)"])
        partial = self.conn.supports_partial_update()
        return CollectionInfo(
            backend="milvus", collection=self.name, dimension=lay.dim, metric=METRIC_FROM_MILVUS[lay.metric],
            id_type=lay.id_type, vector_name=lay.vector, count=count, server_version=self.conn.version(),
            details={"primary_key": lay.pk, "metric_type": lay.metric, "client_version": _CLIENT_VERSION,
                     "write_path": "upsert(partial_update=True) of pk + vector" if partial
                     else "read full rows, replace the vector, upsert",
                     "vectors_round_trip": "bit-exact"},
        )

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        lay = self.layout()
        with self._calls("query_iterator"):
            it = self.conn.client.query_iterator(self.name, batch_size=batch_size, filter="",
                                                 output_fields=[lay.vector], consistency_level=STRONG)
        try:
            while True:
                with self._calls("query_iterator.next"):
                    rows = it.next()
                if not rows:
                    return
                yield [r[lay.pk] for r in rows], _float32([r[lay.vector] for r in rows], lay.dim)
        finally:
            it.close()

    def _get(self, ids: Sequence[RecordId], fields: list[str]) -> dict[RecordId, dict[str, Any]]:
        lay = self.layout()
        out: dict[RecordId, dict[str, Any]] = {}
        for start in range(0, len(ids), BATCH):
            chunk = list(ids[start : start + BATCH])
            with self._calls("get"):
                rows = self.conn.client.get(self.name, ids=chunk, output_fields=fields, consistency_level=STRONG)
            out.update({r[lay.pk]: r for r in rows})
        return out

    def _valid(self, ids: list[RecordId]) -> list[RecordId]:
        kind = int if self.layout().id_type == "int" else str
        return [i for i in ids if isinstance(i, kind) and (kind is str or -(2**63) <= i < 2**63)]

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        lay = self.layout()
        ids = check_ids(ids)
        got = self._get(dedupe(self._valid(ids)), [lay.vector])
        found = [i for i in dedupe(self._valid(ids)) if i in got]
        missing = [i for i in ids if i not in found]
        return found, _float32([got[i][lay.vector] for i in found], lay.dim), missing

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray) -> int:
        lay = self.layout()
        ids = check_ids(ids)
        seen: set[RecordId] = set()
        dupes = [i for i in ids if i in seen or seen.add(i)]
        if dupes:
            raise InvalidVectors(f"duplicate id(s) in update of {self.name!r}: {dedupe(dupes)[:10]}")
        vecs = as_vectors(vectors, lay.dim, n=len(ids))
        if not ids:
            return 0
        valid = set(self._valid(ids))
        present = self._get([i for i in ids if i in valid], [lay.pk])
        unknown = [i for i in ids if i not in valid or i not in present]
        if unknown:
            raise UnknownIds(self.name, unknown)
        partial = self.conn.supports_partial_update()
        for start in range(0, len(ids), BATCH):
            chunk, part = ids[start : start + BATCH], vecs[start : start + BATCH]
            if partial:
                rows = [{lay.pk: i, lay.vector: v.tolist()} for i, v in zip(chunk, part)]
            else:  # the whole row goes back, every other field exactly as read
                full = self._get(chunk, ["*"])
                rows = [{**full[i], lay.vector: v.tolist()} for i, v in zip(chunk, part)]
            with self._calls("upsert", write=True):
                if partial:
                    self.conn.client.upsert(self.name, rows, partial_update=True)
                else:
                    self.conn.client.upsert(self.name, rows)
            back = self._get(chunk, [lay.vector])
            vanished = [i for i in chunk if i not in back]
            if vanished:
                raise WriteFailed(f"records {vanished[:10]} of {self.name!r} vanished during the update")
            got = _float32([back[i][lay.vector] for i in chunk], lay.dim)
            if not np.array_equal(got, part):
                raise WriteFailed(f"read-back of {self.name!r} differs from what was written")
        return len(ids)

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        lay = self.layout()
        qs = as_vectors(queries, lay.dim, what="queries")
        excluded = self._valid(dedupe(check_ids(list(exclude))))
        flt = f"{lay.pk} not in {json.dumps(excluded)}" if excluded else ""
        rows: list[list[tuple[RecordId, float]]] = []
        # Milvus caps topk + offset at 16,384
        limit = min(k, 16_384)
        for start in range(0, len(qs), 100):
            with self._calls("search"):
                res = self.conn.client.search(self.name, data=qs[start : start + 100].tolist(), limit=limit,
                                              filter=flt, anns_field=lay.vector, output_fields=[lay.pk],
                                              consistency_level=STRONG)
            for hits in res:
                rows.append([(h["id"] if "id" in h else h[lay.pk],
                              -float(h["distance"]) if lay.metric == "L2" else float(h["distance"])) for h in hits])
        return pad_results(rows, k)

    # Query log -------------------------------------------------------------------------------

    def log_exists(self, name: str) -> bool:
        return self.conn.exists(name)

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        if not self.conn.exists(name):
            raise CollectionNotFound(f"query log {name!r} does not exist in {self.conn.where}")
        with self.conn.calls("load query log", name):
            self.conn.client.load_collection(name)
            it = self.conn.client.query_iterator(name, batch_size=batch_size, filter="",
                                                 output_fields=["vector", "fields"], consistency_level=STRONG)
        try:
            while True:
                with self.conn.calls("read query log", name):
                    rows = it.next()
                if not rows:
                    return
                for r in rows:
                    vec = np.asarray(r["vector"], dtype=np.float32)
                    yield entry_from_fields(name, r["query_id"], vec, r.get("fields") or {})
        finally:
            it.close()

    def append_log(self, name: str, queries: Sequence[LabelledQuery]) -> int:
        queries = list(queries)
        if not queries:
            return 0
        ids = [check_query_id(q.query_id, name) for q in queries]
        if len(set(ids)) != len(ids):
            raise InvalidVectors(f"query log {name!r}: duplicate query_id(s) in one append: "
                                 f"{sorted({i for i in ids if ids.count(i) > 1})[:10]}")
        exists = self.conn.exists(name)
        if exists:
            with self.conn.calls("describe query log", name):
                desc = self.conn.client.describe_collection(name)
            dim = int(next(f for f in desc["fields"] if f["type"] == _FLOAT_VECTOR)["params"]["dim"])
        else:
            try:
                dim = self.layout().dim
            except (CollectionNotFound, UnsupportedCollection):
                dim = int(np.asarray(queries[0].vector).size)
        for q in queries:
            if np.asarray(q.vector).size != dim:
                raise InvalidVectors(f"query log {name!r} entry {q.query_id!r}: dimension "
                                     f"{np.asarray(q.vector).size} does not match the log's dimension {dim}")
        vecs = as_vectors(np.stack([np.asarray(q.vector).ravel() for q in queries]), dim,
                          what=f"query log {name!r} vectors", n=len(queries))
        rows = [{"query_id": q.query_id, "vector": v.tolist(), "fields": entry_fields(q, name)}
                for q, v in zip(queries, vecs)]
        if not exists:
            self._create_keyed(name, "query_id", dim, {"fields": DataType.JSON})
        for start in range(0, len(rows), BATCH):
            with self.conn.calls("upsert query log", name, write=True):
                self.conn.client.upsert(name, rows[start : start + BATCH])
        return len(rows)

    def _create_keyed(self, name: str, key: str, dim: int, extra: Mapping[str, Any]) -> None:
        """A collection with a VARCHAR key and an IP vector (query log, state)."""
        client = self.conn.client
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(key, DataType.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for field, dtype in extra.items():
            if dtype == DataType.VARCHAR:
                schema.add_field(field, dtype, max_length=65_535)
            else:
                schema.add_field(field, dtype)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        with self.conn.calls("create collection", name, write=True):
            client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG)
            client.load_collection(name)

    def state(self, name: str) -> MilvusState:
        return MilvusState(self, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _float32(rows: Sequence[Any], dim: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


class MilvusState(StateCollection):
    """The sync engine's companion collection (layout in the module docstring)."""

    def __init__(self, store: MilvusStore, name: str):
        self.store = store
        self.name = name

    @property
    def conn(self) -> _Connection:
        return self.store.conn

    def exists(self) -> bool:
        return self.conn.exists(self.name)

    def _dimension(self) -> int:
        with self.conn.calls("describe state", self.name):
            desc = self.conn.client.describe_collection(self.name)
        return int(next(f for f in desc["fields"] if f["type"] == _FLOAT_VECTOR)["params"]["dim"])

    def create(self, dimension: int) -> None:
        if self.exists():
            if self._dimension() != dimension:
                raise UnsupportedCollection(f"state collection {self.name!r} holds {self._dimension()}-d vectors, "
                                            f"not {dimension}-d")
            return
        self.store._create_keyed(self.name, "id", dimension, {"kind": DataType.VARCHAR, "meta": DataType.VARCHAR,
                                                               "has_vector": DataType.BOOL})

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        records = list(records)
        if not records:
            return
        dim = self._dimension()
        rows = []
        for r in records:
            vec = np.zeros(dim, np.float32) if r.vector is None else as_vectors(
                np.asarray(r.vector).reshape(1, -1), dim, n=1, what=f"state {kind}:{r.key}")[0]
            rows.append({"id": f"{kind}:{r.key}", "vector": vec.tolist(), "kind": kind, "meta": json.dumps(r.meta),
                         "has_vector": r.vector is not None})
        for start in range(0, len(rows), BATCH):
            with self.conn.calls("upsert state", self.name, write=True):
                self.conn.client.upsert(self.name, rows[start : start + BATCH])

    @staticmethod
    def _record(row: Mapping[str, Any]) -> StateRecord:
        key = row["id"].split(":", 1)[1]
        vec = np.asarray(row["vector"], dtype=np.float32) if row["has_vector"] else None
        return StateRecord(key, vec, json.loads(row["meta"]))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        keys = list(keys)
        out: dict[str, StateRecord] = {}
        for start in range(0, len(keys), BATCH):
            ids = [f"{kind}:{k}" for k in keys[start : start + BATCH]]
            with self.conn.calls("get state", self.name):
                rows = self.conn.client.get(self.name, ids=ids, output_fields=["vector", "meta", "has_vector"],
                                            consistency_level=STRONG)
            for row in rows:
                rec = self._record(row)
                out[rec.key] = rec
        return [out[k] for k in keys if k in out]

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        if not self.exists():
            return
        with self.conn.calls("scan state", self.name):
            it = self.conn.client.query_iterator(self.name, batch_size=batch_size, filter=f'kind == "{kind}"',
                                                 output_fields=["vector", "meta", "has_vector"],
                                                 consistency_level=STRONG)
        try:
            while True:
                with self.conn.calls("scan state", self.name):
                    rows = it.next()
                if not rows:
                    return
                yield [self._record(r) for r in rows]
        finally:
            it.close()

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), BATCH):
            with self.conn.calls("delete state", self.name, write=True):
                self.conn.client.delete(self.name, ids=[f"{kind}:{k}" for k in keys[start : start + BATCH]])

    def drop(self) -> None:
        if self.exists():
            with self.conn.calls("drop state", self.name, write=True):
                self.conn.client.drop_collection(self.name)


def create_collection(config: StoreConfig, ids: Sequence[RecordId], vectors: Any, *, metric: str,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      documents: Sequence[str] | None = None) -> None:
    """Create ``config.collection`` (explicit int64 or varchar keys, FLAT index, dynamic fields for
    the payload, a ``document`` VARCHAR) and insert the records (demo, benchmarks)."""
    if config.transport == "local":
        Path(config.location).parent.mkdir(parents=True, exist_ok=True)
        MilvusClient(config.location).close()  # creates the database file
    conn = _Connection(config)
    name = config.collection
    try:
        if conn.exists(name):
            raise UnsupportedCollection(f"collection {name!r} already exists in {conn.where}; not overwriting it")
        ids = check_ids(ids)
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(ids):
            raise InvalidVectors(f"expected {len(ids)} vectors as a 2-d array, got shape {vecs.shape}")
        vecs = as_vectors(vecs, vecs.shape[1], n=len(ids))
        as_int = all(isinstance(i, int) for i in ids)
        schema = conn.client.create_schema(auto_id=False, enable_dynamic_field=True)
        if as_int:
            schema.add_field("id", DataType.INT64, is_primary=True)
        else:
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vecs.shape[1])
        if documents:
            schema.add_field("document", DataType.VARCHAR, max_length=65_535)
        index = conn.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type=METRIC_TO_MILVUS[metric])
        with conn.calls("create_collection", name, write=True):
            conn.client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG)
        for start in range(0, len(ids), 5000):
            rows = []
            for j in range(start, min(start + 5000, len(ids))):
                row = {**(payloads[j] if payloads else {}), "id": ids[j], "vector": vecs[j].tolist()}
                if documents:
                    row["document"] = documents[j]
                rows.append(row)
            with conn.calls("insert", name, write=True):
                conn.client.insert(name, rows)
    finally:
        conn.close()
