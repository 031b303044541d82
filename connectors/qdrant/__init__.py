"""Qdrant connector: local mode (a directory or ``:memory:``) and servers, through qdrant-client.

URIs::

    qdrant:///abs/dir?collection=docs            QdrantClient(path=/abs/dir); the directory must
    qdrant:relative/dir?collection=docs          already hold a Qdrant local database
    qdrant::memory:?collection=docs              QdrantClient(":memory:"), shared in this process
    qdrant+http://host:6333?collection=docs      a server (``+https`` for TLS; a path prefix such as
                                                 ``https://h/qdrant`` is kept; without a port the
                                                 client uses 6333, also for https)
    options: vector=<name> (named vector), timeout=<seconds> (default 10), retry_budget=<seconds>
             (see connectors._retry), version_field=<payload field> (conditional writes, below),
             prefer_grpc=true|false
             (gRPC goes to port 6334 of the URI's host, qdrant-client's default: the URI's port
             is the REST port, still used for a few calls)

The API key comes from ``QDRANT_API_KEY`` (or ``secret_env=NAME`` / ``secret_file=PATH``) and is
sent to servers only (local mode has no authentication and ignores it). Errors never contain it.

Write path and its traps (why the code looks the way it does)
------------------------------------------------------------
* Vectors are written ONLY with ``update_vectors(points=[PointVectors(id, vector)], wait=True)``,
  which replaces the one named vector and keeps the payload and every other named vector.
  ``upsert`` replaces the whole point: a bare-vector upsert silently wipes the payload (PEERS.md),
  so it is never used on user collections (only on our own log and state collections).
* Unknown ids: the server writes every other point of the batch and then answers 404 for the first
  missing one (local mode does the same, raising KeyError), so existence is checked first with
  ``retrieve`` (UnknownIds, nothing written). Every batch is then read back and compared, which also
  catches a record deleted by someone else between the check and the write (WriteFailed).
* Ids are unsigned 64-bit ints or UUIDs. A string that is not a UUID (or a negative int) can never
  be a Qdrant id: ``get_vectors`` reports it missing, ``update_vectors`` refuses it up front with
  InvalidVectors naming it. UUIDs are matched in any spelling Qdrant accepts (upper case, no
  dashes, braces), returned as the caller spelled them by ``get_vectors`` and in Qdrant's canonical
  lowercase form by ``iter_vectors`` / ``search``.
* Cosine collections store ``v / |v|`` computed in float32, by the server and by local mode alike.
  The read-back check compares with our own float32 normalisation at 1e-6 (the two may differ by
  one float32 ulp, so a cosine write is not bit-exact, and writing a stored vector back may move
  its last bit); Dot and Euclid collections round-trip bit-exactly and are compared exactly.
  Float16 vector storage (``datatype=float16``) is compared after rounding to float16; uint8 (and
  other quantised datatypes) are refused: they cannot hold a nudged vector.
  ``describe().details["vectors_round_trip"]`` says which case applies.
* Scores are "higher is better": Cosine and Dot scores are Qdrant's own; Euclid returns the
  distance, converted to ``-distance**2`` (the squared form the other backends use).
* Exclusion search: servers get one ``query_batch_points`` call per batch of queries with a
  ``must_not: has_id`` filter (evaluated against the server's id index). Local mode evaluates that
  filter in Python for every point and query (measured: 0.26 s per query for 100 excluded ids out
  of 20k, 2 s for 5,000), so there it over-fetches instead (k + excluded, widened only for queries
  that still lack k results) and drops excluded ids: same results, local search being exact.
* Reading: ``scroll(with_vectors=..., limit=batch_size)`` following ``next_page_offset`` (ids in
  order, each exactly once; memory bounded by the batch size).
* Local mode: a directory can be open by one ``QdrantClient`` at a time (a file lock; a second
  client in the same process is refused too). Clients are therefore shared by path within the
  process and reference-counted (:func:`local_client`): the log and state collections, a test
  harness and any number of stores use the same one. Another process holding the directory is
  reported as ConnectionFailed. Local mode persists every point with its own SQLite commit: it
  writes about 100-2,500 points/s depending on the disk's fsync cost (tmpfs is fastest).

Conditional writes (URI option ``version_field=<payload field>``)
-----------------------------------------------------------------
An application that changes a payload field (say ``updated_at``) on every write of a point's
vector can let nudge-sync write only points it has not touched since nudge-sync read them:
``get_versioned`` reads each point's vector and that field in one ``retrieve`` call (one
snapshot), and ``update_vectors_if`` sends ``update_vectors(..., update_filter=...)`` so Qdrant
writes a point only while its field still holds the value read. A point whose version moved is
silently not written; the caller reads the batch back and sees the other writer's vector.
Batches with few distinct versions (every point written by one import, say) get one call per
version (``must: field == value``); others calls of 32 points with a ``should`` of ``(has_id,
field == value)`` pairs (local mode checks every point of a call against every pair). Version values must be scalars (str, int, float, bool; floats match by range
``[v, v]``); a point without the field is written only while it still has none (``is_empty``).
``describe().conditional_writes`` says whether the option is on.

Query log (a sibling collection, as easy to fill with the native client as with us)
-----------------------------------------------------------------------------------
One point per labelled query: point id = UUID5 of the query id (Qdrant ids cannot be arbitrary
strings); vector = the query embedding (unnamed, Dot, so it round-trips exactly); payload
``{"query_id", "relevant_ids", "grades", "timestamp", "split"}`` (``connectors/_log.py``). Example:
``client.upsert("docs_log", [PointStruct(id=str(uuid4()), vector=qvec, payload={"query_id": "q-17",
"relevant_ids": [4, 9], "timestamp": time.time()})])``. A log created by hand may use a named
vector (the single one, else the URI's ``vector=`` name) and any distance.

State collection
----------------
Point id = UUID5 of ``"<kind>:<key>"`` (kinds contain no ``:``); payload ``{"kind", "key", "meta":
JSON text, "has_vector"}``; unnamed Dot vectors (never normalised) so they round-trip bit-exactly;
records without a vector store zeros and read back as ``None``. Servers get a keyword payload index
on ``kind`` (local mode ignores payload indexes).
"""


from __future__ import annotations

from .._uri import StoreConfig
from .client import DISTANCE_TO_METRIC, METRIC_TO_DISTANCE, local_client
from .loader import create_collection
from .state import QdrantState
from .store import QdrantStore

__all__ = ["DISTANCE_TO_METRIC", "METRIC_TO_DISTANCE", "QdrantState", "QdrantStore", "create_collection",
           "local_client", "open_store"]


def open_store(config: StoreConfig) -> QdrantStore:
    """Open ``config.collection`` (local clients open now, servers are contacted on first use)."""
    return QdrantStore(config)
