"""Milvus connector: Milvus Lite (a local ``.db``) and Milvus servers, through pymilvus' MilvusClient.

URIs::

    milvus:///abs/file.db?collection=docs        Milvus Lite in this process; the ``.db`` must exist
                                                 (pymilvus starts milvus-lite's engine for it)
    milvus:relative/file.db?collection=docs      (relative path)
    milvus+http://host:19530?collection=docs     a Milvus server (``+https`` for TLS)
    options: vector=<FLOAT_VECTOR field> (detected when the collection has exactly one),
             db_name=<database> (default: the server's default database),
             timeout=<seconds> (the deadline of every call: default 60 s on servers, so a stopped
             server cannot hang a run, none on Milvus Lite; the connect timeout is at most 10 s),
             retry_budget=<seconds> (see connectors._retry)

The token comes from ``MILVUS_TOKEN`` (``user:password`` or an API key), or ``secret_env=NAME`` /
``secret_file=PATH``. A server that refuses it (or needs one) raises AuthenticationFailed; one that
cannot be reached raises ConnectionFailed within the connect timeout.

Write path and its traps (why the code looks the way it does)
------------------------------------------------------------
* A default ``upsert`` replaces the whole row: a vector-only upsert is rejected when the
  collection has other fields and, worse, silently wipes the dynamic fields when it has none.
  ``upsert(partial_update=True)`` merges instead, but only on Milvus Lite and servers >= 2.6.2:
  older servers ignore the flag (it is a new protobuf field) and do a plain upsert -- measured on
  Milvus 2.3.5, where it erased every dynamic field of the row. So the write path is chosen from
  the server version (``describe().details["write_path"]``):

  - ``partial_update``: upsert of primary key + vector with ``partial_update=True``;
  - ``rows``: read the full rows (every field, dynamic fields included), replace the vector and
    upsert them. Each row goes back into the partition it was read from (an upsert into the
    default partition would move it). Field types whose values do not round-trip through
    pymilvus rows (float16 / bfloat16 / binary / int8 vectors, geometry, timestamptz, structs)
    are refused with UnsupportedCollection on this path.

* Auto-id collections are refused (UnsupportedCollection): an upsert there generates new primary
  keys (milvus.io upsert docs; milvus #40099), so the ids users and query logs know would vanish.
* Unknown ids are checked first (UnknownIds, nothing written). Every written chunk is read back
  and compared bit for bit (vectors) and, on the rows path, field by field (WriteFailed).
  A concurrent writer changing a row between our read and our upsert loses that change on the
  rows path (a lost update); the partial path does not have this window.
* Every read uses ``consistency_level="Strong"``: the default (Bounded) misses writes made in the
  last moments -- ours (read-back) and the application's (existence check). On a real server a
  Strong read waits for the next time tick (~0.3 s on Milvus 2.3.5), so reads go in large pages.

Reading
-------
``iter_vectors`` pages by primary key: ``pk > <last pk>`` with the query-iterator flags
(``iterator=True``), which makes every page come back in primary-key order from every engine,
within Milvus' 16,384-row window. This is the protocol of pymilvus' ``query_iterator`` (offset
paging breaks past 16,384 rows on a server), done here because pymilvus 3.0.2's iterator pastes a
VARCHAR cursor between quotes without escaping it: a key with a backslash or a quote makes the next
page a parse error, and a key such as ``x\\u00ff`` would silently skip records. Keys here are
escaped, pages are checked to be strictly increasing (a server that broke the order would fail
loudly instead of skipping or repeating records), and only an empty page ends the scan (the
iterator flags let a server return a short page before the end).

Search
------
``search`` filters excluded ids in the engine (``pk not in [...]``) when there are at most
``_FILTER_IDS`` of them. Above that it searches without a filter, drops excluded hits, and for the
queries left short re-searches with a filter made only of the excluded ids seen near the queries
so far (a few per query), until every query has ``k`` results or the collection is exhausted;
should those grow past ``_FILTER_IDS`` the full list is used. Scores: COSINE and IP distances are
similarities already; L2 distances are squared, so the score is minus the distance.

Query log (a sibling collection, written with the native client as easily as by us)
-------------------------------------------------------------------------------
Primary key ``query_id`` (VARCHAR), one FLOAT_VECTOR field (the query embedding; ``vector`` when we
create it, FLAT / IP index), and the entry's fields as dynamic fields: ``relevant_ids`` (list of int
or str ids, mixed allowed), ``grades`` (list of float aligned with them), ``timestamp`` (unix
seconds), ``split`` ("train" | "val" | "test"); absent fields are simply not written. Scalar or JSON
fields of those names, or a JSON field ``fields`` holding them, are read too. Example::

    client.insert("feedback", [{"query_id": "q-17", "vector": qvec, "relevant_ids": [4, 9],
                                "timestamp": time.time()}])

Appending an existing query_id replaces its entry (upsert of the whole row). Limits (measured,
``milvus/log_schema.py``): ``query_id`` at most 2,048 bytes of UTF-8 in the logs we create (the key's
VARCHAR max_length: servers count bytes); an entry's dynamic fields at most 65,536 bytes of JSON
(about 8,000 six-digit int ids without grades). Entries over them are refused before any write, and
a failed append is undone (``_log.write_or_put_back``).

State collection
----------------
Primary key ``id`` = ``"<kind>:<key>"`` (VARCHAR), ``kind`` (VARCHAR), ``meta`` (JSON text in a
VARCHAR, at most 65,535 bytes), ``has_vector`` (BOOL) and ``vector`` (FLOAT_VECTOR, FLAT / IP);
vectors round-trip bit for bit; records without a vector store zeros and read back as None.
"""

from __future__ import annotations

from .._uri import StoreConfig
from .client import METRIC_FROM_MILVUS, METRIC_TO_MILVUS, PARTIAL_UPDATE_SINCE, WRITE_PATHS, engine_version
from .loader import create_collection
from .state import MilvusState
from .store import MilvusStore

__all__ = ["METRIC_FROM_MILVUS", "METRIC_TO_MILVUS", "PARTIAL_UPDATE_SINCE", "WRITE_PATHS", "MilvusState",
           "MilvusStore", "create_collection", "engine_version", "open_store"]


def release_embedded(config: StoreConfig) -> None:
    """Stop this process' Milvus Lite engine of ``config``'s file (``connectors.release_embedded``)."""
    try:
        from milvus_lite import server_manager_instance
    except ImportError:  # no in-process engine to release
        return
    server_manager_instance.release_server(str(config.location))


def open_store(config: StoreConfig) -> MilvusStore:
    """Connect to Milvus as described by ``config`` (the client connects now; collections lazily)."""
    return MilvusStore(config)
