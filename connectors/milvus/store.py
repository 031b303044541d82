"""The Milvus :class:`VectorStore`: describe, read and write (vectors only) one collection."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from typing import Any

import numpy as np
from pymilvus import MilvusClient

from .._arrays import chunks, float32_rows
from .._base import (
    CollectionInfo,
    RecordId,
    VectorStore,
    as_vectors,
    check_batch_size,
    check_ids,
    check_update_ids,
    dedupe,
)
from .._errors import (
    CollectionNotFound,
    ConnectorError,
    InvalidURI,
    UnknownIds,
    UnsupportedCollection,
    WriteFailed,
)
from .._uri import StoreConfig
from .client import (
    Connection,
    MAX_WINDOW,
    METRIC_FROM_MILVUS,
    PARTIAL_UPDATE_SINCE,
    STRONG,
    WRITE_PATHS,
    _CLIENT_VERSION,
    _ID_CHUNK,
    _ROWS_PER_UPSERT,
    _released,
    check_name,
)
from .layout import Layout, _analyse, _fingerprint, _increasing, _rows_per_page, in_expression, literal
from .log import MilvusQueryLog
from .search import MilvusSearch
from .state import MilvusState



logger = logging.getLogger(__name__)
class MilvusStore(MilvusSearch, MilvusQueryLog, VectorStore):
    """One Milvus collection (see the module docstring for the write path and its guarantees).

    ``write_path`` forces ``"partial_update"`` or ``"rows"`` instead of choosing by server version
    (tests exercise both on Milvus Lite; a proxy that hides the engine version may need it).
    """

    def __init__(self, config: StoreConfig, *, write_path: str | None = None):
        check_name(config.collection)
        if write_path is not None and write_path not in WRITE_PATHS:
            raise InvalidURI(f"write_path {write_path!r} is not one of {WRITE_PATHS}")
        self.config = config
        self.name = config.collection
        self._forced_path = write_path
        self._conn: Connection | None = Connection(config)
        self._layout: Layout | None = None
        #: collections this store saw loaded (see _on_loaded)
        self._loaded: set[str] = set()

    # Plumbing --------------------------------------------------------------------------------

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise ConnectorError(f"the Milvus store for {self.name!r} is closed")
        return self._conn

    @property
    def client(self) -> MilvusClient:
        return self.conn.client

    @contextmanager
    def _calls(self, what: str, *, write: bool = False) -> Iterator[None]:
        try:
            with self.conn.calls(what, self.name, write=write):
                yield
        except CollectionNotFound:
            self._layout = None  # dropped (or re-created) meanwhile
            raise

    @property
    def write_path(self) -> str:
        return self._forced_path or self.conn.default_write_path()

    def layout(self) -> Layout:
        """Schema, vector field, metric and partitions of the collection; loads it if needed."""
        if self._layout is None:
            self._layout = self._read_layout()
        return self._layout

    def _read_layout(self) -> Layout:
        if not self.conn.exists(self.name):
            raise self.conn.not_found(self.name)
        t = self.conn.timeout
        with self._calls("describe_collection"):
            desc = self.client.describe_collection(self.name, timeout=t)
        pk, id_type, vec, others = _analyse(self.name, desc, self.config.option("vector"))
        metric, index_type = self._index_of(vec["name"])
        with self._calls("list_partitions"):
            partitions = list(self.client.list_partitions(self.name, timeout=t))
        keyed = any(f.get("is_partition_key") for f in desc["fields"])
        self.ensure_loaded(self.name)
        return Layout(
            pk=pk, id_type=id_type, vector=vec["name"], dim=int(vec["params"]["dim"]), metric=metric,
            index_type=index_type, dynamic=bool(desc.get("enable_dynamic_field")), fields=list(desc["fields"]),
            partitions=partitions if len(partitions) > 1 and not keyed else None, other_vectors=others,
        )

    def _index_of(self, vector: str) -> tuple[str, str]:
        t = self.conn.timeout
        with self._calls("list_indexes"):
            names = list(self.client.list_indexes(self.name, field_name=vector, timeout=t))
        infos = []
        for index in names:
            with self._calls("describe_index"):
                infos.append(self.client.describe_index(self.name, index, timeout=t) or {})
        infos = [i for i in infos if i.get("field_name", vector) == vector]
        if not infos:
            raise UnsupportedCollection(
                f"Milvus collection {self.name!r}: vector field {vector!r} has no index, so Milvus can neither load "
                "nor search it and its metric is unknown; create one (e.g. index_type AUTOINDEX or FLAT with "
                "metric_type COSINE, IP or L2)")
        metric = str(infos[0].get("metric_type", "")).upper()
        if metric not in METRIC_FROM_MILVUS:
            raise UnsupportedCollection(f"Milvus collection {self.name!r}: the index on {vector!r} uses metric "
                                        f"{metric or '?'}; nudge-sync supports COSINE, IP and L2")
        return metric, str(infos[0].get("index_type", ""))

    def ensure_loaded(self, name: str) -> None:
        """Queries and searches need a loaded collection: a collection another process created and
        closed is released (Milvus Lite releases everything when its process ends; a server may
        release a collection at any time)."""
        with self.conn.calls("get_load_state", name):
            state = self.client.get_load_state(name, timeout=self.conn.timeout)
        if str(getattr(state.get("state"), "name", state.get("state"))) != "Loaded":
            with self.conn.calls("load_collection", name):
                self.client.load_collection(name, timeout=self.conn.timeout)
        self._loaded.add(name)

    def _on_loaded(self, name: str, what: str, call: Callable[[], Any]) -> Any:
        """``call()`` (a query or search of ``name``) on a loaded collection: loaded before this
        store's first read of it, and loaded again (then retried once) if it was released since."""
        if name not in self._loaded:
            self.ensure_loaded(name)
        try:
            with self.conn.calls(what, name):
                return call()
        except ConnectorError as exc:
            if not _released(exc):
                raise
        self._loaded.discard(name)
        self.ensure_loaded(name)
        with self.conn.calls(what, name):
            return call()

    def query_rows(self, name: str, expr: str, fields: list[str], *, what: str = "query",
               partition: str | None = None, **extra: Any) -> list[dict[str, Any]]:
        return list(self._on_loaded(name, what, lambda: self.client.query(
            name, filter=expr, output_fields=fields, consistency_level=STRONG, timeout=self.conn.timeout,
            partition_names=[partition] if partition else None, **extra)))

    def page_rows(self, name: str, pk: str, fields: list[str], page: int, expr: str = "",
               what: str = "read") -> Iterator[list[dict[str, Any]]]:
        """Every row of ``name`` matching ``expr`` once, in pages ordered by primary key (see the
        module docstring: pymilvus' query_iterator protocol with escaped keys)."""
        page = max(1, min(page, MAX_WINDOW))
        last: RecordId | None = None
        while True:
            parts = [] if last is None else [f"{pk} > {literal(last)}"]
            if expr:
                parts.append(f"({expr})")
            rows = self.query_rows(name, " and ".join(parts), fields, what=what, limit=page,
                               iterator="True", reduce_stop_for_best="True")
            keys = [r[pk] for r in rows]
            if not _increasing(last, keys):
                raise ConnectorError(f"{what} of Milvus collection {name!r}: the engine returned a page out of "
                                     "primary-key order, so paging could skip or repeat records; nothing was written")
            if not rows:  # a short page is not the end: with reduce_stop_for_best a server may cut pages early
                return
            yield rows
            last = keys[-1]

    def _fetch(self, ids: Sequence[RecordId], fields: list[str], what: str,
               partition: str | None = None) -> dict[RecordId, dict[str, Any]]:
        """Rows by primary key (unknown ids absent), in ``pk in [...]`` chunks."""
        lay = self.layout()
        out: dict[RecordId, dict[str, Any]] = {}
        for part in chunks(len(ids), _ID_CHUNK):
            rows = self.query_rows(self.name, in_expression(lay.pk, ids[part]), fields, what=what, partition=partition)
            out.update((r[lay.pk], r) for r in rows)
        return out

    # VectorStore -----------------------------------------------------------------------------

    def describe(self) -> CollectionInfo:
        lay = self.layout()
        count = self.count_rows(self.name)
        path = self.write_path
        details: dict[str, Any] = {
            "primary_key": lay.pk,
            "metric_type": lay.metric,
            "index_type": lay.index_type,
            "write_path": path,
            "write": ("upsert(partial_update=True) of primary key + vector" if path == "partial_update"
                      else "read full rows, replace the vector, upsert them into their partition"),
            "consistency_level": STRONG,
            "dynamic_fields": lay.dynamic,
            "other_vector_fields": lay.other_vectors,
            "partitions": lay.partitions or ["(default / partition key)"],
            "vectors_round_trip": "exact",  # FLOAT_VECTOR values are stored as written, any metric
            "client_version": _CLIENT_VERSION,
            "db_name": self.conn.db_name or "default",
        }
        if path == "rows" and lay.rows_path_blockers():
            details["rows_path_blockers"] = lay.rows_path_blockers()
        return CollectionInfo(
            backend="milvus", collection=self.name, dimension=lay.dim, metric=METRIC_FROM_MILVUS[lay.metric],
            id_type=lay.id_type, vector_name=lay.vector, count=count, server_version=self.conn.version(),
            details=details,
        )

    def count_rows(self, name: str) -> int:
        rows = self.query_rows(name, "", ["count(*)"], what="count")
        return int(rows[0]["count(*)"]) if rows else 0

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        batch_size = check_batch_size(batch_size)
        lay = self.layout()
        # Large pages: a Strong read costs a time tick on a server, whatever its size.
        page = max(min(batch_size, MAX_WINDOW), _rows_per_page(lay.dim))
        for rows in self.page_rows(self.name, lay.pk, [lay.pk, lay.vector], page, what="read vectors"):
            for part in chunks(len(rows), batch_size):
                chunk = rows[part]
                yield [r[lay.pk] for r in chunk], float32_rows([r[lay.vector] for r in chunk], lay.dim)

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        lay = self.layout()
        wanted = dedupe(check_ids(ids))
        got = self._fetch(lay.valid(wanted), [lay.pk, lay.vector], "get vectors")
        found = [i for i in wanted if i in got]
        missing = [i for i in wanted if i not in got]
        return found, float32_rows([got[i][lay.vector] for i in found], lay.dim), missing

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray, *, verify: bool = True) -> int:
        lay = self.layout()
        ids = check_update_ids(ids, self.name)
        vecs = as_vectors(vectors, lay.dim, n=len(ids))
        if not ids:
            return 0
        path = self.write_path
        if path == "rows" and lay.rows_path_blockers():
            raise UnsupportedCollection(
                f"Milvus collection {self.name!r} on {self.conn.where} ({self.conn.version()}) needs the full-row "
                f"write path (upsert without partial_update), which cannot carry back {lay.rows_path_blockers()} "
                f"unchanged; a Milvus server >= {'.'.join(map(str, PARTIAL_UPDATE_SINCE))} writes vectors alone")
        placement = self._locate(ids)
        unknown = [i for i in ids if i not in placement]
        if unknown:
            raise UnknownIds(self.name, unknown)
        groups: dict[str | None, list[int]] = {}
        for j, i in enumerate(ids):
            groups.setdefault(placement[i], []).append(j)
        # Write every chunk, then verify everything in large read-backs: on a server each Strong
        # read waits for a time tick, so reading back per chunk would double the cost of a write.
        step = _ROWS_PER_UPSERT if path == "rows" else max(1, min(_ID_CHUNK, _rows_per_page(lay.dim)))
        prints: dict[RecordId, str] = {}
        for partition, positions in groups.items():
            for part in chunks(len(positions), step):
                sel = positions[part]
                chunk_ids, chunk_vecs = [ids[j] for j in sel], vecs[sel]
                if path == "partial_update":
                    rows = [{lay.pk: i, lay.vector: v} for i, v in zip(chunk_ids, chunk_vecs.tolist())]
                    self._upsert(rows, partition, partial=True)
                else:
                    prints.update(self._rewrite_rows(chunk_ids, chunk_vecs, partition))
        if verify or path == "rows":  # the full-row rewrite always re-checks the fields it carried back
            for partition, positions in groups.items():
                self._verify([ids[j] for j in positions], vecs[positions], partition, prints if path == "rows" else None)
        logger.info("%r: %d vector(s) written by %s%s", self.name, len(ids), path, " and read back" if verify else "")
        return len(ids)

    def _locate(self, ids: list[RecordId]) -> dict[RecordId, str | None]:
        """Existence check: id -> its manual partition (None when partitions do not matter)."""
        lay = self.layout()
        keys = lay.valid(ids)
        if lay.partitions is None:
            return dict.fromkeys(self._fetch(keys, [lay.pk], "existence check"))
        found: dict[RecordId, str | None] = {}
        for partition in lay.partitions:
            for key in self._fetch(keys, [lay.pk], "existence check", partition=partition):
                found.setdefault(key, partition)
        return found

    def _rewrite_rows(self, ids: list[RecordId], vecs: np.ndarray, partition: str | None) -> dict[RecordId, str]:
        """The rows path for one chunk: read the full rows, replace the vector, upsert them back.
        Returns a fingerprint of every other field per id, for the read-back check."""
        lay = self.layout()
        current = self._fetch(ids, ["*"], "read full rows", partition=partition)
        vanished = [i for i in ids if i not in current]
        if vanished:
            raise WriteFailed(f"{len(vanished)} record(s) of {self.name!r} vanished before the update (deleted "
                              f"concurrently?): {vanished[:10]}; nothing was written for them")
        skip = lay.function_outputs()  # the server computes those from their inputs
        rows = []
        for i, v in zip(ids, vecs.tolist()):
            row = {k: val for k, val in current[i].items() if k not in skip}
            row[lay.vector] = v
            rows.append(row)
        self._upsert(rows, partition, partial=False)
        return {i: _fingerprint(current[i], lay.vector, skip) for i in ids}

    def _upsert(self, rows: list[dict[str, Any]], partition: str | None, *, partial: bool) -> None:
        extra = {"partial_update": True} if partial else {}
        with self._calls("upsert", write=True):
            res = self.client.upsert(self.name, rows, partition_name=partition or "", timeout=self.conn.timeout,
                                     **extra)
        count = res.get("upsert_count") if isinstance(res, Mapping) else None
        if count is not None and int(count) != len(rows):
            raise WriteFailed(f"upsert into {self.name!r} wrote {count} of {len(rows)} rows")

    def _verify(self, ids: list[RecordId], vecs: np.ndarray, partition: str | None,
                prints: Mapping[RecordId, str] | None) -> None:
        """Read the written records back (Strong): each present, holding exactly the written vector
        and, after a full-row rewrite, every other field as it was read (``prints``)."""
        lay = self.layout()
        fields = ["*"] if prints is not None else [lay.pk, lay.vector]
        back = self._fetch(ids, fields, "read-back", partition=partition)
        bad = [i for i, v in zip(ids, vecs) if i not in back
               or not np.array_equal(np.asarray(back[i][lay.vector], dtype=np.float32), v)]
        if bad:
            raise WriteFailed(f"{len(bad)} record(s) of {self.name!r} do not hold the written vector after the upsert "
                              f"(deleted or changed concurrently?): {bad[:10]}")
        if prints is not None:
            skip = lay.function_outputs()
            changed = [i for i in ids if _fingerprint(back[i], lay.vector, skip) != prints[i]]
            if changed:
                raise WriteFailed(f"{len(changed)} record(s) of {self.name!r} read back with other fields changed "
                                  f"after the full-row upsert (changed concurrently?): {changed[:10]}")

    # State -----------------------------------------------------------------------------------

    def state(self, name: str) -> MilvusState:
        check_name(name, "state collection")
        return MilvusState(self, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._layout = None
        if conn is not None:
            conn.close()
