"""``nudge-sync demo``: the whole product on an embedded database in well under a minute.

Creates a fresh embedded database (no server) in a directory of its own, loads the synthetic corpus
and its labelled query log (``nudge_sync.synthetic``: queries with a real semantic gap to their
answers), runs one sync exactly as ``nudge-sync run`` would, and scores the held-out test queries
against the collection before and after, read back from the database.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import connectors

from ..engine import ops
from ..engine.run import sync
from ..engine.errors import RefusedInput
from ..engine.options import SyncOptions
from ..engine.progress import Progress
from ..synthetic import make_corpus

#: A file the demo leaves in its directory, so a second demo may safely replace its own database.
MARKER = ".nudge-sync-demo"
COLLECTION = "demo"
#: Embedded database location inside the demo directory, per backend.
LOCATIONS = {"qdrant": "qdrant", "milvus": "milvus.db", "chroma": "chroma"}
#: Qdrant ids are ints or UUIDs, Chroma ids strings; Milvus takes either (int64 keys here).
ID_TYPES = {"qdrant": "int", "milvus": "int", "chroma": "str"}


def demo_uri(backend: str, directory: Path) -> str:
    location = (directory / LOCATIONS[backend]).resolve()
    return f"{backend}://{location}?collection={COLLECTION}"


def prepare_directory(directory: Path, backend: str) -> None:
    """The demo directory, with no database of ``backend`` in it: a directory the demo created
    keeps the other backends' demos (each has its own path in it); a directory it did not create
    is used only if empty."""
    if directory.exists() and not (directory / MARKER).exists():
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        else:
            raise RefusedInput(f"{directory} exists and was not created by `nudge-sync demo`; "
                               "choose another --dir")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("created by `nudge-sync demo`; safe to delete\n")
    previous = directory / LOCATIONS[backend]
    if previous.is_dir():
        shutil.rmtree(previous)
    elif previous.exists():
        previous.unlink()
    for leftover in directory.glob(f".{LOCATIONS[backend]}*"):  # Milvus Lite's lock and side files
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def run_demo(
    *,
    backend: str = "qdrant",
    directory: Path = Path("nudge-sync-demo"),
    records: int = 10_000,
    dim: int = 128,
    queries: int = 2_000,
    seed: int = 0,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    if backend not in LOCATIONS:
        raise RefusedInput(f"demo backend {backend!r}: expected one of {sorted(LOCATIONS)}")
    if records < 100 or dim < 2 or queries < 50:
        raise RefusedInput("the demo needs at least 100 records, 2 dimensions and 50 queries")
    connectors.require_backend(backend)  # a missing client library is said before anything is generated
    directory = Path(directory)
    prepare_directory(directory, backend)
    uri = demo_uri(backend, directory)

    say(f"generating {records} records x {dim} dims and {queries} labelled queries (seed {seed})")
    data = make_corpus(n_records=records, dim=dim, n_queries=queries, seed=seed, id_type=ID_TYPES[backend])
    say(f"creating {uri}")
    started = time.perf_counter()
    connectors.create_collection(uri, data.ids, data.vectors, metric="cosine",
                                 payloads=data.payloads, documents=data.documents)
    load_seconds = time.perf_counter() - started

    with connectors.open_store(uri) as store:
        ops.add_feedback(store, data.log_entries(), check_ids=False)
        say("running sync")
        started = time.perf_counter()
        # a toy corpus: its labelled share is large, so the changed-share gate would hold it back
        report = sync(store, SyncOptions(max_changed_fraction=1.0), progress=progress, store_label=uri)
        run_seconds = time.perf_counter() - started
        evaluation = ops.evaluate(store, store.read_log(f"{COLLECTION}_feedback"), split="test",
                                   progress=progress)
    return {
        "store": uri, "backend": backend, "records": records, "dim": dim, "queries": queries, "seed": seed,
        "load_seconds": round(load_seconds, 3), "run_seconds": round(run_seconds, 3),
        "run": report.to_dict(), "eval": evaluation,
    }
