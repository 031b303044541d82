"""File query logs (JSONL, Parquet, NPZ): exact round trips, ids that keep their type, streaming
with bounded memory, atomic writes, and errors that name the file, the line / row and the field."""

from __future__ import annotations

import gzip
import json
import os
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connectors
from connectors import (
    ConnectorError,
    InvalidURI,
    InvalidVectors,
    LabelledQuery,
    LogFileError,
    MissingDependency,
    files,
    read_log_file,
    write_log_file,
)

NAMES = ["log.jsonl", "log.ndjson", "log.jsonl.gz", "log.parquet", "log.npz"]
TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def entries(id_kind="str", n=20, dim=6, seed=0, grades=True, stamps=True, splits=True):
    """Entries with 1-3 relevant ids each; grades / timestamps / splits on some entries only."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n):
        k = 1 + q % 3
        ids = [f"döc-{q}-{j}-文書-🙂" if id_kind == "str" else q * 10 + j - 5 for j in range(k)]
        out.append(LabelledQuery(
            query_id=f"q{q}" if q % 4 else f"クエリ {q}",
            vector=rng.standard_normal(dim).astype(np.float32),
            relevant_ids=ids,
            grades=[0.5 + j for j in range(k)] if grades and q % 2 else None,
            timestamp=TS + q + 0.125 if stamps and q % 3 else None,
            split=("train", "val", "test")[q % 3] if splits and q % 5 else None,
        ))
    return out


def assert_same(written: list[LabelledQuery], read: list[LabelledQuery]) -> None:
    assert len(written) == len(read)
    for a, b in zip(written, read):
        assert (a.query_id, a.relevant_ids, a.grades, a.timestamp, a.split) == \
               (b.query_id, b.relevant_ids, b.grades, b.timestamp, b.split)
        assert type(b.query_id) is str
        assert [type(i) for i in a.relevant_ids] == [type(i) for i in b.relevant_ids]
        assert b.vector.dtype == np.float32 and b.vector.shape == a.vector.shape
        assert b.vector.tobytes() == np.asarray(a.vector, np.float32).tobytes()


def write_jsonl(path, *objs, raw: str = ""):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs) + raw, encoding="utf-8")
    return path


def ok(**over):
    return {"query_id": "a", "vector": [1.0, 2.0], "relevant_ids": [1], **over}


# -- round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("id_kind", ["str", "int"])
@pytest.mark.parametrize("optional", [True, False], ids=["with-optional", "bare"])
def test_round_trip(tmp_path, name, id_kind, optional):
    data = entries(id_kind, grades=optional, stamps=optional, splits=optional)
    assert write_log_file(tmp_path / name, data) == len(data)
    assert_same(data, list(read_log_file(tmp_path / name)))
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


@pytest.mark.parametrize("name", NAMES)
def test_ids_that_look_alike_keep_their_type(tmp_path, name):
    data = [LabelledQuery("1", np.ones(2, np.float32), ["7", "007", " 7", "7.0", "true", "null"]),
            LabelledQuery("2", np.ones(2, np.float32), ["-1", "0x10", "ß", "e\u0301", "a\tb", '"q"'])]
    write_log_file(tmp_path / name, data)
    assert_same(data, list(read_log_file(tmp_path / name)))
    ints = [LabelledQuery("3", np.ones(2, np.float32), [0, -(2**63), 2**63 - 1, 7])]
    write_log_file(tmp_path / name, ints)
    assert_same(ints, list(read_log_file(tmp_path / name)))


@pytest.mark.parametrize("name", NAMES)
def test_empty_log(tmp_path, name):
    assert write_log_file(tmp_path / name, []) == 0
    assert list(read_log_file(tmp_path / name)) == []


@pytest.mark.parametrize("name", NAMES)
def test_numpy_values_are_written_as_python_values(tmp_path, name):
    q = LabelledQuery(np.str_("q"), np.arange(4, dtype=np.float64),
                      [np.int64(5), np.uint32(6)],  # type: ignore[list-item]
                      [np.float32(2.0), np.int64(3)], np.float32(TS), np.str_("val"))  # type: ignore[arg-type]
    write_log_file(tmp_path / name, [q])
    (e,) = read_log_file(tmp_path / name)
    assert (e.query_id, e.relevant_ids, e.grades, e.timestamp, e.split) == ("q", [5, 6], [2.0, 3.0], TS, "val")
    assert [type(i) for i in e.relevant_ids] == [int, int] and type(e.timestamp) is float
    assert e.vector.dtype == np.float32 and e.vector.tolist() == [0.0, 1.0, 2.0, 3.0]
    write_log_file(tmp_path / name, [LabelledQuery("q", [1, 2.5], ("a",))])  # type: ignore[arg-type]  # list, tuple
    assert next(read_log_file(tmp_path / name)).vector.tolist() == [1.0, 2.5]


def test_jsonl_keeps_mixed_int_and_str_ids(tmp_path):
    data = [LabelledQuery("q", np.ones(3, np.float32), [1, "1", 2**64 - 1, "x"])]
    write_log_file(tmp_path / "m.jsonl", data)
    assert_same(data, list(read_log_file(tmp_path / "m.jsonl")))
    assert json.loads((tmp_path / "m.jsonl").read_text())["relevant_ids"] == [1, "1", 2**64 - 1, "x"]


# no lone surrogates (Cs): they are not valid Unicode, and the reader refuses them on purpose
_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=6)


@st.composite
def logs(draw):
    dim = draw(st.integers(1, 5))
    ids = st.lists(_text, min_size=1, max_size=4) if draw(st.booleans()) else \
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4)
    out = []
    for _ in range(draw(st.integers(0, 6))):
        rel = draw(ids)
        grades = draw(st.none() | st.lists(st.floats(0, 1e300, exclude_min=True), min_size=len(rel),
                                           max_size=len(rel)))
        out.append(LabelledQuery(
            draw(_text),
            np.asarray(draw(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=dim,
                                     max_size=dim).filter(any)), np.float32),  # the entry rule: not all zeros
            rel, grades,
            draw(st.none() | st.floats(946_684_800.0, TS)),  # the entry rule: from 2000-01-01 to now
            draw(st.sampled_from([None, "train", "val", "test"])),
        ))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=logs().map(lambda qs: list({q.query_id: q for q in qs}.values())),  # each query id once
       name=st.sampled_from(NAMES))
def test_round_trip_property(tmp_path, data, name):
    path = tmp_path / name
    assert write_log_file(path, data) == len(data)
    assert_same(data, list(read_log_file(path)))


# -- formats, suffixes, atomic writes -------------------------------------------------------------------------------


def test_format_from_suffix_or_explicit(tmp_path):
    data = entries(n=3)
    write_log_file(tmp_path / "feedback.log", data, format="jsonl")
    assert json.loads((tmp_path / "feedback.log").read_text().splitlines()[0])["query_id"] == "クエリ 0"
    assert_same(data, list(read_log_file(tmp_path / "feedback.log", format="ndjson")))
    write_log_file(tmp_path / "f.bin", data, format="jsonl.gz")
    assert gzip.decompress((tmp_path / "f.bin").read_bytes()).startswith(b'{"query_id"')
    write_log_file(tmp_path / "p.data", data, format="parquet")
    assert_same(data, list(read_log_file(tmp_path / "p.data", format="PARQUET")))
    write_log_file(tmp_path / "n.data", data, format=".npz")
    assert_same(data, list(read_log_file(tmp_path / "n.data", format="npz")))
    assert files.log_format("A.NDJSON.GZ") == "jsonl" and files.log_format("x.Parquet") == "parquet"


def test_gzip_is_detected_by_content_and_written_reproducibly(tmp_path):
    data = entries(n=5)
    write_log_file(tmp_path / "a.jsonl.gz", data)
    first = (tmp_path / "a.jsonl.gz").read_bytes()
    write_log_file(tmp_path / "a.jsonl.gz", data)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == first  # no timestamp in the gzip header
    os.replace(tmp_path / "a.jsonl.gz", tmp_path / "renamed.jsonl")
    assert_same(data, list(read_log_file(tmp_path / "renamed.jsonl")))


def _touch(path: Path) -> Path:
    path.touch()
    return path


@pytest.mark.parametrize("call, message", [
    (lambda p: read_log_file(_touch(p / "log.csv")), r"log.csv': cannot tell its format from its name; name it \*.jsonl"),
    (lambda p: write_log_file(p / "log.json", []), r"log.json': cannot tell its format"),
    (lambda p: read_log_file(p / "x.jsonl", format="csv"), r"log file format 'csv': expected one of \('jsonl', "),
    (lambda p: read_log_file(p / "absent.jsonl"), r"log file .*absent.jsonl does not exist"),
    (lambda p: read_log_file(p, format="jsonl"), r"log file .* is a directory"),
    # cold try: /dev/zero was told to "pass format=", an option the command line does not have
    (lambda p: read_log_file("/dev/zero"), r"log file '/dev/zero' is too large to read: not a regular file .*"
                                          r"67,108,864 bytes per JSONL line and 1,073,741,824 bytes of NPZ arrays"),
    (lambda p: write_log_file(p / "no" / "x.npz", []), r"cannot write log file .*x.npz: directory .*no does not exist"),
])
def test_format_and_path_errors_are_raised_at_once(tmp_path, call, message):
    with pytest.raises(InvalidURI, match=message):
        call(tmp_path)  # not only once iterated


@pytest.mark.parametrize("name", NAMES)
def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, name):
    target = tmp_path / name
    write_log_file(target, entries(n=3))
    before = target.read_bytes()
    bad = entries(n=5000 if name.endswith(("jsonl", "ndjson")) else 5)  # JSONL fails mid-stream
    bad[-1].vector = np.array([np.inf] * 6, np.float32)
    with pytest.raises(LogFileError, match=rf"^{name} entry {len(bad) - 1}: query '.+' has NaN or infinite"):
        write_log_file(target, bad)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [name]


def test_new_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_log_file(tmp_path / "l.jsonl", entries(n=1))
    finally:
        os.umask(umask)
    assert (tmp_path / "l.jsonl").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("entry, message", [
    (LabelledQuery("", np.ones(2, np.float32), [1]), r"entry 0: query_id must be a non-empty string or an integer"),
    (LabelledQuery("q", np.ones((1, 2), np.float32), [1]), r"entry 0: vector must be a non-empty flat list"),
    (LabelledQuery("q", np.array(["1", "2"]), [1]), r"entry 0: vector must be a list of numbers, got an array of <U1"),
    (LabelledQuery("q", np.array([1.0, 1e39]), [1]), r"entry 0: query 'q' has NaN or infinite .* beyond float32"),
    (LabelledQuery("q", np.ones(2, np.float32), []), r"entry 0: relevant_ids must be a non-empty list"),
    (LabelledQuery("q", np.ones(2, np.float32), [1.0]),  # type: ignore[list-item]
     r"entry 0: relevant_ids .*, got 1.0 \(float\)"),
    (LabelledQuery("q", np.ones(2, np.float32), [True]), r"entry 0: relevant_ids .*, got True \(bool\)"),
    (LabelledQuery("q", np.ones(2, np.float32), [1], [1, 2]), r"entry 0: grades must be a list of 1 numbers"),
    (LabelledQuery("q", np.ones(2, np.float32), [1], None, float("nan")), r"entry 0: timestamp nan is not a finite"),
    (LabelledQuery("q", np.ones(2, np.float32), [1], None, None, "dev"), r"entry 0: split is 'dev'"),
    (LabelledQuery("q", np.ones(2, np.float32), ["\ud800"]), r"entry 0: relevant id '\\ud800' is not valid Unicode"),
])
def test_write_validates_like_read(tmp_path, entry, message):
    with pytest.raises(LogFileError, match=r"^x.jsonl " + message):
        write_log_file(tmp_path / "x.jsonl", [entry])
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_what_is_not_an_entry_and_a_dimension_change(tmp_path):
    with pytest.raises(TypeError, match=r"x.jsonl entry 0: expected a LabelledQuery, got dict"):
        write_log_file(tmp_path / "x.jsonl", [ok()])  # type: ignore[list-item]
    two = [LabelledQuery("a", np.ones(2, np.float32), [1]), LabelledQuery("b", np.ones(3, np.float32), [1])]
    with pytest.raises(LogFileError, match=r"x.npz entry 1: query 'b' has a 3-d vector; the first entry "
                                           r"\(x.npz entry 0\) is 2-d"):
        write_log_file(tmp_path / "x.npz", two)


@pytest.mark.parametrize("name, fmt", [("x.parquet", "Parquet"), ("x.npz", "NPZ")])
def test_typed_formats_need_one_id_type(tmp_path, name, fmt):
    mixed_entry = [LabelledQuery("a", np.ones(2, np.float32), [1, "b"])]
    mixed_file = [LabelledQuery("a", np.ones(2, np.float32), [1]), LabelledQuery("b", np.ones(2, np.float32), ["x"])]
    for data, n in ((mixed_entry, 0), (mixed_file, 1)):
        with pytest.raises(LogFileError, match=rf"{name} entry {n}: relevant_ids mix ints and strings; {fmt} log "
                                               r"files need one id type .* JSONL allows both"):
            write_log_file(tmp_path / name, data)
    with pytest.raises(LogFileError, match=rf"{name} entry 0: relevant id 9223372036854775808 does not fit in int64"):
        write_log_file(tmp_path / name, [LabelledQuery("a", np.ones(2, np.float32), [2**63])])
    assert list(tmp_path.iterdir()) == []


def test_npz_refuses_strings_ending_with_nul(tmp_path):
    one = np.ones(2, np.float32)
    for q in (LabelledQuery("a\x00", one, ["x"]), LabelledQuery("a", one, ["x\x00"])):
        with pytest.raises(LogFileError, match=r"x.npz entry 0: .* ends with a NUL character, which NPZ cannot store"):
            write_log_file(tmp_path / "x.npz", [q])
    q = LabelledQuery("a\x00", np.ones(2, np.float32), ["x\x00"])  # fine elsewhere
    write_log_file(tmp_path / "x.parquet", [q])
    assert_same([q], list(read_log_file(tmp_path / "x.parquet")))


# -- JSONL reading ---------------------------------------------------------------------------------------------------


def test_jsonl_conveniences(tmp_path):
    path = write_jsonl(
        tmp_path / "x.jsonl",
        {"query_id": 7, "vector": [1, 2], "relevant_ids": [3, "3"], "text": "what is NUDGE?", "clicks": [1, 2]},
        ok(query_id="z", timestamp="2026-01-01T00:00:00Z"),
        ok(query_id="naive-is-utc", timestamp="2026-01-01T00:00:00"),
        ok(query_id="offset", timestamp="2026-01-01T02:00:00+02:00"),
        ok(query_id="date", timestamp="2026-01-01"),
        ok(query_id="int-seconds", timestamp=1767225600, grades=[2], split=None),
        raw="\n   \n\t\n",
    )
    got = list(read_log_file(path))
    assert got[0].query_id == "7" and got[0].relevant_ids == [3, "3"] and got[0].vector.tolist() == [1.0, 2.0]
    assert [e.timestamp for e in got[1:]] == [TS] * 5 and all(type(e.timestamp) is float for e in got[1:])
    assert got[-1].grades == [2.0] and got[-1].split is None


def test_jsonl_crlf_bom_and_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ok()).encode() + b"\r\n\r\n" + json.dumps(ok(split="x")).encode())
    it = read_log_file(path)
    assert next(it).query_id == "a"
    with pytest.raises(LogFileError, match=r"^w.jsonl line 3: split is 'x'"):
        next(it)


@pytest.mark.parametrize("line, message", [
    ("{broken", r"not valid JSON \(Expecting property name enclosed in double quotes at column 2\)"),
    ('{"query_id": "a", "vector": [1.0, 2.0],', r"not valid JSON \(Expecting property name enclosed in double quotes "
                                                r"at column 40\)"),  # a truncated line: the column of its end
    ("[1, 2]", r"expected a JSON object, got list"),
    ('"text"', r"expected a JSON object, got str"),
    (ok(query_id=None), r"query_id must be a non-empty string or an integer, got None"),
    ({"vector": [1.0], "relevant_ids": [1]}, r"missing field 'query_id'"),
    ({"query_id": "a", "relevant_ids": [1]}, r"missing field 'vector'"),
    ({"query_id": "a", "vector": [1.0]}, r"missing field 'relevant_ids'"),
    (ok(query_id=""), r"query_id must be a non-empty string or an integer, got ''"),
    (ok(query_id=True), r"query_id must be a non-empty string or an integer, got True"),
    (ok(query_id=1.5), r"query_id must be a non-empty string or an integer, got 1.5"),
    (ok(query_id=["a"]), r"query_id must be a non-empty string or an integer, got \['a'\]"),
    (ok(vector="1,2"), r"vector must be a list of numbers, got str"),
    (ok(vector=None), r"vector must be a list of numbers, got NoneType"),
    (ok(vector=[1.0, None]), r"vector must be a list of numbers$"),
    (ok(vector=[1.0, "2"]), r"vector must be a list of numbers$"),
    (ok(vector=[1.0, True]), r"vector must be a list of numbers$"),
    (ok(vector=[[1.0, 2.0]]), r"vector must be a list of numbers$"),
    (ok(vector=[]), r"vector must be a non-empty flat list of numbers"),
    ('{"query_id": "a", "vector": [1.0, NaN], "relevant_ids": [1]}',
     r"query 'a' has NaN or infinite values in its vector"),
    ('{"query_id": "a", "vector": [-Infinity, 1], "relevant_ids": [1]}', r"query 'a' has NaN or infinite"),
    (ok(vector=[1.0, 1e39]), r"query 'a' has NaN or infinite values in its vector \(or values beyond float32\)"),
    (ok(vector=[1.0, 10**400]), r"query 'a' has NaN or infinite values"),
    (ok(relevant_ids=[]), r"relevant_ids must be a non-empty list of ints or strings$"),
    (ok(relevant_ids="doc-1"), r"relevant_ids must be a non-empty list of ints or strings$"),
    (ok(relevant_ids=1), r"relevant_ids must be a non-empty list of ints or strings$"),
    (ok(relevant_ids=None), r"relevant_ids must be a non-empty list of ints or strings$"),
    (ok(relevant_ids={"a": 1}), r"relevant_ids must be a non-empty list of ints or strings$"),
    (ok(relevant_ids=[1.5]), r"relevant_ids must be a non-empty list of ints or strings, got 1.5 \(float\)"),
    (ok(relevant_ids=[1.0]), r"relevant_ids must be a non-empty list of ints or strings, got 1.0 \(float\)"),
    (ok(relevant_ids=[False]), r"relevant_ids must be a non-empty list of ints or strings, got False \(bool\)"),
    (ok(relevant_ids=[None]), r"relevant_ids must be a non-empty list of ints or strings, got None \(NoneType\)"),
    (ok(relevant_ids=[["a"]]), r"relevant_ids must be a non-empty list of ints or strings, got \['a'\] \(list\)"),
    (ok(relevant_ids=["a", ""]), r"relevant_ids contains an empty string"),
    (ok(relevant_ids=[2**64]), r"relevant id 18446744073709551616 does not fit in 64 bits"),
    (ok(relevant_ids=[-(2**63) - 1]), r"relevant id -9223372036854775809 does not fit in 64 bits"),
    (ok(relevant_ids=["\ud800"]), r"relevant id '\\ud800' is not valid Unicode \(lone surrogate\)"),
    (ok(query_id="\udfff"), r"query_id '\\udfff' is not valid Unicode"),
    (ok(relevant_ids=[1, 2], grades=[1]), r"grades must be a list of 2 numbers \(one per relevant id\)"),
    (ok(grades=1), r"grades must be a list of 1 numbers \(one per relevant id\)"),
    (ok(grades=["2"]), r"grades must be a list of numbers$"),
    (ok(grades=[True]), r"grades must be a list of numbers$"),
    (ok(grades=[None]), r"grades must be a list of numbers$"),
    (ok(grades=[-1]), r"grades must be positive finite numbers"),
    (ok(grades=[0]), r"grades must be positive finite numbers"),
    (ok(grades=[10**400]), r"grades must be positive finite numbers"),
    ('{"query_id": "a", "vector": [1, 2], "relevant_ids": [1], "grades": [NaN]}', r"grades must be positive finite"),
    (ok(timestamp="yesterday"), r"timestamp 'yesterday' is neither unix seconds nor an ISO-8601 string"),
    (ok(timestamp="1767225600"), r"timestamp '1767225600' is neither unix seconds nor an ISO-8601 string"),
    (ok(timestamp=""), r"timestamp '' is neither unix seconds nor an ISO-8601 string"),
    (ok(timestamp=True), r"timestamp True is neither unix seconds nor an ISO-8601 string"),
    (ok(timestamp=[1]), r"timestamp \[1\] is neither unix seconds nor an ISO-8601 string"),
    ('{"query_id": "a", "vector": [1, 2], "relevant_ids": [1], "timestamp": Infinity}',
     r"timestamp inf is not a finite number of unix seconds"),
    (ok(timestamp=10**400), r"timestamp 1000.* is not a finite number of unix seconds"),
    (ok(split="dev"), r"split is 'dev'; expected 'train', 'val', 'test' or absent"),
    (ok(split=""), r"split is ''; expected 'train', 'val', 'test' or absent"),
    (ok(split="TRAIN"), r"split is 'TRAIN'"),
    (ok(split=1), r"split is 1; expected"),
])
def test_malformed_jsonl_lines_are_named(tmp_path, line, message):
    path = tmp_path / "queries.jsonl"
    good = json.dumps(ok(query_id="first"))
    bad = line if isinstance(line, str) else json.dumps(line)  # lone surrogates as \ud800 escapes
    path.write_text(f"{good}\n\n{bad}\n", encoding="utf-8")
    it = read_log_file(path)
    assert next(it).query_id == "first"
    with pytest.raises(LogFileError, match=r"^queries.jsonl line 3: " + message) as exc:
        next(it)
    assert isinstance(exc.value, InvalidVectors) and isinstance(exc.value, ConnectorError)
    assert isinstance(exc.value, ValueError)


def test_jsonl_dimension_change_names_the_bad_entry_and_the_first(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", *(ok(query_id=f"q{i}", vector=[1.0] * (2 + (i >= 2))) for i in range(4)))
    with pytest.raises(LogFileError, match=r"^d.jsonl line 3: query 'q2' has a 3-d vector; the first entry "
                                           r"\(d.jsonl line 1\) is 2-d$"):
        list(read_log_file(path))


def test_jsonl_bad_encoding_and_truncated_gzip(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(json.dumps(ok()).encode() + b'\n{"query_id": "\xff"}\n')
    with pytest.raises(LogFileError, match=r"^e.jsonl line 2: not valid UTF-8$"):
        list(read_log_file(path))
    write_log_file(tmp_path / "t.jsonl.gz", entries(n=300))
    data = (tmp_path / "t.jsonl.gz").read_bytes()
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LogFileError, match=r"^t.jsonl.gz line \d+: cannot read the file \(Compressed file ended"):
        list(read_log_file(tmp_path / "t.jsonl.gz"))


# -- streaming ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory):
    """50,000 entries (about 8 MB) and a broken last line."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((50_000, 8)).astype(np.float32).tolist()
    with open(path, "w") as f:
        f.writelines(json.dumps({"query_id": f"q{q}", "vector": v, "relevant_ids": [q, q + 1], "timestamp": TS + q})
                     + "\n"
                     for q, v in enumerate(vectors))
        f.write("{broken\n")
    return path


