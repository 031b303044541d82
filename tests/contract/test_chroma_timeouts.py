"""chromadb builds its HTTP session without a timeout, and its client's constructor already calls the
server (identity, tenant, database). A server that answers nudge-sync's preflight and then hangs
must not block opening the store for ever (issue 18, finding 5): the constructor's calls time out
after the store's ``timeout`` too."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import connectors

pytest.importorskip("chromadb")

IDENTITY = {"user_id": "", "tenant": "default_tenant", "databases": ["default_database"]}


class HangsAfterPreflight(BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.endswith("/heartbeat"):
            self._json({"nanosecond heartbeat": time.time_ns()})
        elif self.path.endswith("/auth/identity"):
            self._json(IDENTITY)
        else:
            self.release.wait(60)  # hung: answers nothing until the test ends

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_a_server_hung_after_the_preflight_cannot_block_opening_the_store():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HangsAfterPreflight)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        started = time.monotonic()
        with pytest.raises(connectors.ConnectionFailed, match=f"127.0.0.1:{port}"):
            connectors.open_store(f"chroma+http://127.0.0.1:{port}?collection=docs&timeout=1&retry_budget=0")
        # one read timeout per hung request (chromadb asks for the tenant, then gives up); never 60 s
        assert time.monotonic() - started < 30
    finally:
        HangsAfterPreflight.release.set()
        server.shutdown()
