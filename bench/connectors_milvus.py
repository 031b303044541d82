"""Milvus connector benchmark: our connector against the raw pymilvus client, same run, same data.

For each harness (``milvus-lite``: a Milvus Lite ``.db`` in this process; ``milvus-2.3.5``: the real
Milvus 2.3.5 standalone of PyPI ``milvus``, started on loopback ports; ``milvus-lite-server`` on
request) it loads ``n`` random vectors with the raw client, then times

* ``read_all``: every (id, vector) as float32 numpy -- ours via ``iter_vectors`` (primary-key pages
  with escaped cursors and an order check), raw via ``query_iterator`` with the same page size and
  the same Strong consistency;
* ``update``: ``n_update`` vectors -- ours via ``update_vectors`` (existence check, the engine's
  write path, read-back verification) against two raw baselines doing that engine's vector-only
  write by hand: ``upsert(partial_update=True)`` of pk + vector on Milvus Lite, and on Milvus 2.3.5
  (no partial update) read the full rows, replace the vector, upsert them.

  - ``raw_checked_s``: the raw client doing the same work as ours: existence query, the write,
    then a Strong read-back of every written vector (and, for full rows, every field) compared in
    Python. ``ratio`` = ours / raw_checked is the connector's own overhead (target <= 1.2).
  - ``raw_s``: the bare write, no checks. ``ratio_unchecked`` = ours / raw is the price of the
    checks themselves: on Milvus Lite reading 384-d vectors back costs about as much as writing
    them, and on a server every Strong read waits for a time tick (~0.3 s on 2.3.5).

  All sides use the same chunk sizes and update disjoint id sets of the same size, in the order
  raw, checked, ours, ours, checked, raw (half the vectors each time) so none benefits from
  running first.

Run: ``python -m bench.connectors_milvus [n] [dim] [harness ...]`` (defaults 100,000 x 384,
harnesses milvus-lite and milvus-2.3.5). Prints a table and JSON rows and writes
``bench/results/connectors_milvus.md``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

import connectors
from bench._workdir import workdir_or_temporary
from connectors import milvus as milvus_connector
from tests.backends.milvus import (
    start_milvus_lite_server,
    start_milvus_server,
    stop_server,
)

NAME = "bench_milvus"
RESULTS = Path(__file__).resolve().parent / "results" / "connectors_milvus.md"
HARNESSES = ("milvus-lite", "milvus-2.3.5")


def _load(client: MilvusClient, ids: list[int], vectors: np.ndarray) -> None:
    if client.has_collection(NAME):
        client.drop_collection(NAME)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection(NAME, schema=schema, index_params=index, consistency_level="Strong")
    for s in range(0, len(ids), 2000):
        client.insert(NAME, [{"id": i, "vector": v, "title": f"record {i}", "n": i}
                             for i, v in zip(ids[s:s + 2000], vectors[s:s + 2000].tolist())])


def _raw_read(client: MilvusClient, page: int) -> int:
    it = client.query_iterator(NAME, batch_size=page, output_fields=["vector"], consistency_level="Strong")
    seen = 0
    try:
        while rows := it.next():
            vecs = np.asarray([r["vector"] for r in rows], dtype=np.float32)
            seen += vecs.shape[0]
    finally:
        it.close()
    return seen


def _raw_update(client: MilvusClient, ids: list[int], vectors: np.ndarray, partial: bool,
                step: int) -> dict[int, dict[str, Any]]:
    """The bare vector-only write; returns the full rows it read (full-row path) for a later check."""
    before: dict[int, dict[str, Any]] = {}
    for s in range(0, len(ids), step):
        chunk, vecs = ids[s:s + step], vectors[s:s + step].tolist()
        if partial:
            client.upsert(NAME, [{"id": i, "vector": v} for i, v in zip(chunk, vecs)], partial_update=True)
            continue
        rows = {r["id"]: r for r in client.query(NAME, filter=f"id in {chunk}", output_fields=["*"],
                                                 consistency_level="Strong")}
        before.update(rows)
        client.upsert(NAME, [{**rows[i], "vector": v} for i, v in zip(chunk, vecs)])
    return before


def _raw_checked_update(client: MilvusClient, ids: list[int], vectors: np.ndarray, partial: bool,
                        step: int) -> None:
    """What a careful user does by hand: check the ids exist, write, read everything back."""
    for s in range(0, len(ids), 8192):
        found = client.query(NAME, filter=f"id in {ids[s:s + 8192]}", output_fields=["id"],
                             consistency_level="Strong")
        assert len(found) == len(ids[s:s + 8192])
    before = _raw_update(client, ids, vectors, partial, step)
    for s in range(0, len(ids), 8192):
        chunk = ids[s:s + 8192]
        back = {r["id"]: r for r in client.query(NAME, filter=f"id in {chunk}",
                                                 output_fields=["id", "vector"] if partial else ["*"],
                                                 consistency_level="Strong")}
        got = np.asarray([back[i]["vector"] for i in chunk], dtype=np.float32)
        assert np.array_equal(got, vectors[s:s + 8192])
        for i in chunk if not partial else ():
            assert {k: v for k, v in back[i].items() if k != "vector"} == \
                   {k: v for k, v in before[i].items() if k != "vector"}


def _row(harness: str, op: str, n: int, ours: float, raw: float, checked: float | None = None) -> dict[str, Any]:
    base = checked if checked is not None else raw
    row = {"harness": harness, "op": op, "n": n, "ours_s": round(ours, 3), "raw_checked_s": None,
           "raw_s": round(raw, 3), "ours_vps": round(n / ours, 1), "raw_vps": round(n / raw, 1),
           "ratio": round(ours / base, 3), "ratio_unchecked": None}
    if checked is not None:
        row.update(raw_checked_s=round(checked, 3), ratio_unchecked=round(ours / raw, 3))
    return row


def _measure_one(harness: str, client: MilvusClient, uri: str, n: int, dim: int, n_update: int,
                 log: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.permutation(10 * n)[:n]]  # sparse int64 keys
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    t = time.perf_counter()
    _load(client, ids, vectors)
    log(f"[{harness}] loaded {n} x {dim} in {time.perf_counter() - t:.1f}s")
    rows = []

    page = milvus_connector._rows_per_page(dim)  # ours pages this way; raw gets the same size
    t = time.perf_counter()
    assert _raw_read(client, page) == n
    raw = time.perf_counter() - t
    with connectors.open_store(uri) as store:
        t = time.perf_counter()
        seen = sum(len(batch) for batch, _ in store.iter_vectors(batch_size=page))
        ours = time.perf_counter() - t
        path = store.describe().details["write_path"]
    assert seen == n
    rows.append(_row(harness, "read_all", n, ours, raw))
    log(f"[{harness}] read_all ours {ours:.2f}s raw {raw:.2f}s")

    pick = rng.permutation(n)
    n_update = min(n_update, n // 3)
    sets = {side: [ids[j] for j in pick[k * n_update:(k + 1) * n_update]]
            for k, side in enumerate(("raw", "checked", "ours"))}
    new = {side: rng.standard_normal((n_update, dim)).astype(np.float32) for side in sets}
    step = milvus_connector._ROWS_PER_UPSERT if path == "rows" else min(milvus_connector._ID_CHUNK, page)
    partial = path == "partial_update"
    half = n_update // 2
    spent = dict.fromkeys(sets, 0.0)
    with connectors.open_store(uri) as store:
        store.describe()  # the schema/partition/index lookup a store does once, outside the timed writes
        for side, part in (("raw", slice(0, half)), ("checked", slice(0, half)), ("ours", slice(0, half)),
                           ("ours", slice(half, n_update)), ("checked", slice(half, n_update)),
                           ("raw", slice(half, n_update))):
            chunk_ids, chunk_vecs = sets[side][part], new[side][part]
            t = time.perf_counter()
            if side == "raw":
                _raw_update(client, chunk_ids, chunk_vecs, partial, step)
            elif side == "checked":
                _raw_checked_update(client, chunk_ids, chunk_vecs, partial, step)
            else:
                assert store.update_vectors(chunk_ids, chunk_vecs) == len(chunk_ids)
            spent[side] += time.perf_counter() - t
    rows.append(_row(harness, f"update ({path})", n_update, spent["ours"], spent["raw"], spent["checked"]))
    log(f"[{harness}] update ({path}) ours {spent['ours']:.2f}s raw+checks {spent['checked']:.2f}s "
        f"raw {spent['raw']:.2f}s")
    client.drop_collection(NAME)
    return rows


def measure(n: int = 100_000, dim: int = 384, workdir: Path | None = None, *, n_update: int = 10_000,
            harnesses: tuple[str, ...] = HARNESSES, log: Any = None) -> list[dict[str, Any]]:
    """Time reading every vector and updating ``n_update`` vectors, ours vs raw, per harness."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    rows: list[dict[str, Any]] = []
    with workdir_or_temporary(workdir, "bench-milvus-") as workdir:
        for harness in harnesses:
            rows += _run_harness(harness, workdir, n, dim, n_update, log)
    return rows