@pytest.mark.parametrize("unique_ids, limit", [(False, 1_000_000), (True, 12_000_000)])
def test_jsonl_is_streamed_in_bounded_memory(big_jsonl, unique_ids, limit):
    it = read_log_file(big_jsonl, unique_ids=unique_ids)
    first = next(it)  # the broken last line is not read yet: entries come as lines are read
    assert first.query_id == "q0" and first.relevant_ids == [0, 1]
    tracemalloc.start()
    try:
        count = 1
        with pytest.raises(LogFileError, match=r"^big.jsonl line 50001: not valid JSON"):
            for e in it:
                count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 50_000
    # the entries alone would take ~25 MB if they were all held; streaming stays well under 1 MB, and
    # the index that refuses a repeated query id (the default) costs a few hundred bytes per entry
    assert peak < limit, peak


def test_jsonl_gz_is_streamed(tmp_path):
    write_log_file(tmp_path / "s.jsonl.gz", entries(n=5_000, dim=4))
    with gzip.open(tmp_path / "s.jsonl.gz", "ab") as f:
        f.write(b"{broken\n")
    it = read_log_file(tmp_path / "s.jsonl.gz")
    assert next(it).query_id == "クエリ 0"


def test_parquet_is_read_batch_by_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(files.parquet, "ROW_GROUP_ROWS", 1000)
    data = entries(n=5000, dim=4)
    write_log_file(tmp_path / "big.parquet", data)
    assert pq.ParquetFile(tmp_path / "big.parquet").num_row_groups == 5
    table = pq.read_table(tmp_path / "big.parquet")
    splits = table.column("split").to_pylist()
    splits[4321] = "dev"
    pq.write_table(table.set_column(5, "split", pa.array(splits)), tmp_path / "bad.parquet")
    it = read_log_file(tmp_path / "bad.parquet")
    assert next(it).query_id == "クエリ 0"  # row 4321 has not been looked at yet
    with pytest.raises(LogFileError, match=r"^bad.parquet row 4321: split is 'dev'"):
        for _ in it:
            pass
    assert_same(data, list(read_log_file(tmp_path / "big.parquet")))


