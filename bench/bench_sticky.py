"""How much a search-mode run's γ moves when nothing changed but the database's approximate kNN,
and what that costs without the sticky γ (``nudge_sync.engine.sticky``): the measurement behind
``gamma_margin``'s default.

For each trial: a fresh Chroma collection with an HNSW index (configured below), one search-mode
run (it writes), then ``follow`` more runs with ``gamma_margin=1`` (the γ in force always stays,
so the collection, and its index, stay as the first run left them). Each follow-up is paired with
a dry run at the γ it would have chosen afresh (``--gamma`` fixed): what a run without the sticky
γ would rewrite, and the objective's gain of the fresh γ over the kept one on the same context.
The gain is pure noise of the approximate kNN (no feedback changed): the margin must sit above it.

    python -m bench.bench_sticky                 # both shapes, 3 trials x 3 follow-ups
    python -m bench.bench_sticky --trials 1 --out -   # quick look, table to stdout only
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import connectors
import nudge_sync
from connectors import LabelledQuery
from nudge_sync.engine.errors import NothingToDo
from nudge_sync.engine.options import DEFAULT_GAMMA_MARGIN, SyncOptions
from nudge_sync.synthetic import make_corpus

from ._workdir import workdir_or_temporary

#: the γ the run would choose afresh, from the sticky note ("... at γ=0.41 (chosen now)")
_FRESH = re.compile(r"at γ=([0-9.e+-]+) \(chosen now\)")
#: the objective's gain of the fresh γ over the kept one, as the fit scored both ("the gain +0.0002")
_GAIN = re.compile(r"the gain ([+-][0-9.]+)")


def popular_shape(seed: int) -> tuple[list[str], np.ndarray, list[LabelledQuery], dict[str, Any]]:
    """10,000 random 32-d records, 4,000 queries asking for 400 popular ones from one side each
    (a query-document gap), an index of 4 links per node and beams of 10: every answer competes
    with the whole, approximately searched, collection (tests/user/test_idempotent_search.py)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((10_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"doc-{i}" for i in range(len(vectors))]
    shift = rng.standard_normal((400, 32)).astype(np.float32)
    shift /= np.linalg.norm(shift, axis=1, keepdims=True)
    entries = []
    for q in range(4_000):
        row = int(rng.integers(400))
        query = vectors[row] + 0.6 * shift[row] + 1.6 * rng.standard_normal(32).astype(np.float32) / np.sqrt(32)
        entries.append(LabelledQuery(f"q{q}", query.astype(np.float32), [ids[row]], timestamp=1.7e9 + q,
                                     split="val" if q % 5 == 0 else "train"))
    return ids, vectors, entries, {"max_neighbors": 4, "ef_construction": 10, "ef_search": 10}


def synthetic_shape(seed: int) -> tuple[list[str], np.ndarray, list[LabelledQuery], dict[str, Any]]:
    """nudge_sync.synthetic at 20,000 x 64 with 2,000 queries (the demo's generator), Chroma's
    default HNSW settings."""
    data = make_corpus(n_records=20_000, dim=64, n_queries=2_000, seed=seed)
    return list(data.ids), data.vectors, data.log_entries(("train", "val")), {}


SHAPES = {"popular-10k-x32-M4-ef10": popular_shape, "synthetic-20k-x64-default": synthetic_shape}


def _run(uri: str, entries: list[LabelledQuery], **options: Any) -> nudge_sync.SyncReport:
    store = connectors.open_store(uri)
    try:
        return nudge_sync.sync(store, SyncOptions(context="search", **options), entries=entries)
    except NothingToDo as exc:
        return exc.report  # type: ignore[attr-defined]
    finally:
        store.close()


def trial(shape: str, seed: int, follow: int, directory: Path) -> list[dict[str, Any]]:
    import chromadb

    ids, vectors, entries, hnsw = SHAPES[shape](seed)
    path = directory / f"{shape}-{seed}"
    client = chromadb.PersistentClient(str(path))
    coll = client.create_collection("docs", configuration={"hnsw": {"space": "cosine", **hnsw}},
                                    embedding_function=None)
    for s in range(0, len(ids), 5000):
        coll.add(ids=ids[s:s + 5000], embeddings=vectors[s:s + 5000])
    del coll
    client.close()
    uri = f"chroma://{path}?collection=docs"
    first = _run(uri, entries)
    rows = []
    for n in range(follow):
        kept = _run(uri, entries, gamma_margin=1.0)
        fresh = next((float(m.group(1)) for note in kept.notes if (m := _FRESH.search(note))), kept.gamma)
        gain = next((float(m.group(1)) for note in kept.notes if (m := _GAIN.search(note))), 0.0)
        row = {"shape": shape, "seed": seed, "run": n + 2, "first_written": first.counts.get("written", 0),
               "kept_gamma": kept.gamma, "fresh_gamma": fresh, "written_kept": kept.counts.get("written", 0),
               "would_write": 0, "gain": gain}
        if fresh is not None and kept.gamma is not None and fresh != kept.gamma:
            # min_gain=-1: the count of what it would write, whatever the gate would say
            dry = _run(uri, entries, gamma=fresh, dry_run=True, min_gain=-1.0)
            row["would_write"] = dry.counts.get("to_write", 0)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]], seconds: float, argv: list[str]) -> str:
    lines = [
        "# Sticky γ: how far search mode's γ moves on an approximate index (bench/bench_sticky.py)",
        "",
        f"Command: `python -m bench.bench_sticky {' '.join(argv)}` ({seconds:.0f} s, Chroma persistent, "
        "2-core machine shared with other work).",
        "Each row: a follow-up search-mode run with no new feedback. `would write`: what a run without the "
        "sticky γ writes (a dry run at the γ chosen afresh); `gain`: the objective (ndcg@10) of the fresh γ "
        "minus the kept one, both scored by the fit on the same validation context (4 decimals): noise of the approximate kNN.",
        "",
        "| shape | seed | run | first run wrote | kept γ | fresh γ | would write | gain | with sticky γ wrote |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['seed']} | {r['run']} | {r['first_written']} | {r['kept_gamma']:.6g} | "
                     f"{r['fresh_gamma']:.6g} | {r['would_write']} | {r['gain']:+.4f} | {r['written_kept']} |")
    gains = [abs(r["gain"]) for r in rows]
    moved = sum(r["would_write"] > 0 for r in rows)
    lines += ["", f"Follow-up runs whose fresh γ would rewrite records: {moved} of {len(rows)}; largest |gain| "
              f"{max(gains, default=0.0):.4f}; default gamma_margin {DEFAULT_GAMMA_MARGIN} "
              f"({DEFAULT_GAMMA_MARGIN / max(max(gains, default=0.0), 1e-9):.1f}x the largest noise seen)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated: {', '.join(SHAPES)}")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--follow", type=int, default=3, help="follow-up runs per trial")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default="bench/results/sticky.md", help="'-': stdout only")
    args = ap.parse_args(argv)
    started = time.time()
    rows: list[dict[str, Any]] = []
    with workdir_or_temporary(args.workdir, "nudge-sync-sticky-") as directory:
        for shape in args.shapes.split(","):
            for seed in range(args.trials):
                rows += trial(shape, seed, args.follow, directory)
    text = table(rows, time.time() - started, argv)
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