def _run_harness(harness: str, workdir: Path, n: int, dim: int, n_update: int, log: Any) -> list[dict[str, Any]]:
    if harness == "milvus-lite":
        path = workdir / "lite.db"
        client = MilvusClient(str(path))
        try:
            return _measure_one(harness, client, f"milvus://{path}?collection={NAME}", n, dim, n_update, log)
        finally:
            client.close()
    if harness == "milvus-lite-server":
        proc, uri = start_milvus_lite_server(workdir / "lite-server", workdir)
        token = None
    elif harness == "milvus-2.3.5":
        proc, uri, token = start_milvus_server(workdir / "milvus-2.3.5", workdir)
    else:
        raise ValueError(f"unknown harness {harness!r}; expected one of milvus-lite, milvus-lite-server, milvus-2.3.5")
    try:
        secret = workdir / f"{harness}.token"
        secret.write_text(token or "")
        client = MilvusClient(uri, token=token or "", dedicated=True)
        extra = f"&secret_file={secret}" if token else ""
        try:
            return _measure_one(harness, client, f"milvus+{uri}?collection={NAME}{extra}", n, dim, n_update, log)
        finally:
            client.close()
    finally:
        stop_server(proc)


def markdown(rows: list[dict[str, Any]], n: int, dim: int) -> str:
    cols = ["harness", "op", "n", "ours_s", "raw_checked_s", "raw_s", "ours_vps", "raw_vps", "ratio", "ratio_unchecked"]
    lines = [
        "# Milvus connector vs raw pymilvus",
        "",
        f"`python -m bench.connectors_milvus {n} {dim}` on {platform.machine()} / {platform.system()}, "
        f"Python {platform.python_version()}, pymilvus {milvus_connector._CLIENT_VERSION}. "
        "read: raw = `query_iterator` with the same page size and Strong consistency; ratio = ours / raw. "
        "update: ratio = ours / raw_checked (the raw client doing the same existence check, write and read-back by "
        "hand; target <= 1.2); ratio_unchecked = ours / raw (the bare write, no checks). See the module docstring.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 100_000
    dim = int(argv[2]) if len(argv) > 2 else 384
    harnesses = tuple(argv[3:]) or HARNESSES
    rows = measure(n, dim, harnesses=harnesses)
    text = markdown(rows, n, dim)
    print(text)
    print(json.dumps(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main(sys.argv)