# -- Parquet reading --------------------------------------------------------------------------------------------------


def parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_from_other_writers(tmp_path):
    """Fixed-size lists, int32 ids, int query ids, timestamp columns, dictionary strings, extra columns."""
    stamps = pa.array([int(TS) * 1000, None, int(TS) * 1000 + 1500], pa.int64()).cast(pa.timestamp("ms"))
    path = parquet(
        tmp_path / "other.parquet",
        query_id=pa.array([1, 2, 3], pa.int64()),
        vector=pa.array([[1, 2], [3, 4], [5, 6]], pa.list_(pa.float64(), 2)),
        relevant_ids=pa.array([[1], [2, 3], [4]], pa.list_(pa.int32())),
        grades=pa.array([None, [1, 2], [3]], pa.list_(pa.int64())),
        timestamp=stamps,
        split=pa.array(["train", None, "test"]).dictionary_encode(),
        text=pa.array(["a", "b", "c"]),
    )
    got = list(read_log_file(path))
    assert [e.query_id for e in got] == ["1", "2", "3"]
    assert [e.vector.tolist() for e in got] == [[1, 2], [3, 4], [5, 6]] and got[0].vector.dtype == np.float32
    assert [e.relevant_ids for e in got] == [[1], [2, 3], [4]] and type(got[0].relevant_ids[0]) is int
    assert [e.grades for e in got] == [None, [1.0, 2.0], [3.0]]
    assert [e.timestamp for e in got] == [TS, None, TS + 1.5]
    assert [e.split for e in got] == ["train", None, "test"]


