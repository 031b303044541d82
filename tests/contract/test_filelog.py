"""File query logs: exact round trips in every format, streaming, and errors that name the entry."""

from __future__ import annotations

import builtins
import gzip
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connectors
from connectors import LabelledQuery, MissingDependency, read_log_file, write_log_file
from connectors._filelog import LogFileError

FORMATS = ["log.jsonl", "log.parquet", "log.npz", "log.jsonl.gz"]


def entries(id_kind="str", n=20, dim=6, seed=0, full=True):
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n):
        ids = [f"döc-{q}-{j}" if id_kind == "str" else q * 10 + j for j in range(1 + q % 3)]
        out.append(LabelledQuery(
            f"q{q}", rng.standard_normal(dim).astype(np.float32), ids,
            [float(1 + j) for j in range(len(ids))] if full and q % 2 else None,
            1_700_000_000.5 + q if full else None, ("train", "val", "test")[q % 3] if full else None))
    return out


def same(a: list[LabelledQuery], b: list[LabelledQuery]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.query_id, x.relevant_ids, x.timestamp, x.split) == (y.query_id, y.relevant_ids, y.timestamp, y.split)
        assert [type(i) for i in x.relevant_ids] == [type(i) for i in y.relevant_ids]
        if x.grades is None:  # NPZ stores grades for every entry once any entry has them
            assert y.grades in (None, [1.0] * len(y.relevant_ids))
        else:
            assert y.grades == x.grades
        assert x.vector.dtype == np.float32 and x.vector.tobytes() == y.vector.tobytes()


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("id_kind", ["str", "int"])
@pytest.mark.parametrize("full", [True, False])
def test_round_trip(tmp_path, name, id_kind, full):
    data = entries(id_kind, full=full)
    assert write_log_file(tmp_path / name, data) == len(data)
    same(data, list(read_log_file(tmp_path / name)))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=8),
                          st.lists(st.one_of(st.integers(-2**62, 2**62)), min_size=1, max_size=4, unique=True),
                          st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=3, max_size=3)),
                min_size=1, max_size=10, unique_by=lambda t: t[0]))
def test_jsonl_round_trip_property(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("prop") / "p.jsonl"
    data = [LabelledQuery(q, np.asarray(v, np.float32), ids) for q, ids, v in rows]
    write_log_file(path, data)
    same(data, list(read_log_file(path)))


def test_jsonl_accepts_iso_timestamps_single_ids_and_extra_keys(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"query_id": 7, "vector": [1, 2], "relevant_ids": "doc-1", "text": "hello",
                                "timestamp": "2026-01-01T00:00:00Z"}) + "\n\n")
    (e,) = read_log_file(path)
    assert e.query_id == "7" and e.relevant_ids == ["doc-1"] and e.timestamp == 1767225600.0


def test_reading_is_streamed(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for q in range(50_000):
            f.write(json.dumps({"query_id": f"q{q}", "vector": [0.5, 0.5], "relevant_ids": [q]}) + "\n")
        f.write("{broken\n")
    it = read_log_file(path)
    assert next(it).query_id == "q0"  # the broken last line has not been read yet
    with pytest.raises(LogFileError, match="big.jsonl line 50001: not valid JSON"):
        for _ in it:
            pass


@pytest.mark.parametrize("line, message", [
    ({"vector": [1.0], "relevant_ids": [1]}, "line 1: missing field 'query_id'"),
    ({"query_id": "a", "vector": "x", "relevant_ids": [1]}, "line 1: vector must be"),
    ({"query_id": "a", "vector": [1.0, None], "relevant_ids": [1]}, "line 1: vector must be"),
    ({"query_id": "a", "vector": [1.0, float("nan")], "relevant_ids": [1]}, "query 'a' has NaN"),
    ({"query_id": "a", "vector": [1.0], "relevant_ids": []}, "relevant_ids must be a non-empty list"),
    ({"query_id": "a", "vector": [1.0], "relevant_ids": [1.5]}, "relevant_ids must be a non-empty list"),
    ({"query_id": "a", "vector": [1.0], "relevant_ids": [1, 2], "grades": [1]}, "grades must be a list of 2"),
    ({"query_id": "a", "vector": [1.0], "relevant_ids": [1], "grades": [-1]}, "grades must be positive"),
    ({"query_id": "a", "vector": [1.0], "relevant_ids": [1], "split": "dev"}, "split is 'dev'"),
    ({"query_id": "a", "vector": [1.0], "relevant_ids": [1], "timestamp": "yesterday"}, "timestamp 'yesterday'"),
])
def test_malformed_jsonl_entries_are_named(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(line).replace("NaN", "NaN") + "\n")
    with pytest.raises(LogFileError, match=message):
        list(read_log_file(path))


def test_dimension_must_not_change(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"query_id": f"q{i}", "vector": [1.0] * (2 + (i == 2)), "relevant_ids": [1]})
                              for i in range(3)))
    with pytest.raises(LogFileError, match="query 'q2' has a 3-d vector; earlier entries are 2-d"):
        list(read_log_file(path))


def test_npz_inconsistent_arrays_and_no_pickles(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, query_ids=np.array(["a", "b"]), vectors=np.ones((2, 3)), relevant_indptr=np.array([0, 1]),
             relevant_ids=np.array([1]))
    with pytest.raises(LogFileError, match="inconsistent arrays"):
        list(read_log_file(path))
    np.savez(tmp_path / "obj.npz", query_ids=np.array([object()], dtype=object), vectors=np.ones((1, 2)),
             relevant_indptr=np.array([0, 1]), relevant_ids=np.array([1]))
    with pytest.raises(LogFileError, match="not a readable NPZ"):
        list(read_log_file(tmp_path / "obj.npz"))


def test_unknown_format_missing_file_and_atomic_write(tmp_path):
    with pytest.raises(connectors.InvalidURI, match="cannot tell the log format"):
        read_log_file(tmp_path / "log.csv")
    with pytest.raises(connectors.InvalidURI, match="does not exist"):
        read_log_file(tmp_path / "absent.jsonl")
    target = tmp_path / "keep.jsonl"
    write_log_file(target, entries(n=3))
    before = target.read_bytes()
    bad = entries(n=3)
    bad[2].vector = np.array([np.inf] * 6, np.float32)
    with pytest.raises(LogFileError):
        write_log_file(target, bad)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]


def test_gzip_jsonl_is_really_compressed(tmp_path):
    write_log_file(tmp_path / "l.jsonl.gz", entries(n=5))
    with gzip.open(tmp_path / "l.jsonl.gz", "rt") as f:
        assert json.loads(f.readline())["query_id"] == "q0"


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ModuleNotFoundError(name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(MissingDependency, match=r"pip install 'nudge-sync\[parquet\]'"):
        write_log_file(tmp_path / "x.parquet", entries(n=2))
