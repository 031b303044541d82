"""The parsers every bad input meets first, fuzzed in-process with many examples (milliseconds each):
store URIs, config files, log files and the entry rule raise only their documented errors, and
whatever they accept satisfies the rule.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connectors
from connectors import InvalidEntry, InvalidURI, LabelledQuery, LogFileError, MissingDependency
from connectors._entry import EARLIEST_TIMESTAMP, FUTURE_SLACK, labelled_query
from nudge_sync.cli.app import cli
from nudge_sync.cli.config import load_config
from nudge_sync.engine.errors import RefusedInput

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


# -- store URIs ------------------------------------------------------------------------------------------------

_uri_parts = st.one_of(
    _text,
    st.builds(lambda scheme, rest: f"{scheme}{rest}",
              st.sampled_from(["qdrant:", "qdrant+http://", "milvus+https://", "chroma://", "chroma+http://",
                               "qdrant::memory:", "milvus:///", "qdrant+grpc://", "+http://", "QDRANT+HTTP://"]),
              st.text(st.sampled_from("[]:?&=/@%#.-_ 0123456789abcx\u00e9"), max_size=30)),
)


@FAST
@given(_uri_parts)
def test_parse_uri_raises_only_invalid_uri(text):
    try:
        config = connectors.parse_uri(text, env={})
    except (InvalidURI, MissingDependency):
        return
    assert config.collection and config.backend in ("qdrant", "milvus", "chroma")


# -- config files --------------------------------------------------------------------------------------------

_toml_values = st.one_of(st.integers(-10**20, 10**20).map(str), st.floats().map(lambda f: str(f).lower()),
                         st.sampled_from(["true", "false", '"ndcg@10"', "[1, 2]", "{a = 1}", "1979-05-27", '"x"',
                                          "nan", "-inf", "[]", '["ndcg@10", "hit@1"]']))
_toml_keys = st.sampled_from(["store", "collection", "log", "min_gain", "batch_size", "metric", "split", "limit",
                              "dry_run", "api_key", "nope", "context-k"])
_toml_tables = st.sampled_from(["", "[run]\n", "[eval]\n", "[feedback]\n", "[feedback.import]\n", "[feedback.add]\n",
                                "[history]\n", "[nope]\n", "[run.x]\n"])


@FAST
@given(st.one_of(
    st.lists(st.tuples(_toml_tables, _toml_keys, _toml_values), max_size=4).map(
        lambda rows: "".join(f"{t}{k} = {v}\n" for t, k, v in rows).encode()),
    st.binary(max_size=64)))
def test_load_config_raises_only_refused_input(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("config") / "c.toml"
    path.write_bytes(data)
    try:
        defaults = load_config(path, cli.commands)
    except RefusedInput as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(defaults, dict)


# -- log files -----------------------------------------------------------------------------------------------

_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=3)), max_leaves=12)


@FAST
@given(st.lists(st.one_of(
    st.fixed_dictionaries({"query_id": _json_values, "vector": _json_values, "relevant_ids": _json_values},
                          optional={"grades": _json_values, "timestamp": _json_values, "split": _json_values}),
    _json_values), min_size=1, max_size=4))
def test_read_log_file_raises_only_log_file_errors(tmp_path_factory, objects):
    path = tmp_path_factory.mktemp("logs") / "x.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n")
    try:
        entries = list(connectors.read_log_file(path))
    except LogFileError as exc:
        assert str(exc).startswith("x.jsonl line ")
        return
    for e in entries:  # whatever a file gives passes the rule as it is
        assert connectors.check_entry(e).query_id == e.query_id


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_are_never_more_than_a_log_file_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("bytes")
    for name in ("x.jsonl", "x.jsonl.gz", "x.parquet", "x.npz"):
        (folder / name).write_bytes(data)
        try:
            list(connectors.read_log_file(folder / name))
        except LogFileError:
            pass


# -- the entry rule --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stamp, message", [
    (1_700_000_420_000, r"looks like milliseconds since the epoch: divide by 1,000 "),
    (1_700_000_420_000_000, r"looks like microseconds since the epoch: divide by 1,000,000 "),
    (1.7e18, r"looks like nanoseconds since the epoch: divide by 1,000,000,000 "),
    (EARLIEST_TIMESTAMP - 1, r"is before 2000-01-01 \(1999-12-31 23:59:59 UTC\)"),
    (1e300, r"is more than a day in the future \(beyond the calendar\)"),
    ("9999-12-31", r"is more than a day in the future \(9999-12-31"),
    ("1969-07-20T20:17:40Z", r"is before 2000-01-01"),
    (math.nan, r"is not a finite number"),
])
def test_timestamps_in_other_units_or_out_of_range_are_named(stamp, message):
    with pytest.raises(InvalidEntry, match=message) as exc:
        labelled_query("q", [1.0], [1], timestamp=stamp)
    assert exc.value.field == "timestamp"


def test_timestamps_from_2000_to_a_day_ahead_are_fine():
    now = time.time()
    for stamp in (EARLIEST_TIMESTAMP, now, now + FUTURE_SLACK - 60, "2026-01-01T00:00:00+02:00"):
        assert labelled_query("q", [1.0], [1], timestamp=stamp).timestamp is not None


@pytest.mark.parametrize("vector, field, message", [
    ([0.0, 0.0], "vector", "all-zero vector"),
    ([-0.0], "vector", "all-zero vector"),
    (np.zeros(3, np.float64), "vector", "all-zero vector"),
    (np.array([1 + 1j]), "vector", "got an array of complex128"),
    ([1e-46], "vector", "all-zero vector"),  # a float32 underflow is a zero vector too
])
def test_vectors_without_a_direction_are_refused(vector, field, message):
    with pytest.raises(InvalidEntry, match=message) as exc:
        labelled_query("q", vector, [1])
    assert exc.value.field == field


@FAST
@given(st.builds(LabelledQuery, st.one_of(_text, st.integers()), st.lists(st.floats(), max_size=4),
                 st.lists(st.one_of(_text, st.integers(-(2**65), 2**65)), max_size=3),
                 st.none() | st.lists(st.floats(), max_size=3), st.none() | st.floats(),
                 st.none() | st.sampled_from(["train", "val", "test", "dev"])))
def test_the_rule_refuses_only_with_invalid_entry(entry):
    try:
        e = connectors.check_entry(entry)
    except InvalidEntry as exc:
        assert exc.field in ("query_id", "vector", "relevant_ids", "grades", "timestamp", "split")
        return
    assert e.vector.dtype == np.float32 and np.isfinite(e.vector).all() and e.vector.any()
    assert e.relevant_ids and all(i != "" for i in e.relevant_ids)
    assert e.timestamp is None or EARLIEST_TIMESTAMP <= e.timestamp <= time.time() + FUTURE_SLACK