@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Tokyo"])
@pytest.mark.parametrize("unit", ["s", "us", "ns"])
def test_parquet_timestamp_columns_are_utc_instants(tmp_path, tz, unit):
    scale = {"s": 1, "us": 10**6, "ns": 10**9}[unit]
    col = pa.array([int(TS) * scale], pa.int64()).cast(pa.timestamp(unit, tz=tz))
    path = parquet(tmp_path / "t.parquet", query_id=["a"], vector=[[1.0]], relevant_ids=[["x"]], timestamp=col)
    assert next(read_log_file(path)).timestamp == TS


def test_parquet_large_lists_and_strings(tmp_path):
    path = parquet(tmp_path / "l.parquet", query_id=pa.array(["a"], pa.large_string()),
                   vector=pa.array([[0.5, 1.5]], pa.large_list(pa.float32())),
                   relevant_ids=pa.array([["x", "y"]], pa.large_list(pa.large_string())))
    (e,) = read_log_file(path)
    assert (e.query_id, e.vector.tolist(), e.relevant_ids) == ("a", [0.5, 1.5], ["x", "y"])


GOOD = {"query_id": ["a", "b"], "vector": [[1.0, 2.0], [3.0, 4.0]], "relevant_ids": [[1], [2]]}


@pytest.mark.parametrize("columns, message", [
    ({"query_id": ["a", None]}, r"row 1: query_id must be a non-empty string or an integer, got None"),
    ({"vector": [[1.0, 2.0], None]}, r"row 1: vector must be a list of numbers, got NoneType"),
    ({"vector": [[1.0, 2.0], [3.0, None]]}, r"row 1: vector must be a list of numbers$"),
    ({"vector": [["1", "2"], ["3", "4"]]}, r"row 0: vector must be a list of numbers$"),
    ({"vector": [1.0, 2.0]}, r"row 0: vector must be a list of numbers, got float"),
    ({"vector": [[1.0, 2.0], [3.0]]},
     r"row 1: query 'b' has a 1-d vector; the first entry \(bad.parquet row 0\) is 2-d"),
    ({"vector": [[1.0, 2.0], [3.0, float("nan")]]}, r"row 1: query 'b' has NaN or infinite values in its vector"),
    ({"vector": [[1.0, 2.0], [3.0, 1e300]]}, r"row 1: query 'b' has NaN or infinite .* beyond float32"),
    ({"relevant_ids": [[1], []]}, r"row 1: relevant_ids must be a non-empty list of ints or strings$"),
    ({"relevant_ids": [[1], None]}, r"row 1: relevant_ids must be a non-empty list of ints or strings$"),
    ({"relevant_ids": [[1.0], [2.0]]}, r"row 0: relevant_ids must be .*, got 1.0 \(float\)"),
    ({"relevant_ids": [1, 2]}, r"row 0: relevant_ids must be a non-empty list of ints or strings$"),
    ({"grades": [[1.0], [1.0, 2.0]]}, r"row 1: grades must be a list of 1 numbers \(one per relevant id\)"),
    ({"grades": [[1.0], [-2.0]]}, r"row 1: grades must be positive finite numbers"),
    ({"timestamp": ["2026-01-01", "soon"]}, r"row 1: timestamp 'soon' is neither unix seconds nor an ISO-8601"),
    ({"timestamp": [TS, float("inf")]}, r"row 1: timestamp inf is not a finite number of unix seconds"),
    ({"split": ["train", "holdout"]}, r"row 1: split is 'holdout'; expected 'train', 'val', 'test' or absent"),
])
def test_malformed_parquet_rows_are_named(tmp_path, columns, message):
    path = parquet(tmp_path / "bad.parquet", **{**GOOD, **columns})
    with pytest.raises(LogFileError, match=r"^bad.parquet " + message):
        list(read_log_file(path))


