"""A tiny stand-in Pushgateway on a free loopback port that records every request it receives
(method, path, body) and answers 200 (or what ``status`` says): enough to check what nudge-sync
sends. It keeps the push-add semantics of the real one per group: a POST replaces the metric
families it carries, a PUT the whole group."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Gateway:
    url: str
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    groups: dict[str, dict[str, list]] = field(default_factory=dict)
    status: int = 200

    def value(self, path: str, name: str, **labels: str) -> float | None:
        for family_samples in self.groups.get(path, {}).values():
            for s in family_samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return None


@contextmanager
def gateway() -> Iterator[Gateway]:
    box: list[Gateway] = []

    class Handler(BaseHTTPRequestHandler):
        def _take(self) -> None:
            gw = box[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            gw.requests.append((self.command, self.path, body))
            if gw.status == 200:
                families = {f.name: f.samples for f in text_string_to_metric_families(body)}
                group = gw.groups.setdefault(self.path, {})
                if self.command == "PUT":
                    group.clear()
                group.update(families)
            self.send_response(gw.status)
            self.end_headers()

        do_POST = do_PUT = _take

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Gateway(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
