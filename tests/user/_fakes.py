"""Echoing fake servers on loopback for the secrets tests: a misbehaving server (or proxy) that
answers every request with an error whose text repeats the request's credentials.

* :class:`EchoHTTPServer` answers every HTTP request 502 with a body holding the request line,
  every header and the body (Qdrant's and Chroma's HTTP clients);
* :class:`EchoGrpcServer` fails every gRPC call (any service, any method) with a status whose
  details hold the call's metadata, where pymilvus puts its token (Milvus).

Both record what they received, so a test can prove the secret was sent (and so was echoed)
before proving that nudge-sync did not repeat it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from tests._procs import free_port


class EchoHTTPServer:
    """``with EchoHTTPServer() as fake: ... fake.port ... fake.seen``"""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _echo(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                           "body": body[:2000]}
                fake.seen.append(request)
                out = json.dumps({"error": "bad gateway", "detail": f"upstream refused {request}",
                                  "request": request}).encode()
                self.send_response(502)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _echo

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> EchoHTTPServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def headers_seen(self) -> str:
        return json.dumps([r["headers"] for r in self.seen])


class _EchoEverything(grpc.GenericRpcHandler):
    def __init__(self, seen: list[dict[str, Any]]):
        self.seen = seen

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        seen = self.seen
        method = handler_call_details.method

        def fail(request: bytes, context: grpc.ServicerContext) -> None:
            metadata = {k: v if isinstance(v, str) else repr(v) for k, v in context.invocation_metadata()}
            seen.append({"method": method, "metadata": metadata})
            context.abort(grpc.StatusCode.INTERNAL, f"upstream refused {method} with metadata {metadata}")

        # no (de)serializers: any request is accepted as raw bytes
        return grpc.unary_unary_rpc_method_handler(fail)


class EchoGrpcServer:
    """``with EchoGrpcServer() as fake: ... fake.port ... fake.seen``"""

    def __init__(self) -> None:
        from concurrent import futures

        self.seen: list[dict[str, Any]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((_EchoEverything(self.seen),))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{free_port()}")

    def __enter__(self) -> EchoGrpcServer:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None)

    def headers_seen(self) -> str:
        return json.dumps([r["metadata"] for r in self.seen])
