"""Top-k neighbours of a batch of queries over a *view* of a stored collection.

A view is the collection as it is, except that some records are hidden (``exclude``) and some
extra (id, vector) rows are scored instead (``extra``: e.g. the ORIGINAL vectors of records that
hold a nudged one). The sync engine needs "the collection without the records that will move"
(its validation context); ``eval`` needs "the collection as it is" and "the collection as it was".

Two ways to compute one, with the same result up to the database's ANN approximation:

* ``exact``  stream every stored vector once (bounded memory: one batch at a time) and keep a
  running top-k per query for each view, so several views cost one read of the collection;
* ``search`` ask the database's own kNN search with the excluded ids filtered out, and score the
  few ``extra`` rows locally: cost grows with the number of queries, not with the collection.

Record ids are mapped to the int64 ids the core works with by an :class:`IdSpace`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from connectors import CollectionInfo, RecordId, VectorStore

from ..core.context import ValidationContext
from .options import AUTO_EXACT_MAX_FLOATS

#: Ids given to records that no query references (exact mode): they only need to be unique and
#: stable within one run (they break score ties), so they are derived from the stream position.
_ANONYMOUS = 1 << 40

T = TypeVar("T")


class IdSpace:
    """Maps database record ids (int | str) to dense int64 ids and back."""

    def __init__(self, ids: Iterable[RecordId] = ()):
        self._to_int: dict[RecordId, int] = {}
        self._to_id: list[RecordId] = []
        self.add(ids)

    def add(self, ids: Iterable[RecordId]) -> np.ndarray:
        out = []
        for i in ids:
            j = self._to_int.get(i)
            if j is None:
                j = self._to_int[i] = len(self._to_id)
                self._to_id.append(i)
            out.append(j)
        return np.asarray(out, dtype=np.int64)

    def get(self, i: RecordId, default: int = -1) -> int:
        return self._to_int.get(i, default)

    def __contains__(self, i: object) -> bool:
        return i in self._to_int

    def record_id(self, j: int) -> RecordId:
        return self._to_id[j]

    def __len__(self) -> int:
        return len(self._to_id)


@dataclass
class View:
    exclude: set[RecordId] = field(default_factory=set)
    extra_ids: list[RecordId] = field(default_factory=list)
    extra_vectors: np.ndarray | None = None


def similarity_to_dot(metric: str, scores: np.ndarray) -> np.ndarray:
    """Database scores -> q·v̂ for unit queries (cosine: as is; dot: as is for unit records;
    l2: -|q-v|^2 = 2 q·v - 2 for unit q and v)."""
    if metric == "l2":
        return np.where(np.isneginf(scores), scores, (scores + 2.0) / 2.0)
    return scores


def as_dot_space(metric: str, queries: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rewrite (queries, vectors) so that a plain dot product ranks like the collection's metric,
    on the same scale as :func:`similarity_to_dot` (queries are unit-norm):

    cosine: normalise the vectors; dot: unchanged; l2: append a column so that
    q'·v' = q·v - (|v|^2 - 1)/2 = (-|q-v|^2 + 2)/2.
    """
    if metric == "cosine":
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return queries, vectors / np.where(norms == 0, 1.0, norms)
    if metric == "l2":
        sq = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
        bias = (-(sq - 1.0) / 2.0).astype(vectors.dtype)[:, None]
        ones = np.ones((len(queries), 1), dtype=queries.dtype)
        return np.hstack([queries, ones]), np.hstack([vectors, bias])
    return queries, vectors


def context_mode(info: CollectionInfo, requested: str) -> str:
    """``exact`` or ``search``: ``auto`` streams a collection of up to AUTO_EXACT_MAX_FLOATS stored
    floats and asks the database's kNN above that, so huge collections are never pulled."""
    if requested != "auto":
        return requested
    return "exact" if info.count * info.dimension <= AUTO_EXACT_MAX_FLOATS else "search"


