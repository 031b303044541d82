"""Milvus harnesses: ``milvus-lite`` (MilvusClient on a temp ``.db``, in process), ``milvus-lite-server``
(``milvus-lite server`` on a free loopback port) and ``milvus-2.3.5`` (PyPI ``milvus==2.3.5``: a real
Milvus 2.3.5 standalone with embedded etcd, run by ``milvus-server``, with authentication on).
Servers are started and stopped by PID (their whole process group).

``rich=True`` collections carry scalar fields of several types (INT8/16/32/64, FLOAT, DOUBLE, BOOL,
unicode VARCHAR, ARRAY of VARCHAR and of INT64), a JSON field, dynamic fields (absent on every third
record), a VARCHAR ``document``, and -- on engines that allow more than one vector field (Milvus
Lite; Milvus >= 2.4) -- a second vector ``aux`` and a nullable field. The target vector field is
``vector`` and the URI names it (``vector=vector``), since rich Lite collections have two.

Outside pytest (benchmarks): ``start_milvus_lite_server(data_dir)`` -> ``(proc, uri)`` and
``start_milvus_server(data_dir)`` -> ``(proc, uri, token)``; stop both with ``stop_server(proc)``.

Facts about ``milvus-server`` (milvus 2.3.5 on PyPI) that shape the fixture:

* It unpacks ~250 MB of binaries into ``<data>/bin`` on first start (~6 s), then starts
  ``milvus run standalone``; ready in ~8 s here. Readiness = the proxy port answers a real client
  call (``get_server_version`` with the token) *and* reports v2.3.5 -- another Milvus (a Milvus
  Lite in this process, say) could have grabbed the same free port meanwhile.
* Every component listens on its own port (``--proxy-port``, ``--root-coord-port`` ... all passed
  explicitly), but its embedded etcd ignores ``--etcd-port`` and binds 2379/2380 unless
  ``ETCD_CONFIG_PATH`` names an etcd config file: we write one with free ports, so two servers (a
  test run and a benchmark, or two sessions) never collide. The web/health port is picked by the
  wrapper (9091 or the next free one).
* ``--authorization-enabled true`` turns authentication on (user ``root``, password ``Milvus``):
  the harness replaces the default ``root:Milvus`` by a random password (secrets are redacted from
  every message, so "Milvus" would read "***") and connects with it, read from a secret file named
  in its URIs; ``bad_credentials_uri`` sends a wrong password.
* SIGTERM ends the Python wrapper at once, but the ``milvus`` child's graceful stop hangs (its query
  coordinator keeps retrying the root coordinator that stopped first), so ``stop_server`` waits 5 s
  for the whole process group, then SIGKILLs it.
* A Strong read waits for the next time tick (``proxy.timeTickInterval``, 200 ms by default: ~0.3 s
  per read). The test server ticks every 20 ms (a Strong read then takes ~0.03 s); Strong is still
  required there -- with Bounded reads the contract's round-trip tests fail.
* Milvus 2.3.5 allows one vector field per collection and has no nullable fields.

``milvus-lite server`` (milvus-lite 3.2.2) has no authentication at all (its gRPC servicer never reads
credentials), so its ``bad_credentials_uri`` is None.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._procs import ServerProcess, closed_port, free_port
from tests.backends import Harness, RecordId, fast_tmp_dir

__all__ = ["harness_milvus_2_3_5", "harness_milvus_lite", "harness_milvus_lite_server"]

try:
    from pymilvus import DataType, MilvusClient
except ImportError:  # the milvus extra is not installed: the fixtures skip
    DataType = MilvusClient = None  # type: ignore[assignment,misc]

METRICS = {"cosine": "COSINE", "dot": "IP", "l2": "L2"}
ROOT_TOKEN = "root:Milvus"  # Milvus' default root credentials when authorization is enabled
BAD_TOKEN_ENV = "NUDGE_SYNC_TEST_BAD_MILVUS_TOKEN"
#: proxy.timeTickInterval of the test server (Milvus' default is 200 ms; see start_milvus_server)
TEST_TIME_TICK_MS = 20
#: milvus-server port options, each given a free port (etcd's is ignored by embedded etcd: see above)
SERVER_PORTS = ("proxy-port", "proxy-internal-port", "root-coord-port", "query-coord-port", "query-node-port",
                "index-coord-port", "index-node-port", "data-coord-port", "data-node-port", "etcd-port")


def rich_row(i: int, *, modern: bool) -> dict[str, Any]:
    """Deterministic non-vector content of record ``i`` (``modern``: engines with nullable fields)."""
    row: dict[str, Any] = {
        "title": f"Título nº{i} — ünïcödé ✓ 日本語 \"quoted\" \\ back",
        "n": 2**40 + i, "small": -(i % 128), "mid": 300 + i, "i32": 70_000 + i,
        "score": i * 0.5 + 0.25, "ratio": 1 / (i + 3), "flag": i % 2 == 0,
        "meta": {"tags": ["a", f"t{i % 5}"], "nested": {"x": i, "none": None, "big": 2**60 + i, "f": 0.1 * i}},
        "tags": ["alpha", f"t{i % 5}", "ß"], "nums": [i, -7, 2**50],
        "document": "" if i % 7 == 6 else f"document {i}: naïve café — 🙂 {'x' * (i % 13)}",
    }
    if i % 3 != 2:  # dynamic fields, absent on every third record
        row.update(dyn_text=f"dynamic {i}", dyn_num=i * 3, dyn_list=[i, "two", {"k": None}])
    if modern:
        row["note"] = None if i % 4 == 0 else f"note {i}"
    return row


class MilvusHarness(Harness):
    backend = "milvus"
    id_types = ("int", "str")

    def __init__(self, name: str, client_uri: str, store_base: str, *, is_server: bool,
                 proc: ServerProcess | None = None, token: str | None = None, token_file: Path | None = None):
        self.name = name
        self.client_uri = client_uri
        self.store_base = store_base
        self.is_server = is_server
        self.proc = proc
        self.token = token
        self.token_file = token_file
        from connectors.milvus import engine_version

        self.client = MilvusClient(uri=client_uri, token=token or "", timeout=60, dedicated=True)
        self.version = str(self.client.get_server_version())
        #: Milvus < 2.4 allows one vector field per collection and has no nullable fields
        self.modern = (engine_version(self.version) or (0,)) >= (2, 4)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.proc is not None:
                stop_server(self.proc)

    # Harness API -----------------------------------------------------------------------------

    def uri(self, collection: str) -> str:
        secret = f"&secret_file={self.token_file}" if self.token_file else ""
        return f"{self.store_base}?collection={collection}&vector=vector{secret}"

    def create(self, collection: str, ids: Sequence[RecordId], vectors: np.ndarray, *,
               metric: str = "cosine", rich: bool = True) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=rich)
        if isinstance(ids[0], int):
            schema.add_field("pk", DataType.INT64, is_primary=True)
        else:
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type=METRICS[metric])
        if rich:
            self._rich_fields(schema, index)
        self.client.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong")
        rng = np.random.default_rng(len(ids))
        for s in range(0, len(ids), 5000):
            rows = []
            for j in range(s, min(len(ids), s + 5000)):
                row: dict[str, Any] = {"pk": ids[j], "vector": vectors[j].tolist()}
                if rich:
                    row.update(rich_row(j, modern=self.modern))
                    if self.modern:
                        row["aux"] = rng.standard_normal(3).astype(np.float32).tolist()
                rows.append(row)
            self.client.insert(collection, rows)

    def _rich_fields(self, schema: Any, index: Any) -> None:
        schema.add_field("title", DataType.VARCHAR, max_length=512)
        schema.add_field("n", DataType.INT64)
        schema.add_field("small", DataType.INT8)
        schema.add_field("mid", DataType.INT16)
        schema.add_field("i32", DataType.INT32)
        schema.add_field("score", DataType.DOUBLE)
        schema.add_field("ratio", DataType.FLOAT)
        schema.add_field("flag", DataType.BOOL)
        schema.add_field("meta", DataType.JSON)
        schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=32)
        schema.add_field("nums", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
        schema.add_field("document", DataType.VARCHAR, max_length=4096)
        if self.modern:
            schema.add_field("note", DataType.VARCHAR, max_length=64, nullable=True)
            schema.add_field("aux", DataType.FLOAT_VECTOR, dim=3)
            index.add_index("aux", index_type="FLAT", metric_type="L2")

    def rows(self, collection: str, fields: list[str], pk: str = "pk") -> Iterator[dict[str, Any]]:
        """Every row, read with the native client (one query when it fits Milvus' 16,384 window,
        pymilvus' query_iterator otherwise)."""
        if self.count(collection) <= 16_384:
            yield from self.client.query(collection, filter="", output_fields=fields, limit=16_384,
                                         consistency_level="Strong")
            return
        it = self.client.query_iterator(collection, batch_size=5000, filter="", output_fields=fields,
                                        consistency_level="Strong")
        try:
            while rows := it.next():
                yield from rows
        finally:
            it.close()

    def snapshot(self, collection: str) -> dict[RecordId, bytes]:
        out: dict[RecordId, bytes] = {}
        for row in self.rows(collection, ["*"]):
            rest = {k: v for k, v in row.items() if k not in ("vector", "pk")}
            if "aux" in rest:
                rest["aux"] = np.asarray(rest["aux"], np.float32).tobytes().hex()
            out[row["pk"]] = json.dumps(rest, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return out

    def vectors(self, collection: str) -> dict[RecordId, np.ndarray]:
        return {r["pk"]: np.asarray(r["vector"], np.float32) for r in self.rows(collection, ["pk", "vector"])}

    def count(self, collection: str) -> int:
        rows = self.client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def drop(self, collection: str) -> None:
        if self.client.has_collection(collection):
            self.client.drop_collection(collection)

    def collections(self) -> list[str]:
        return list(self.client.list_collections())

    def create_auto_id(self, collection: str, dim: int) -> bool:
        schema = self.client.create_schema(auto_id=True)
        schema.add_field("pk", DataType.INT64, is_primary=True, auto_id=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        self.client.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong")
        self.client.insert(collection, [{"vector": [0.5] * dim}, {"vector": [0.25] * dim}])
        return True

    def unreachable_uri(self, collection: str) -> str | None:
        if not self.is_server:
            return None
        return f"milvus+http://127.0.0.1:{closed_port()}?collection={collection}&timeout=5&retry_budget=1"

    def bad_credentials_uri(self, collection: str) -> tuple[str, dict[str, str]] | None:
        if self.token is None:
            return None  # Milvus Lite (embedded or `milvus-lite server`) has no authentication
        return (f"{self.store_base}?collection={collection}&secret_env={BAD_TOKEN_ENV}",
                {BAD_TOKEN_ENV: "root:not-the-password"})

    def extra(self) -> dict[str, Any]:
        return {"server_version": self.version, "uri": self.client_uri}


# -- servers ---------------------------------------------------------------------------------------------


def _binary(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` is not installed (pip install 'nudge-sync[test]')")
    return found


def _answers(uri: str, token: str, version_prefix: str) -> bool:
    """True once ``uri`` answers a real call as the expected server (not another one on that port)."""
    client = MilvusClient(uri=uri, token=token, timeout=3, dedicated=True)
    try:
        version = str(client.get_server_version(timeout=3))
        if not version.startswith(version_prefix):
            raise RuntimeError(f"{uri} is answered by another server ({version})")
        client.list_collections(timeout=3)
        return True
    finally:
        client.close()


def start_milvus_lite_server(data_dir: Path, log_dir: Path | None = None,
                             timeout: float = 90.0, port: int | None = None) -> tuple[ServerProcess, str]:
    """``milvus-lite server`` on 127.0.0.1; returns (process, ``http://127.0.0.1:PORT``). ``port``:
    restart a stopped server where its clients expect it (default: a free port)."""
    port = port or free_port()
    data_dir = Path(data_dir)
    proc = ServerProcess(f"milvus-lite-{port}", [_binary("milvus-lite"), "server", "--data-dir", str(data_dir),
                                                  "--host", "127.0.0.1", "--port", str(port)],
                         log_dir or data_dir.parent)
    _start(proc)
    uri = f"http://127.0.0.1:{port}"
    _wait(proc, lambda: _answers(uri, "", "milvus_lite"), timeout)
    return proc, uri


def start_milvus_server(data_dir: Path, log_dir: Path | None = None, *, auth: bool = True,
                        time_tick_ms: int | None = None, timeout: float = 180.0,
                        token: str | None = None) -> tuple[ServerProcess, str, str | None]:
    """PyPI milvus 2.3.5's ``milvus-server`` on loopback ports; returns (process, uri, token).

    ``time_tick_ms`` sets ``proxy.timeTickInterval`` (default 200 ms): a Strong read waits for the
    next tick, so 20 ms makes a test suite of many small Strong reads ~10x faster. Started again on
    the same ``data_dir`` (after a stop or a crash), the server keeps the ports it had, so its
    clients find it where they left it; ``token``: the root credentials it has by then, if they
    are no longer the default."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = _server_ports(data_dir)
    etcd_conf = data_dir / "embed-etcd.yaml"
    client_url, peer_url = f"http://127.0.0.1:{ports['etcd-client']}", f"http://127.0.0.1:{ports['etcd-peer']}"
    etcd_conf.write_text(
        "name: default\n"
        f"data-dir: {data_dir / 'data' / 'etcd.data'}\n"
        f"listen-client-urls: {client_url}\nadvertise-client-urls: {client_url}\n"
        f"listen-peer-urls: {peer_url}\ninitial-advertise-peer-urls: {peer_url}\n"
        f"initial-cluster: default={peer_url}\n"
    )
    argv = [_binary("milvus-server"), "--data", str(data_dir)]
    for name in SERVER_PORTS:
        argv += [f"--{name}", str(ports[name])]
    if auth:
        argv += ["--authorization-enabled", "true"]
    if time_tick_ms is not None:
        argv += ["--extra-config", f"proxy.timeTickInterval={int(time_tick_ms)}"]
    proc = ServerProcess(f"milvus-server-{ports['proxy-port']}", argv, log_dir or data_dir.parent,
                         env={"ETCD_CONFIG_PATH": str(etcd_conf)})
    _start(proc)
    uri = f"http://127.0.0.1:{ports['proxy-port']}"
    token = (token or ROOT_TOKEN) if auth else None
    _wait(proc, lambda: _answers(uri, token or "", "v2.3.5"), timeout)
    return proc, uri, token


def _server_ports(data_dir: Path) -> dict[str, int]:
    """Free ports for every component and the embedded etcd, chosen once per data dir (kept in
    ``ports.json`` there): a restart on the same data must listen where the first start did."""
    saved = data_dir / "ports.json"
    if saved.exists():
        return json.loads(saved.read_text())
    ports = {name: free_port() for name in (*SERVER_PORTS, "etcd-client", "etcd-peer")}
    saved.write_text(json.dumps(ports))
    return ports


def _start(proc: ServerProcess) -> None:
    proc.start()
    proc.pgid = proc.pid  # type: ignore[attr-defined]  # start_new_session: the group is our PID


def _wait(proc: ServerProcess, check: Any, timeout: float) -> None:
    try:
        proc.wait_ready(check, timeout=timeout, interval=0.5)
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: ServerProcess, timeout: float = 5.0) -> None:
    """Stop a server and every process of its group (the group is the PID we started)."""
    pgid = getattr(proc, "pgid", None)
    proc.stop()
    if pgid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- fixtures ----------------------------------------------------------------------------------------------


def _needs_pymilvus() -> None:
    if MilvusClient is None:
        pytest.skip("pymilvus is not installed (pip install 'nudge-sync[milvus]')")


@pytest.fixture(scope="session")
def harness_milvus_lite(tmp_path_factory) -> Iterator[MilvusHarness]:
    _needs_pymilvus()
    directory = fast_tmp_dir("nudge-sync-milvus-lite-", tmp_path_factory.getbasetemp())  # no fsync wait
    path = (directory / "lite.db").resolve()
    try:
        h = MilvusHarness("milvus-lite", str(path), f"milvus://{path}", is_server=False)
        yield h
        h.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def harness_milvus_lite_server(tmp_path_factory, server_logs) -> Iterator[MilvusHarness]:
    _needs_pymilvus()
    directory = fast_tmp_dir("nudge-sync-milvus-lite-server-", tmp_path_factory.getbasetemp())
    try:
        proc, uri = start_milvus_lite_server(directory / "data", server_logs)
        try:
            h = MilvusHarness("milvus-lite-server", uri, f"milvus+{uri}", is_server=True, proc=proc)
        except BaseException:
            stop_server(proc)
            raise
        yield h
        h.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _strong_root_password(uri: str, token: str) -> str:
    """Replace the default root password ("Milvus") by a random one; returns the new token.

    nudge-sync redacts every configured secret from its messages process-wide, password part
    included: with the default password every message naming "Milvus" would read "***"."""
    import secrets

    new = f"root:{secrets.token_urlsafe(18)}"
    client = MilvusClient(uri=uri, token=token, timeout=30, dedicated=True)
    try:
        client.update_password("root", token.split(":", 1)[1], new.split(":", 1)[1])
    finally:
        client.close()
    return new


@pytest.fixture(scope="session")
def harness_milvus_2_3_5(tmp_path_factory, server_logs) -> Iterator[MilvusHarness]:
    _needs_pymilvus()
    base = tmp_path_factory.mktemp("milvus-2.3.5")
    proc, uri, token = start_milvus_server(base / "server", server_logs, time_tick_ms=TEST_TIME_TICK_MS)
    try:
        token = _strong_root_password(uri, token or ROOT_TOKEN)
    except BaseException:
        stop_server(proc)
        raise
    token_file = base / "token"
    token_file.write_text(token or "")
    token_file.chmod(0o600)
    try:
        h = MilvusHarness("milvus-2.3.5", uri, f"milvus+{uri}", is_server=True, proc=proc, token=token,
                          token_file=token_file)
    except BaseException:
        stop_server(proc)
        raise
    yield h
    h.close()