def test_parquet_file_errors(tmp_path):
    path = parquet(tmp_path / "cols.parquet", query_id=["a"], embedding=[[1.0]], relevant_ids=[[1]])
    with pytest.raises(LogFileError, match=r"^cols.parquet: missing column\(s\) \['vector'\]; found \['query_id', "
                                           r"'embedding', 'relevant_ids'\]$"):
        list(read_log_file(path))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(LogFileError, match=r"^junk.parquet: not a readable Parquet file"):
        list(read_log_file(tmp_path / "junk.parquet"))


# -- NPZ reading ------------------------------------------------------------------------------------------------------


def npz(path, **over):
    arrays = {"query_ids": np.array(["a", "b"]), "vectors": np.ones((2, 3), np.float32),
              "relevant_indptr": np.array([0, 1, 3]), "relevant_ids": np.array([1, 2, 3]), **over}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_from_other_writers(tmp_path):
    path = npz(tmp_path / "o.npz", query_ids=np.array([10, 11], np.uint32), vectors=np.ones((2, 3), np.int8),
               relevant_ids=np.array([1, 2**64 - 1, 3], np.uint64), grades=np.array([1, 2, 3], np.int64),
               timestamps=np.array(["2026-01-01T00:00:01", "NaT"], "datetime64[s]"),
               splits=np.array(["val", ""]), texts=np.array(["ignored", "too"]))
    got = list(read_log_file(path))
    assert [e.query_id for e in got] == ["10", "11"] and got[0].vector.tolist() == [1.0, 1.0, 1.0]
    assert [e.relevant_ids for e in got] == [[1], [2**64 - 1, 3]] and type(got[1].relevant_ids[0]) is int
    assert [e.grades for e in got] == [[1.0], [2.0, 3.0]]
    assert [e.timestamp for e in got] == [TS + 1, None] and [e.split for e in got] == ["val", None]


