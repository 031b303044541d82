"""Servers the user-level suite may kill, stop and restart: its own instances (never the session
servers other tests share), each with its own data dir and port, restarted on the same port and
data dir the way an operator (or systemd, or Kubernetes) brings a crashed server back.

Signals go to the server's process group, by the PID the suite started (tests/_procs.py), never
by name.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests._procs import ServerProcess, free_port
from tests.backends import Harness
from tests.user._native import UserBackend


class OwnServer(UserBackend):
    """A server started for one test module: ``kill`` / ``stop`` / ``cont`` / ``restart``."""

    def __init__(self, name: str, backend: str, data_dir: Path, log_dir: Path):
        super().__init__(name, backend)
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.proc: ServerProcess | None = None
        self.url = ""  # http://127.0.0.1:PORT, fixed for the server's life (restarts included)

    @property
    def is_server(self) -> bool:
        return True

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> OwnServer:
        raise NotImplementedError

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.proc is not None, f"{self.name} is not running"
        os.killpg(self.proc.pid, sig)  # the group of the PID we started: the server and its children

    def kill(self) -> None:
        """SIGKILL the whole server (no shutdown) and reap it."""
        self._signal(signal.SIGKILL)
        assert self.proc is not None and self.proc.proc is not None
        self.proc.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        """SIGSTOP: the server keeps its sockets open and answers nothing (a hung server)."""
        self._signal(signal.SIGSTOP)

    def cont(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same port and data dir (after :meth:`kill`), ready when this returns."""
        assert self.proc is None, "kill the server before restarting it"
        self.start()

    def close(self) -> None:
        if self.proc is not None:
            self.cont()  # a stopped process group would ignore SIGTERM until continued
            from tests.backends.milvus import stop_server

            stop_server(self.proc)
            self.proc = None


class OwnChroma(OwnServer):
    def __init__(self, data_dir: Path, log_dir: Path):
        super().__init__("chroma-http", "chroma", data_dir, log_dir)
        self.port = free_port()

    def start(self) -> OwnChroma:
        from tests.backends.chroma import start_chroma_server

        self.proc, self.url = start_chroma_server(self.data_dir, self.log_dir, port=self.port)
        return self

    @contextmanager
    def native(self) -> Iterator[Harness]:
        import chromadb

        from tests.backends.chroma import ChromaHarness

        h = ChromaHarness(self.name, chromadb.HttpClient(host="127.0.0.1", port=self.port), base_url=self.url)
        try:
            yield h
        finally:
            h.client.close()  # a fresh client per block: a restarted server breaks old connections

    def _base_uri(self, collection: str) -> str:
        from tests.backends.chroma import chroma_name

        return f"chroma+{self.url}?collection={chroma_name(collection)}"


class OwnMilvus(OwnServer):
    """``milvus-lite server`` (``lite=True``) or a real Milvus 2.3.5 standalone (authentication on)."""

    def __init__(self, data_dir: Path, log_dir: Path, *, lite: bool):
        super().__init__("milvus-lite-server" if lite else "milvus-2.3.5", "milvus", data_dir, log_dir)
        self.lite = lite
        self.port = free_port() if lite else 0
        self.token: str | None = None
        self.token_file = data_dir.parent / f"{data_dir.name}-token"

    def start(self) -> OwnMilvus:
        try:
            self._start()
        except RuntimeError as exc:  # not ready: say why, from the server's own logs (the tmp dir rotates)
            raise RuntimeError(f"{exc}\n--- last warnings of {self.data_dir} ---\n{_log_warnings(self.data_dir)}") from None
        return self

    def _start(self) -> None:
        from tests.backends.milvus import (TEST_TIME_TICK_MS, _strong_root_password, start_milvus_lite_server,
                                           start_milvus_server)

        if self.lite:
            self.proc, self.url = start_milvus_lite_server(self.data_dir, self.log_dir, port=self.port)
        else:  # a restart on the same data dir keeps its ports and password (tests/backends/milvus.py)
            # (timeout: a third Milvus on a busy 2-core machine, beside each worker's shared one)
            self.proc, self.url, token = start_milvus_server(self.data_dir, self.log_dir, token=self.token,
                                                             time_tick_ms=TEST_TIME_TICK_MS, timeout=300)
            if self.token is None:  # first start: not the default password, which redaction would blank out
                self.token = _strong_root_password(self.url, token or "")
                self.token_file.write_text(self.token)
                self.token_file.chmod(0o600)

    @contextmanager
    def native(self) -> Iterator[Harness]:
        from tests.backends.milvus import MilvusHarness

        h = MilvusHarness(self.name, self.url, f"milvus+{self.url}", is_server=True, token=self.token,
                          token_file=self.token_file if self.token else None)
        try:
            for name in h.client.list_collections():
                h.client.load_collection(name)  # a restarted server has released them all
            yield h
        finally:
            h.close()  # proc=None: closes the client only

    def _base_uri(self, collection: str) -> str:
        secret = f"&secret_file={self.token_file}" if self.token else ""
        return f"milvus+{self.url}?collection={collection}&vector=vector{secret}"


def _log_warnings(data_dir: Path, n: int = 15) -> str:
    """The last WARN/ERROR lines of a Milvus server's logs under ``data_dir``."""
    lines: list[str] = []
    for path in sorted((data_dir / "logs").glob("*.log")):
        lines += [line[:400] for line in path.read_text(errors="replace").splitlines()
                  if "[WARN]" in line or "[ERROR]" in line or "panic" in line]
    return "\n".join(lines[-n:]) or "(no warnings logged)"


def own_server(name: str, base: Path) -> OwnServer:
    """A started server of kind ``name`` (a harness name) under ``base``."""
    log_dir = base / "logs"
    if name == "chroma-http":
        server: OwnServer = OwnChroma(base / "chroma", log_dir)
    elif name == "milvus-lite-server":
        server = OwnMilvus(base / "milvus-lite", log_dir, lite=True)
    elif name == "milvus-2.3.5":
        server = OwnMilvus(base / "milvus-2.3.5", log_dir, lite=False)
    else:
        raise ValueError(f"{name} is not a server the suite can restart")
    return server.start()
