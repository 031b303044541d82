"""Hypothesis strategies for the bad-input fuzz suite: log files (JSONL, Parquet, NPZ) that start
valid and get a few mutations, and argument vectors for ``run``, ``plan``, ``eval`` and
``feedback add``.

Every generated input comes with the *tokens* an error about it must mention (a field, an option,
the file): a refusal has to name the problem, not merely happen.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tests.fuzz._db import DIM, T0, EmbeddedDB

# -- values --------------------------------------------------------------------------------------------------

#: Numbers as a user might type them, good and bad.
NUMBER_TEXT = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "0", "-0", "1", "-1", "0.5", "2",
                     "1e-300", "1e308", "4096", "4097", "16384", "16385", "2592000", "2592001",
                     "99999999999999999999", "", " ", "0x10", "1_000", "٣", "1,5", "true", "None", "10"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
)
METRIC_TEXT = st.one_of(
    st.sampled_from(["ndcg@10", "recall@5", "mrr@1", "hit@4096", "hit@4097", "ndcg@0", "ndcg@-1", "ndcg@", "@10",
                     "NDCG@10", "r@3", "acc@2", "ndcg@1e3", "ndcg@10.5", "ndcg @ 10", "foo@3", "ndcg",
                     "ndcg@99999999999999999999", "ndcg@٣"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)
#: Collection names: ours, new ones, and names no database accepts.
NAME_TEXT = st.sampled_from(["docs_feedback", "docs_nudge_state", "other_state", "fz_log", "x", "a b", "..", "日本",
                             "-x", "x" * 300, "docs", "docs; drop", "a/b"])
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)


def choice_text(*valid: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(valid), st.sampled_from(["", "NONE", "exact ", "all", "nudge_n", "x"]))


# -- argument vectors ------------------------------------------------------------------------------------------

#: option -> strategy of its value (None: a flag)
RUN_OPTIONS: dict[str, Any] = {
    "--gamma": NUMBER_TEXT, "--objective": METRIC_TEXT, "--context": choice_text("auto", "exact", "search"),
    "--context-k": NUMBER_TEXT, "--val-fraction": NUMBER_TEXT, "--split-salt": _TEXT,
    "--min-val-queries": NUMBER_TEXT, "--min-gain": NUMBER_TEXT, "--max-changed-fraction": NUMBER_TEXT,
    "--min-new-feedback": NUMBER_TEXT, "--tolerance": NUMBER_TEXT, "--batch-size": NUMBER_TEXT,
    "--lock-ttl": NUMBER_TEXT, "--method": choice_text("nudge-n", "nudge-m"),
    "--gamma-search": choice_text("fine", "parity"), "--break-lock": None, "--log": NAME_TEXT, "--state": NAME_TEXT,
}
EVAL_OPTIONS: dict[str, Any] = {
    "--metric": METRIC_TEXT, "--val-fraction": NUMBER_TEXT, "--split": choice_text("auto", "test", "val", "train", "all"),
    "--mode": choice_text("exact", "search"), "--split-salt": _TEXT, "--log": NAME_TEXT, "--state": NAME_TEXT,
}


@dataclass
class Input:
    """One generated input: the arguments after the command, and what an error about it must name."""

    args: list[str]
    tokens: set[str] = field(default_factory=set)


@st.composite
def option_args(draw: st.DrawFn, options: dict[str, Any], max_options: int = 3) -> Input:
    chosen = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=max_options, unique=True))
    out = Input([])
    for name in chosen:
        out.tokens |= {name, name.lstrip("-"), name.lstrip("-").replace("-", "_")}
        if options[name] is None:
            out.args.append(name)
            continue
        value = draw(options[name])
        out.args += [name, value]
        if len(value.strip()) >= 3:
            out.tokens.add(value.strip())
    if {"--log", "--state"} & set(chosen):
        out.tokens |= {"collection", "log", "state"}
    return out


@st.composite
def add_args(draw: st.DrawFn, db: EmbeddedDB, folder: Path) -> Input:
    """``feedback add`` arguments: each part valid or not."""
    out = Input(["--query-id", draw(st.one_of(st.just("fz-add"), _TEXT, st.just(""), st.just("x" * 3000)))])
    out.tokens |= {"--query-id", "query_id", "query id"}
    if draw(st.booleans()):
        vector = draw(st.one_of(
            st.lists(st.floats(-2, 2, allow_nan=False), min_size=DIM, max_size=DIM).filter(any),
            st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=DIM + 2),
            st.just([0.0] * DIM)))
        text = draw(st.sampled_from([",", " ", ", "])).join(repr(v) if math.isfinite(v) else str(v) for v in vector)
        out.args += ["--vector", draw(st.one_of(st.just(text), _TEXT, st.just("")))]
        out.tokens |= {"--vector", "vector", "dimension"}
    else:
        out.args += ["--vector-file", str(draw(vector_files(folder)))]
        out.tokens |= {"--vector-file", "vector"}
    for rid in draw(st.lists(st.one_of(st.sampled_from([str(i) for i in db.ids[:5]]), st.sampled_from(
            ["", "-", "--5", "²", "٣", "9" * 30, "-1", "doc-999", " 4"]), _TEXT), min_size=1, max_size=3)):
        out.args += ["--relevant", rid]
    out.tokens |= {"--relevant", "relevant"}
    for flag, values in (("--grade", NUMBER_TEXT), ("--timestamp", st.one_of(NUMBER_TEXT, st.sampled_from(
            [str(T0), "1700000420000", "1.7e18", "946684799"]))), ("--split", choice_text("train", "val", "test"))):
        if draw(st.booleans()):
            out.args += [flag, draw(values)]
            out.tokens |= {flag, flag.lstrip("-"), "grades" if flag == "--grade" else flag.lstrip("-")}
    return out


@st.composite
def vector_files(draw: st.DrawFn, folder: Path) -> Path:
    """A ``--vector-file``: a .npy of any dtype and shape, a text file, random bytes or an archive."""
    kind = draw(st.sampled_from(["npy", "text", "bytes", "npz"]))
    path = folder / f"vector-{draw(st.integers(0, 10**9))}.{'npy' if kind != 'text' else 'txt'}"
    if kind == "npy":
        dtype = draw(st.sampled_from(["<f4", ">f8", "<f2", "<i8", "<u1", "<c8", "?", "<U3", "<M8[s]"]))
        shape = draw(st.sampled_from([(DIM,), (1, DIM), (2, DIM), (DIM + 1,), (0,), ()]))
        values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape) * 4
        np.save(path, values.astype(dtype) if dtype not in ("<U3",) else values.astype(str))
    elif kind == "text":
        numbers = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=DIM + 1))
        path.write_text(draw(st.sampled_from(["\n", ",", " "])).join(map(repr, numbers)))
    elif kind == "bytes":
        path.write_bytes(draw(st.binary(max_size=200)))
    else:
        with open(path, "wb") as f:
            np.savez(f, v=np.ones(DIM))
    return path


# -- log files ---------------------------------------------------------------------------------------------------

#: field -> values that break the entry rule or a limit (some are fine on some databases)
BAD_VALUES: dict[str, list[Any]] = {
    "query_id": ["", None, 1.5, True, ["q"], {"a": 1}, "x" * 3000, "日" * 700],
    "vector": [[math.nan] * DIM, [math.inf] + [1.0] * (DIM - 1), [1e39] * DIM, [], "1,2", [[1.0] * DIM],
               [0.0] * DIM, [True] * DIM, [1.0] * (DIM + 1), [1.0] * (DIM - 1), None, [10**400] * DIM],
    "relevant_ids": [[], "doc-001", 4, [1.5], [True], [""], [2**64], [None], [["a"]], None, {"a": 1},
                     list(range(6000)), [f"doc-{i:05d}" for i in range(9000)]],
    "grades": [[-1.0], [0], [math.nan], ["2"], [True], 1, [1.0, 2.0, 3.0, 4.0], [1e400]],
    "timestamp": [1_700_000_420_000, 1.7e15, 1.7e18, 0, -5, 1e300, math.inf, "yesterday", "1999-12-31",
                  "9999-12-31T00:00:00", True, [T0], 946_684_799],
    "split": ["dev", "", 1, "TRAIN", None, ["train"]],
}


@st.composite
def base_entries(draw: st.DrawFn, db: EmbeddedDB) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 4))
    tag = draw(st.integers(0, 10**6))
    out = []
    for i in range(n):
        rel = draw(st.lists(st.sampled_from(list(db.ids)), min_size=1, max_size=3))
        vec = draw(st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=DIM, max_size=DIM).filter(any))
        entry: dict[str, Any] = {"query_id": f"fz-{tag}-{i}", "vector": vec, "relevant_ids": rel}
        if draw(st.booleans()):
            entry["grades"] = draw(st.lists(st.floats(0.5, 3), min_size=len(rel), max_size=len(rel)))
        if draw(st.booleans()):
            entry["timestamp"] = draw(st.floats(T0 - 1e7, T0))
        if draw(st.booleans()):
            entry["split"] = draw(st.sampled_from(["train", "val", "test"]))
        out.append(entry)
    return out


@st.composite
def log_files(draw: st.DrawFn, db: EmbeddedDB, folder: Path) -> Input:
    """A log file that starts valid and gets 0-2 mutations; ``args`` is ``[path]``."""
    entries = draw(base_entries(db))
    tokens: set[str] = set()
    raw_lines: list[tuple[int, str]] = []
    for _ in range(draw(st.integers(0, 2))):
        n = draw(st.integers(0, len(entries) - 1))
        kind = draw(st.sampled_from([*BAD_VALUES, "missing", "duplicate", "garbage"]))
        if kind in BAD_VALUES:
            entries[n][kind] = draw(st.sampled_from(BAD_VALUES[kind]))
            tokens |= {kind.split("_")[0], kind}
        elif kind == "missing":
            name = draw(st.sampled_from(["query_id", "vector", "relevant_ids"]))
            entries[n].pop(name, None)
            tokens.add(name)
        elif kind == "duplicate":
            entries.append(dict(entries[n], relevant_ids=[db.ids[0]]))
            tokens.add("query_id")
        else:
            raw_lines.append((n, draw(st.sampled_from(
                ["{broken", "[1, 2]", '"text"', "null", "{}", "\udcff", "{" * 5000 + "}" * 5000,
                 '{"query_id": "d", "vector": ' + "[" * 3000 + "]" * 3000 + ', "relevant_ids": [1]}']))))
            tokens |= {"json", "line", "field", "utf-8"}
    fmt = draw(st.sampled_from(["jsonl", "jsonl", "jsonl.gz", "parquet", "npz"]))
    path = folder / f"fuzz-{draw(st.integers(0, 10**9))}.{fmt}"
    written = False
    if fmt == "parquet" and not raw_lines:
        written = _write_parquet(path, entries)
    elif fmt == "npz" and not raw_lines:
        written = _write_npz(path, entries)
    if not written:
        path = path.with_suffix(".jsonl") if fmt != "jsonl.gz" else path
        _write_jsonl(path, entries, raw_lines)
    tokens.add(path.name)
    return Input([str(path)], tokens)


def _write_jsonl(path: Path, entries: list[dict[str, Any]], raw_lines: list[tuple[int, str]]) -> None:
    lines = [json.dumps(e, ensure_ascii=False) for e in entries]  # NaN / Infinity as JSON's extensions
    for n, raw in raw_lines:
        lines.insert(n, raw)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    if path.name.endswith(".gz"):
        import gzip

        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def _write_parquet(path: Path, entries: list[dict[str, Any]]) -> bool:
    """False when pyarrow cannot hold these values in typed columns (then the caller writes JSONL)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = sorted({k for e in entries for k in e})
    try:
        table = pa.table({k: [e.get(k) for e in entries] for k in names})
        pq.write_table(table, path)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        path.unlink(missing_ok=True)
        return False
    return True


def _write_npz(path: Path, entries: list[dict[str, Any]]) -> bool:
    """False when the entries do not fit NPZ's arrays (then the caller writes JSONL)."""
    try:
        ids = [e["relevant_ids"] for e in entries]
        flat = [i for row in ids for i in row]
        arrays = {
            "query_ids": np.array([e["query_id"] for e in entries]),
            "vectors": np.array([e["vector"] for e in entries], dtype=np.float64),
            "relevant_indptr": np.cumsum([0] + [len(row) for row in ids]),
            "relevant_ids": np.array(flat),
            "timestamps": np.array([e.get("timestamp", math.nan) for e in entries], dtype=np.float64),
            "splits": np.array([e.get("split") or "" for e in entries]),
        }
        if arrays["relevant_ids"].dtype.kind not in "iuU" or arrays["query_ids"].dtype.kind not in "iuU":
            return False
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    except (KeyError, TypeError, ValueError, OverflowError):
        path.unlink(missing_ok=True)
        return False
    return True