@pytest.mark.parametrize("over, message", [
    ({"vectors": None}, r"missing array\(s\) \['vectors'\]; found \['query_ids', 'relevant_ids', 'relevant_indptr'\]"),
    ({"query_ids": np.array([["a"], ["b"]])}, r"array 'query_ids' has shape \(2, 1\) .* expected a 1-D array of"),
    ({"query_ids": np.array([1.0, 2.0])}, r"array 'query_ids' has shape \(2,\) and dtype float64; expected a 1-D"),
    ({"vectors": np.ones(6)}, r"array 'vectors' has shape \(6,\) and dtype float64; expected \(2, dimension\)"),
    ({"vectors": np.ones((3, 2))}, r"array 'vectors' has shape \(3, 2\) .*; expected \(2, dimension\) numbers"),
    ({"vectors": np.array([["1"], ["2"]])}, r"array 'vectors' has shape \(2, 1\) and dtype <U1"),
    ({"relevant_ids": np.array([1.0, 2.0, 3.0])}, r"array 'relevant_ids' .* dtype float64; expected a 1-D array"),
    ({"relevant_indptr": np.array([0, 3])}, r"array 'relevant_indptr' has shape \(2,\) .*; expected \(3,\) integers"),
    ({"relevant_indptr": np.array([0.0, 1.0, 3.0])}, r"array 'relevant_indptr' .* dtype float64; expected \(3,\)"),
    ({"relevant_indptr": np.array([1, 1, 3])},
     r"relevant_indptr must start at 0, never decrease and end at len\(relevant_ids\) = 3$"),
    ({"relevant_indptr": np.array([0, 2, 1])}, r"relevant_indptr must start at 0, never decrease"),
    ({"relevant_indptr": np.array([0, 1, 2])}, r"relevant_indptr must start at 0, never decrease and end at"),
    ({"grades": np.ones(2)}, r"array 'grades' has shape \(2,\) .*; expected \(3,\) numbers, aligned with"),
    ({"timestamps": np.ones(3)}, r"array 'timestamps' has shape \(3,\) .*; expected \(2,\) unix seconds"),
    ({"timestamps": np.array(["x", "y"])}, r"array 'timestamps' has shape \(2,\) and dtype <U1"),
    ({"splits": np.array([1, 2])}, r"array 'splits' has shape \(2,\) and dtype int64; expected \(2,\) strings"),
    ({"relevant_indptr": np.array([0, 0, 3])}, r"entry 0: relevant_ids must be a non-empty list"),
    ({"grades": np.array([1.0, np.nan, 2.0])}, r"entry 1: grades has NaN for some but not all of its relevant ids"),
    ({"grades": np.array([1.0, 0.0, 2.0])}, r"entry 1: grades must be positive finite numbers"),
    ({"vectors": np.array([[1, 2, 3], [4, np.inf, 6]])}, r"entry 1: query 'b' has NaN or infinite values"),
    ({"splits": np.array(["train", "dev"])}, r"entry 1: split is 'dev'"),
    ({"timestamps": np.array([TS, np.inf])}, r"entry 1: timestamp inf is not a finite number"),
    ({"query_ids": np.array(["a", ""])}, r"entry 1: query_id must be a non-empty string or an integer, got ''"),
])
def test_malformed_npz_is_named(tmp_path, over, message):
    prefix = r"^bad.npz " if message.startswith("entry") else r"^bad.npz: "
    with pytest.raises(LogFileError, match=prefix + message):
        list(read_log_file(npz(tmp_path / "bad.npz", **over)))


