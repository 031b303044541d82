"""Chroma connector: a persistent directory (``chromadb.PersistentClient``) or a server (``chroma run``).

URIs::

    chroma:///abs/dir?collection=docs                 PersistentClient(path=/abs/dir); the directory
                                                      must already hold a Chroma database
    chroma+http://host:8000?collection=docs           HttpClient (``+https`` for TLS; a path prefix
                                                      such as ``https://h/chroma`` is kept)
    options: tenant, database (default_tenant / default_database), timeout (seconds per request;
             default 60 on servers, so a stopped server cannot hang a run), retry_budget (seconds,
             see connectors._retry), auth = bearer (default) | x-chroma-token | basic

Credentials come from ``CHROMA_AUTH_TOKEN`` (or ``secret_env=NAME`` / ``secret_file=PATH``) and
are sent on every request: ``auth=bearer`` -> ``Authorization: Bearer <secret>``,
``auth=x-chroma-token`` -> ``X-Chroma-Token: <secret>``, ``auth=basic`` -> ``Authorization: Basic
base64(<secret>)`` with the secret ``user:password`` (or the password alone when the URI carries the
user: ``chroma+https://alice@host``). Note: the ``chroma run`` server of chromadb 1.x enforces no
authentication at all (its CLI wires a no-op authenticator; ``CHROMA_SERVER_AUTHN_*`` only configured
the pre-1.0 Python server), so credentials matter only behind an auth proxy or on Chroma Cloud.

Write path and its traps (why the code looks the way it does)
------------------------------------------------------------
* Vectors are written ONLY with ``collection.update(ids=..., embeddings=...)``. ``documents=``,
  ``metadatas=``, ``images=`` and ``uris=`` are never passed: "If documents are supplied without
  corresponding embeddings, the embeddings will be recomputed with the collection's embedding
  function" (Chroma docs, update-data) -- the hughpyle/keep v0.56.1 incident, where a
  ``documents=``-only update silently replaced 768-d vectors by 384-d MiniLM ones. Collections are
  opened with ``embedding_function=None``, but that alone is NOT a guarantee: chromadb rebuilds the
  embedding function persisted in the collection's configuration/schema and would still call it.
  The guarantee is that every write carries ``embeddings`` and every query ``query_embeddings``, so
  the client never reaches its embedding step (tests/contract/test_chroma_specific.py proves it with
  a tripwire embedding function).
* ``update`` silently ignores unknown ids ("Unknown ids are logged and ignored") and ``get(ids=)``
  silently drops them and returns rows in storage order, so existence is checked first (UnknownIds,
  nothing written), and every written chunk is read back and compared bit-exactly (WriteFailed),
  which also catches a record deleted by someone else between the check and the write.
* Batches are capped by the server (``client.get_max_batch_size()``, 5,461 on our builds; chroma
  #1049 #1079 #1298 #3812) and an HTTP body by ``max_payload_size_bytes`` (40 MiB by default), so
  writes are chunked by both. Throughput barely depends on the chunk size (HNSW updates dominate:
  ~300 vectors/s at 384-d, ~5,000/s at 16-d on our machines), so the largest allowed chunk is used.
* Chroma has no "id not in" filter for kNN queries: exclusion search over-fetches
  (k + excluded ids, bounded by the collection size), drops excluded ids, and only re-queries, with a
  growing window, the queries that still lack k results; queries go in batches bounded by rows.
* Metric: ``configuration["hnsw"|"spann"]["space"]`` (1.x), else the schema's vector index, else
  legacy ``metadata["hnsw:space"]``, else Chroma's default ``l2``. Chroma returns DISTANCES:
  cosine -> 1 - d (cosine similarity), ip -> 1 - d (inner product), l2 -> -d (hnswlib's l2 is the
  squared distance already). Cosine collections keep the vectors' norms but hand back a copy about
  one float32 ulp (of the norm) off what was written, and writing that copy back drifts again: the
  read-back check is tolerant there (1e-6 x norm) and ``describe().details["vectors_round_trip"]``
  says so; ip/l2 collections round-trip bit-exactly.
* Ids are always ``str`` (``id_type="str"``); an int id can never exist in Chroma.
* Reading: ``get(limit, offset, include=["embeddings"])`` pages in storage order, which updates and
  upserts keep and new records extend. A delete before the cursor would shift the pages (one record
  skipped), so each page re-reads the last id of the previous one and the scan fails loudly if it
  moved instead of silently skipping or repeating a record. Memory is bounded by ``batch_size``.
* The HNSW index grows with every update (deletes/updates only mark elements, chroma #2594 #2963;
  hnswlib #303: an update is "several times more expensive than adding"); see the README caveats.

Query log (a sibling collection written with the native client as easily as by us)
-------------------------------------------------------------------------------
One record per labelled query: record id = ``query_id``; embedding = the query vector; metadata:

* ``relevant_ids``: list of str (or of int) -- the ids of the relevant records (a single id may be
  given as a plain str/int). Lists of mixed str/int ids, and entries whose ids and grades together
  pass :data:`LIST_ELEMENTS` (4,096) elements, are stored as JSON text in ``relevant_ids_json`` and
  ``grades_json`` instead, which then win: Chroma lists must hold one type, and a record with more
  than 5,461 list elements is accepted by ``upsert`` and then makes the whole collection unreadable
  (measured on chromadb 1.5.9). An entry's metadata may take at most 16 MiB as JSON
  (``_log.MAX_ENTRY_BYTES``); requests are split to stay under a server's 40 MiB body limit.
* ``grades``: list of float aligned with ``relevant_ids`` (absent = all 1).
* ``timestamp``: float unix seconds;  ``split``: "train" | "val" | "test" (absent = hash split).

Example (native client): ``log.upsert(ids=["q-17"], embeddings=[qvec], metadatas=[{"relevant_ids":
["doc-4", "doc-9"], "timestamp": time.time()}])``. Appending an existing query_id replaces it.
We write all six fields, ``None`` for absent ones, because Chroma merges metadata on upsert and
because of chroma#7594 (``delete_collection`` leaves list-valued metadata on disk, and new records
that reuse the internal row ids inherit it); applications should do the same.

State collection
----------------
Record id ``"<kind>:<key>"``; metadata ``{"kind", "key", "meta": JSON text, "has_vector": bool}``;
space ``ip`` (never normalised) so vectors round-trip bit-exactly; records without a vector store
zeros and read back as ``None``. The collection metadata records ``nudge_sync_state`` and its
``dimension``.
"""

from __future__ import annotations

from .._uri import StoreConfig
from .client import AUTH_MODES, SPACE_TO_METRIC, auth_headers
from .loader import create_collection
from .state import ChromaState
from .store import ChromaStore

__all__ = ["AUTH_MODES", "SPACE_TO_METRIC", "ChromaState", "ChromaStore", "auth_headers", "create_collection",
           "open_store"]


def open_store(config: StoreConfig) -> ChromaStore:
    """Connect to Chroma as described by ``config`` (the client connects now; collections lazily)."""
    return ChromaStore(config)
