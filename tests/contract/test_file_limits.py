"""Size limits of the log file readers, checked from metadata before anything is decoded (issue 18,
finding 6); the user-level cases (/dev/zero, endless lines, huge NPZ headers) are in
tests/user/test_bounded_reads.py. Limits are lowered here so the files stay small."""

from __future__ import annotations

import numpy as np
import pytest

import connectors
from connectors.files import npz, parquet
from tests.engine.test_refusals import make_entries


def entries(n: int = 50):
    ids = list(range(60))  # make_entries picks answers among 60 records
    return make_entries(ids, np.random.default_rng(0).normal(size=(60, 8)), n_queries=n, dim=8)


def test_parquet_row_group_over_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    path = tmp_path / "log.parquet"
    connectors.write_log_file(path, entries())
    assert len(list(connectors.read_log_file(path))) == 50
    monkeypatch.setattr(parquet, "MAX_ROW_GROUP_BYTES", 1000)
    with pytest.raises(connectors.LogFileError, match=r"log.parquet: row group 0 takes [\d,]+ bytes uncompressed"):
        next(connectors.read_log_file(path))


def test_npz_over_the_limit_is_refused_from_its_headers(tmp_path, monkeypatch):
    path = tmp_path / "log.npz"
    connectors.write_log_file(path, entries())
    assert len(list(connectors.read_log_file(path))) == 50
    monkeypatch.setattr(npz, "MAX_NPZ_BYTES", 1000)
    with pytest.raises(connectors.LogFileError, match="log.npz: its arrays would take more than 1,000 bytes"):
        next(connectors.read_log_file(path))


def test_read_bounded_limits_regular_files_and_devices(tmp_path):
    small = tmp_path / "s"
    small.write_bytes(b"abc")
    assert connectors.read_bounded(small, 3, "s") == b"abc"
    with pytest.raises(connectors.InvalidURI, match="s is 3 bytes; at most 2"):
        connectors.read_bounded(small, 2, "s")
    with pytest.raises(ValueError, match="/dev/zero holds more than 100 bytes"):
        connectors.read_bounded("/dev/zero", 100, "/dev/zero", ValueError)
    with pytest.raises(connectors.InvalidURI, match="is a directory"):
        connectors.read_bounded(tmp_path, 100, "dir")