def test_npz_never_unpickles(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    path = npz(tmp_path / "p.npz", query_ids=np.array([Boom(), Boom()], dtype=object))
    with pytest.raises(LogFileError, match=r"^p.npz: array 'query_ids' cannot be read without pickles"):
        list(read_log_file(path))
    assert not (tmp_path / "pwned.txt").exists() and not os.path.exists("pwned.txt")


def test_npz_file_errors(tmp_path):
    np.save(tmp_path / "single.npy", np.ones(3))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with pytest.raises(LogFileError, match=r"^single.npz: not an NPZ archive \(a single .npy array\?\)$"):
        list(read_log_file(tmp_path / "single.npz"))
    for content in (b"", b"PK\x03\x04 truncated zip", b"plain text"):
        (tmp_path / "junk.npz").write_bytes(content)
        with pytest.raises(LogFileError, match=r"^junk.npz: not a readable NPZ file"):
            list(read_log_file(tmp_path / "junk.npz"))


# -- pyarrow is optional -------------------------------------------------------------------------------------------


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    write_log_file(tmp_path / "x.parquet", entries(n=2))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    message = r"^Parquet log files need pyarrow; install it with: pip install 'nudge-sync\[parquet\]'$"
    with pytest.raises(MissingDependency, match=message) as exc:
        read_log_file(tmp_path / "x.parquet")  # at once, not on iteration
    assert isinstance(exc.value, ImportError) and isinstance(exc.value, ConnectorError)
    with pytest.raises(MissingDependency, match=message):
        write_log_file(tmp_path / "y.parquet", entries(n=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"]
    for name in ("x.jsonl", "x.npz"):  # the other formats do not need it
        write_log_file(tmp_path / name, entries(n=2))
        assert len(list(read_log_file(tmp_path / name))) == 2


def test_a_broken_pyarrow_is_reported_too(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("numpy.core.multiarray failed to import")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(MissingDependency, match=r"need pyarrow \(importing it failed: numpy.core.multiarray failed "
                                                r"to import\); install it with: pip install"):
        write_log_file(tmp_path / "x.parquet", [])


def test_public_api():
    assert {"read_log_file", "write_log_file", "LogFileError"} <= set(connectors.__all__)
    assert connectors.read_log_file is files.read_log_file and connectors.LogFileError is LogFileError