def topk(store: VectorStore, queries: np.ndarray, k: int, views: Sequence[View], ids: IdSpace, metric: str, *,
         mode: str, batch_size: int, on_batch: Callable[[int], None] | None = None) -> list[ValidationContext]:
    """A top-k context per view: ``exact`` streams the collection once for all views (``on_batch``
    after each page, with its size), ``search`` asks the database's kNN per view (``on_batch``
    after each batch of queries)."""
    if mode == "exact":
        return exact_topk(store, queries, k, views, ids, metric, batch_size=batch_size, on_batch=on_batch)
    return [search_topk(store, queries, k, view, ids, metric, on_batch=on_batch) for view in views]


def exact_topk(
    store: VectorStore,
    queries: np.ndarray,
    k: int,
    views: Sequence[View],
    ids: IdSpace,
    metric: str,
    *,
    batch_size: int = 2000,
    on_batch: Callable[[int], None] | None = None,
) -> list[ValidationContext]:
    """One pass over the collection; a top-k context per view."""
    contexts = [_extra_context(queries, k, v, ids, metric) for v in views]
    position = 0
    for rec_ids, vectors in prefetched(store.iter_vectors(batch_size=batch_size)):
        ints = np.array([ids.get(i, _ANONYMOUS + position + n) for n, i in enumerate(rec_ids)], dtype=np.int64)
        position += len(rec_ids)
        for n, view in enumerate(views):
            if view.exclude:
                keep = np.fromiter((i not in view.exclude for i in rec_ids), dtype=bool, count=len(rec_ids))
                if not keep.any():
                    continue
                block_ids, block = ints[keep], vectors[keep]
            else:
                block_ids, block = ints, vectors
            q, block = as_dot_space(metric, queries, block)
            ctx = ValidationContext.from_corpus(q, block, k, ids=block_ids, normalize=False)
            contexts[n] = ctx if contexts[n] is None else contexts[n].merge(ctx)
        if on_batch:
            on_batch(len(rec_ids))
    return [c if c is not None else _empty(len(queries), k) for c in contexts]


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a worker thread up to ``depth`` ahead, so that fetching the next page
    from the database overlaps scoring this one (matmul releases the GIL; database clients wait on
    sockets or native code). Errors are re-raised here; closing this generator stops the worker."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator must be closed by the thread that ran it

    worker = threading.Thread(target=work, name="nudge-sync-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()


def search_topk(
    store: VectorStore,
    queries: np.ndarray,
    k: int,
    view: View,
    ids: IdSpace,
    metric: str,
    *,
    query_batch: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> ValidationContext:
    """The database's kNN with exclusions, merged with locally scored extra rows."""
    parts_ids, parts_scores = [], []
    for start in range(0, len(queries), query_batch):
        res = store.search(queries[start : start + query_batch], k, exclude=view.exclude)
        block_ids = np.full(res.scores.shape, -1, dtype=np.int64)
        for qi, row in enumerate(res.ids):
            block_ids[qi, : len(row)] = ids.add(row)
        parts_ids.append(block_ids)
        parts_scores.append(similarity_to_dot(metric, np.asarray(res.scores, dtype=np.float64)))
        if on_batch:
            on_batch(min(query_batch, len(queries) - start))
    if parts_ids:
        ctx = ValidationContext(np.concatenate(parts_ids), np.concatenate(parts_scores))
    else:
        ctx = _empty(0, k)
    extra = _extra_context(queries, k, view, ids, metric)
    return ctx if extra is None else ctx.merge(extra)


def _extra_context(queries: np.ndarray, k: int, view: View, ids: IdSpace, metric: str) -> ValidationContext | None:
    if not view.extra_ids:
        return None
    q, vectors = as_dot_space(metric, queries, np.asarray(view.extra_vectors, dtype=np.float32))
    return ValidationContext.from_corpus(q, vectors, k, ids=ids.add(view.extra_ids), normalize=False)


def _empty(n: int, k: int) -> ValidationContext:
    return ValidationContext(np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf))
