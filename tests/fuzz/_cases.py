"""The regression corpus: every concrete bad input of issue #11, what it must get, and on which databases.

``{uri}`` is the test database's store URI, ``{corpus}`` the folder of regression files
(tests/fuzz/corpus/, written by ``python -m tests.fuzz.make_corpus``). A case runs on every backend
named in ``backends``; ``ONE`` means the input is refused before any database is opened, so one
backend is enough (the suite spreads those over the three). ``code`` is the exit code, ``codes``
overrides it per backend; ``message`` must be found in the last line on stderr (in the whole output
for exit codes 0 and 3). ``then`` runs afterwards and must exit 0 or 3: the log is still usable.
The README's bad-input table is generated from this list (tests/fuzz/_table.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL = ("qdrant", "milvus", "chroma")
ONE = ("one",)


@dataclass(frozen=True)
class Case:
    category: str
    label: str  #: what the input is, for the README table
    args: tuple[str, ...]
    code: int
    message: str
    codes: dict[str, int] = field(default_factory=dict)
    backends: tuple[str, ...] = ONE
    then: tuple[str, ...] = ()
    issue: str = ""  #: the defect of issue #11 this case reproduces

    def code_on(self, backend: str) -> int:
        return self.codes.get(backend, self.code)

    @property
    def name(self) -> str:
        return self.label.split(" (")[0].replace(" ", "-")


LOGS = "log files and entries"
LIMITS = "database limits"
OPTIONS = "command-line options"
ADD = "feedback add"
URIS = "store URIs"
CONFIG = "config files"

_IMPORT = ("feedback", "import", "--store", "{uri}")
_ADD = ("feedback", "add", "--store", "{uri}", "--query-id", "q-new", "--relevant", "4")
_VEC = "0.5,-0.25,0.125,0.75,-0.5,0.25,0.0625,-0.125"

CASES: tuple[Case, ...] = (
    # -- database limits -------------------------------------------------------------------------------
    Case(LIMITS, "one entry with 5,500 relevant ids", (*_IMPORT, "{corpus}/relevant_ids_5500.jsonl.gz"), 0,
         "appended 1 entries", backends=ALL, then=("plan", "--store", "{uri}"), issue="1"),
    Case(LIMITS, "one entry with 9,000 relevant ids (99 kB of fields)", (*_IMPORT, "{corpus}/relevant_ids_9000.jsonl.gz"),
         0, "appended 1 entries|65,536 bytes", codes={"milvus": 4}, backends=ALL, then=("plan", "--store", "{uri}"),
         issue="1"),
    Case(LIMITS, "2,500 lines, line 2,101 with a 3,000-character query_id",
         (*_IMPORT, "{corpus}/query_id_3000_chars_line_2101.jsonl.gz"), 4, r"line 2101: .*2,048",
         backends=("milvus",), then=("plan", "--store", "{uri}"), issue="2"),
    # -- log files and entries -------------------------------------------------------------------------
    Case(LOGS, "millisecond timestamp (JSONL)", (*_IMPORT, "{corpus}/timestamp_milliseconds.jsonl"), 4,
         "looks like milliseconds since the epoch: divide by 1,000", issue="3"),
    Case(LOGS, "millisecond timestamp (Parquet)", (*_IMPORT, "{corpus}/timestamp_milliseconds.parquet"), 4,
         "row 0: timestamp .* looks like milliseconds", issue="3"),
    Case(LOGS, "microsecond timestamp", (*_IMPORT, "{corpus}/timestamp_microseconds.jsonl"), 4,
         "looks like microseconds since the epoch", issue="3"),
    Case(LOGS, "nanosecond timestamp", (*_IMPORT, "{corpus}/timestamp_nanoseconds.jsonl"), 4,
         "looks like nanoseconds since the epoch", issue="3"),
    Case(LOGS, "timestamp before 2000", (*_IMPORT, "{corpus}/timestamp_before_2000.jsonl"), 4, "before 2000-01-01"),
    Case(LOGS, "all-zero query vector (JSONL)", (*_IMPORT, "{corpus}/vector_all_zero.jsonl"), 4, "all-zero vector",
         issue="3"),
    Case(LOGS, "all-zero query vector (NPZ)", (*_IMPORT, "{corpus}/vector_all_zero.npz"), 4,
         "entry 0: query 'zero' has an all-zero vector", issue="3"),
    Case(LOGS, "empty relevant id", (*_IMPORT, "{corpus}/relevant_id_empty_string.jsonl"), 4,
         "relevant_ids contains an empty string", issue="3"),
    Case(LOGS, "query id twice in one file (import)", (*_IMPORT, "{corpus}/query_id_twice.jsonl"), 4,
         "line 3: query_id 'same' was already given at .*query_id_twice.jsonl'? line 1", issue="3"),
    Case(LOGS, "query id twice in one file (run --log-file)",
         ("run", "--store", "{uri}", "--log-file", "{corpus}/query_id_twice.jsonl"), 4,
         "line 3: query_id 'same' was already given at query_id_twice.jsonl line 1", issue="3"),
    Case(LOGS, "JSONL line nested 100,000 deep", (*_IMPORT, "{corpus}/deeply_nested.jsonl.gz"), 4,
         "line 1: JSON nested too deeply", issue="4"),
    # -- command-line options --------------------------------------------------------------------------
    Case(OPTIONS, "--objective foo", ("run", "--store", "{uri}", "--objective", "foo"), 2,
         "--objective.*unknown metric 'foo'", issue="4"),
    Case(OPTIONS, "--objective ndcg@0", ("run", "--store", "{uri}", "--objective", "ndcg@0"), 2,
         "--objective.*k must be >= 1", issue="4"),
    Case(OPTIONS, "--objective ndcg@abc", ("run", "--store", "{uri}", "--objective", "ndcg@abc"), 2,
         "--objective.*unknown metric", issue="4"),
    Case(OPTIONS, "--objective ndcg@99999999999999999999",
         ("run", "--store", "{uri}", "--objective", "ndcg@99999999999999999999"), 2, "--objective.*at most 4096",
         issue="4"),
    Case(OPTIONS, "eval --metric foo@3", ("eval", "--store", "{uri}", "--metric", "foo@3"), 2,
         "--metric.*unknown metric 'foo@3'", issue="4"),
    Case(OPTIONS, "--context-k 100000000", ("run", "--store", "{uri}", "--context-k", "100000000"), 2,
         "--context-k.*>= 1 and <= 4096", issue="4"),
    Case(OPTIONS, "--context-k 4096 on a 60-record collection",
         ("plan", "--store", "{uri}", "--context-k", "4096"), 0, "context_k=4096 is more than the 60 records",
         codes={}, backends=("qdrant",), issue="4"),
    Case(OPTIONS, "--tolerance nan", ("run", "--store", "{uri}", "--tolerance", "nan"), 2,
         "--tolerance.*not a finite number", issue="5"),
    Case(OPTIONS, "--min-gain nan", ("run", "--store", "{uri}", "--min-gain", "nan"), 2,
         "--min-gain.*not a finite number", issue="5"),
    Case(OPTIONS, "--lock-ttl nan", ("run", "--store", "{uri}", "--lock-ttl", "nan"), 2,
         "--lock-ttl.*not a finite number", issue="5"),
    Case(OPTIONS, "--lock-ttl inf", ("run", "--store", "{uri}", "--lock-ttl", "inf"), 2,
         "--lock-ttl.*not a finite number", issue="5"),
    Case(OPTIONS, "--val-fraction 1", ("run", "--store", "{uri}", "--val-fraction", "1"), 2,
         r"--val-fraction.*strictly between 0 and 1"),
    Case(OPTIONS, "history --limit -1", ("history", "--store", "{uri}", "--limit", "-1"), 2,
         "--limit.*-1 is not in the range x>=1", issue="6"),
    Case(OPTIONS, "history --limit 0", ("history", "--store", "{uri}", "--limit", "0"), 2,
         "--limit.*0 is not in the range x>=1", issue="6"),
    # -- feedback add ----------------------------------------------------------------------------------
    Case(ADD, "--vector of zeros", (*_ADD, "--vector", "0,0,0,0,0,0,0,0"), 4, "--vector: .*all-zero vector",
         issue="3"),
    Case(ADD, "--relevant ''", ("feedback", "add", "--store", "{uri}", "--query-id", "q-new", "--vector", _VEC,
                                "--relevant", ""), 4, "--relevant: relevant_ids contains an empty string", issue="3"),
    Case(ADD, "--timestamp in milliseconds", (*_ADD, "--vector", _VEC, "--timestamp", "1700000420000"), 4,
         "--timestamp: .*looks like milliseconds", issue="3"),
    Case(ADD, "--vector-file: an .npz named .npy", (*_ADD, "--vector-file", "{corpus}/archive_named.npy"), 4,
         "is a zip archive", issue="4"),
    Case(ADD, "--vector-file: complex numbers", (*_ADD, "--vector-file", "{corpus}/complex.npy"), 4,
         "holds an array of complex64", issue="6"),
    Case(ADD, "--vector-file: random bytes", (*_ADD, "--vector-file", "{corpus}/random_bytes.npy"), 4,
         "neither a .npy array nor a text file of numbers", issue="6"),
    Case(ADD, "--vector-file: a numpy object array", (*_ADD, "--vector-file", "{corpus}/pickled.npy"), 4,
         r"not a numeric \.npy array: it holds Python objects", issue="6"),
    Case(ADD, "--vector-file: a bare pickle", (*_ADD, "--vector-file", "{corpus}/not_a_pickle_either.npy"), 4,
         "neither a .npy array nor a text file of numbers", issue="6"),
    # -- store URIs ------------------------------------------------------------------------------------
    Case(URIS, "qdrant+http://[::1?collection=x", ("status", "--store", "qdrant+http://[::1?collection=x"), 2,
         "not a valid server address", issue="4"),
    Case(URIS, "vector=nope on Chroma", ("status", "--store", "{uri}&vector=nope"), 2,
         "unknown option 'vector' for chroma", backends=("chroma",), issue="6"),
    # -- config files ----------------------------------------------------------------------------------
    Case(CONFIG, "binary config file", ("--config", "{corpus}/binary.toml", "status", "--store", "{uri}"), 2,
         "is not UTF-8 text", issue="4"),
    Case(CONFIG, "[feedback.import] unknown option",
         ("--config", "{corpus}/feedback_import_unknown_option.toml", "status", "--store", "{uri}"), 2,
         r"\[feedback.import\] has unknown option\(s\) \['batch_sise'\]", issue="6"),
    Case(CONFIG, "[feedback.import] batch_size = \"many\"",
         ("--config", "{corpus}/feedback_import_bad_value.toml", "feedback", "import", "--store", "{uri}",
          "{corpus}/vector_all_zero.jsonl"), 2, "--batch-size.*'many' is not a valid integer"),
    Case(CONFIG, "[run] min_gain = nan", ("--config", "{corpus}/run_min_gain_nan.toml", "run", "--store", "{uri}"),
         2, "--min-gain.*not a finite number", issue="5"),
)
