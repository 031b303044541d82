"""Every file a user names is read with a size limit (issue 18, finding 6).

``secret_file=/dev/zero``, ``--vector-file /dev/zero``, ``--config /dev/zero``, a FIFO nobody
writes to, a JSONL line that never ends (a small gzip file inflating to 70 MB of one line), an NPZ
archive declaring a 1.6 GB array: each command exits with its documented code and a message naming
the file and the limit, without a traceback, a hang or a memory blow-up (before, /dev/zero was read
whole until the process was killed for memory), and the collection is left as it was.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.backends import random_vectors
from tests.user._native import checksum, embedded_backend
from tests.user._runner import nudge

@pytest.fixture
def collection(tmp_path):
    backend = embedded_backend("qdrant-local", tmp_path / "db")
    with backend.native() as h:
        ids = h.make_ids(20)
    backend.create("docs", ids, random_vectors(20, 8, seed=1, normalize=True), metric="cosine")
    return backend


def untouched(backend, before: str) -> None:
    assert checksum(backend.read("docs")[1]) == before
    assert sorted(backend.collections()) == ["docs"], "something was created"


def refused(args: list[str], code: int, *needles: str):
    result = nudge(*args, expect=code, as_json=False)
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in the message\n{result.describe()}"
    return result


def test_secret_file_dev_zero(collection):
    before = checksum(collection.read("docs")[1])
    refused(["status", "--store", collection.uri("docs", secret_file="/dev/zero")], 2,
            "secret_file='/dev/zero'", "65,536 bytes")
    untouched(collection, before)


def test_vector_file_dev_zero_and_fifo(collection, tmp_path):
    before = checksum(collection.read("docs")[1])
    add = ["feedback", "add", "--store", collection.uri("docs"), "--query-id", "q1", "--relevant", "0"]
    refused([*add, "--vector-file", "/dev/zero"], 4, "--vector-file '/dev/zero'", "16,777,216 bytes")
    fifo = tmp_path / "vector.fifo"
    os.mkfifo(fifo)  # nobody writes to it: open() alone would block forever
    refused([*add, "--vector-file", str(fifo)], 4, "not a regular file and nothing arrived from it")
    untouched(collection, before)


def test_config_file_dev_zero(collection):
    before = checksum(collection.read("docs")[1])
    refused(["--config", "/dev/zero", "status", "--store", collection.uri("docs")], 2,
            "config file '/dev/zero'", "1,048,576 bytes")
    untouched(collection, before)


def test_a_log_line_that_never_ends(collection, tmp_path):
    before = checksum(collection.read("docs")[1])
    path = tmp_path / "endless.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:  # ~70 KB on disk, one 70 MB line inflated
        f.write(b'{"query_id": "q1", "vector": [' + b"0.1, " * (14 * 1024 * 1024))
    assert path.stat().st_size < 1024 * 1024
    refused(["feedback", "import", "--store", collection.uri("docs"), str(path)], 4,
            "endless.jsonl.gz line 1", "longer than 67,108,864 bytes")
    untouched(collection, before)


def test_an_npz_declaring_a_huge_array(collection, tmp_path):
    before = checksum(collection.read("docs")[1])
    path = tmp_path / "huge.npz"
    small = {"query_ids": np.array(["q1"]), "relevant_indptr": np.array([0, 1]), "relevant_ids": np.array([0])}
    with zipfile.ZipFile(path, "w") as z:
        for key, arr in small.items():
            with z.open(f"{key}.npy", "w") as out:
                np.lib.format.write_array(out, arr)
        with z.open("vectors.npy", "w") as out:  # a header promising 1.6 GB, and no data
            np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False,
                                                       "shape": (100_000, 4096)})
    refused(["feedback", "import", "--store", collection.uri("docs"), str(path)], 4,
            "huge.npz", "1,073,741,824 bytes", "JSONL or Parquet")
    untouched(collection, before)


def test_a_log_file_that_is_dev_zero(collection):
    """Cold try: the message asked to "pass format=", an option no command has."""
    before = checksum(collection.read("docs")[1])
    for args in (["run", "--log-file", "/dev/zero"], ["feedback", "import", "/dev/zero"]):
        result = refused([*args, "--store", collection.uri("docs")], 2, "log file '/dev/zero' is too large",
                         "67,108,864 bytes per JSONL line")
        assert "format=" not in result.stderr
    untouched(collection, before)


def test_an_empty_secret_file_is_refused(collection, tmp_path):
    """Cold try: an empty secret_file was taken for "no credentials"."""
    before = checksum(collection.read("docs")[1])
    for name, content in (("empty.token", b""), ("blank.token", b" \n\t\n")):
        path = tmp_path / name
        path.write_bytes(content)
        refused(["status", "--store", collection.uri("docs", secret_file=str(path))], 2,
                f"secret_file={str(path)!r} is empty")
    untouched(collection, before)
