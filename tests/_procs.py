"""Start and stop real database servers for tests: free loopback ports, readiness, stop by PID.

Servers run in their own session (process group) so stopping them also stops any children
they spawned; we signal that group by the PID we started, never by process name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (for 'unreachable server' tests)."""
    return free_port()


class ServerProcess:
    """A server started from a command line, logging to a file, stopped by PID."""

    def __init__(self, name: str, cmd: Sequence[str], log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.cmd = list(cmd)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=True)
        log.close()
        _reap_with_parent(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, check: Callable[[], bool], timeout: float = 60.0, interval: float = 0.25) -> None:
        """Poll ``check`` until it returns True; fail with the server's log tail otherwise."""
        deadline = time.monotonic() + timeout
        last_exc: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if check():
                    return
            except Exception as exc:  # not ready yet
                last_exc = exc
            time.sleep(interval)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s (last error: {last_exc!r}):\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group (by our PID), then SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


#: A watchdog for one server: when the process that started it (a pytest worker) is gone -- killed
#: by a timeout or a SIGKILL, so no fixture teardown ran -- it stops the server's process group by
#: its PID (the group leader is the server we started); it exits by itself once the group is gone.
_WATCHDOG = """
import os, signal, sys, time
parent, group = int(sys.argv[1]), int(sys.argv[2])
while True:
    time.sleep(1.0)
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        sys.exit(0)
    try:
        os.kill(parent, 0)
        continue
    except ProcessLookupError:
        pass
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            sys.exit(0)
        time.sleep(wait)
    sys.exit(0)
"""


def _reap_with_parent(group: int) -> None:
    """Start the watchdog of the server whose process group is ``group`` (our PID for it): a test
    run killed from outside leaves no server behind burning CPU on the next run's machine."""
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(group)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


@contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threaded HTTP server on a free loopback port answering with ``handler``; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 2xx."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return 200 <= resp.status < 300
