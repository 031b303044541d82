"""Writes the regression corpus (tests/fuzz/corpus/): the concrete bad inputs of issue #11, as files.

    python -m tests.fuzz.make_corpus        # rewrites every file

The files are committed; this script documents how each was made. Vectors are 8-d, the dimension of
the test databases (tests/fuzz/_db.py).
"""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent / "corpus"
DIM = 8
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_VEC = [0.5, -0.25, 0.125, 0.75, -0.5, 0.25, 0.0625, -0.125]


def entry(qid: str, **over: Any) -> dict[str, Any]:
    return {"query_id": qid, "vector": _VEC, "relevant_ids": ["doc-001", 4], "timestamp": T0, **over}


def jsonl(name: str, *lines: Any) -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path = HERE / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    # defect 1: one entry with 5,500 answers (5,462 list elements broke a Chroma log for good)
    jsonl("relevant_ids_5500.jsonl.gz", entry("many", relevant_ids=[f"doc-{i:03d}" for i in range(5500)]))
    # over Milvus' 65,536 bytes of dynamic fields: 9,000 ids of 8 characters
    jsonl("relevant_ids_9000.jsonl.gz", entry("too-many", relevant_ids=[f"doc-{i:04d}" for i in range(9000)]))
    # defect 2: line 2,101 of 2,500 has a 3,000-character query_id (Milvus keys hold 2,048 bytes)
    jsonl("query_id_3000_chars_line_2101.jsonl.gz",
          *(entry("x" * 3000 if n == 2101 else f"line-{n}") for n in range(1, 2501)))
    # defect 3: poison that used to be accepted
    jsonl("timestamp_milliseconds.jsonl", entry("ms", timestamp=1_700_000_420_000))
    jsonl("timestamp_microseconds.jsonl", entry("us", timestamp=1_700_000_420_000_000))
    jsonl("timestamp_nanoseconds.jsonl", entry("ns", timestamp=1.7e18))
    jsonl("timestamp_before_2000.jsonl", entry("old", timestamp=86_400))
    jsonl("vector_all_zero.jsonl", entry("zero", vector=[0.0] * DIM))
    jsonl("relevant_id_empty_string.jsonl", entry("empty-id", relevant_ids=[""]))
    jsonl("query_id_twice.jsonl", entry("same"), entry("other"), entry("same", relevant_ids=[7]))
    # defect 4: a JSONL line nested 100,000 deep (RecursionError in json)
    jsonl("deeply_nested.jsonl.gz", '{"query_id": "deep", "vector": ' + "[" * 100_000 + "]" * 100_000 + "}")
    # the same poison in the typed formats
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"query_id": ["ms"], "vector": [_VEC], "relevant_ids": [["doc-001"]],
                             "timestamp": [1_700_000_420_000.0]}), HERE / "timestamp_milliseconds.parquet")
    np.savez(HERE / "vector_all_zero.npz", query_ids=np.array(["zero"]), vectors=np.zeros((1, DIM), np.float32),
             relevant_indptr=np.array([0, 1]), relevant_ids=np.array(["doc-001"]))
    # --vector-file inputs (defects 4 and 6)
    with open(HERE / "archive_named.npy", "wb") as f:  # an .npz under a .npy name
        np.savez(f, vector=np.array(_VEC, np.float32))
    np.save(HERE / "complex.npy", np.array(_VEC, np.float32) + 1j)
    (HERE / "random_bytes.npy").write_bytes(np.random.default_rng(11).bytes(512))
    with open(HERE / "pickled.npy", "wb") as f:  # a pickle, never loaded: a numpy object array
        np.lib.format.write_array(f, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (HERE / "not_a_pickle_either.npy").write_bytes(pickle.dumps([1.0] * DIM))
    # config files (defects 4 and 6)
    (HERE / "binary.toml").write_bytes(b"\xff\xfe\x00\x01" + np.random.default_rng(12).bytes(64))
    (HERE / "feedback_import_unknown_option.toml").write_text("[feedback.import]\nbatch_sise = 500\n")
    (HERE / "feedback_import_bad_value.toml").write_text('[feedback.import]\nbatch_size = "many"\n')
    (HERE / "run_min_gain_nan.toml").write_text("[run]\nmin_gain = nan\n")


if __name__ == "__main__":
    main()
