"""Configured secrets never leave the process (defect 5 of issue 10).

A fake server on loopback answers every request with HTTP 502 and a body that echoes the request's
headers -- what a misconfigured proxy in front of a database may do. Each credential path of each
backend is planted with a fresh secret, ``nudge-sync`` runs as its own process (plain and --json,
with and without --verbose), and stdout and stderr are scanned for the secret in every encoding it
travels in. The fake server checks that the secret was really sent, so the scan means something.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

import connectors
from connectors import _secrets
from nudge_sync.engine.state import SyncState
from tests._procs import loopback_http

NUDGE_SYNC = str(Path(sys.executable).with_name("nudge-sync"))


class _Echo(BaseHTTPRequestHandler):
    """502 for everything, with the request line and headers in the body (JSON and plain text)."""

    seen: list[str] = []

    def _answer(self) -> None:
        headers = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
        type(self).seen.append(headers)
        body = json.dumps({"error": "bad gateway", "request": f"{self.command} {self.path}\n{headers}"}).encode()
        self.send_response(502)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def echo():
    with loopback_http(_Echo) as port:
        yield port


def encodings(secret: str, user: str | None = None) -> list[str]:
    """The secret as it may appear: plain, its password part, base64 of it / of user:password."""
    plain = {secret, secret.split(":", 1)[-1]} | ({f"{user}:{secret}"} if user else set())
    out = set(plain)
    for text in plain:
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            out |= {enc(text.encode()).decode(), enc(text.encode()).decode().rstrip("=")}
    return sorted(out)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([NUDGE_SYNC, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def planted() -> str:
    return f"pl4nted-{uuid.uuid4().hex}"


VERBOSE = ("qdrant QDRANT_API_KEY", "chroma basic user:password", "milvus MILVUS_TOKEN")


def credential_paths(port: int, tmp_path: Path) -> list[tuple[str, str, dict[str, str], str | None, str]]:
    """(name, URI, environment, basic-auth user, secret) for every way a secret reaches a backend."""
    secret_file = tmp_path / "secret"
    paths = []
    t = planted()
    paths.append(("qdrant QDRANT_API_KEY", f"qdrant+http://127.0.0.1:{port}?collection=docs", {"QDRANT_API_KEY": t}, None, t))
    t = planted()
    paths.append(("qdrant secret_env", f"qdrant+http://127.0.0.1:{port}?collection=docs&secret_env=MY_KEY",
                  {"MY_KEY": t}, None, t))
    t = planted()
    secret_file.write_text(t + "\n")
    paths.append(("qdrant secret_file", f"qdrant+http://127.0.0.1:{port}?collection=docs&secret_file={secret_file}",
                  {}, None, t))
    for auth in ("bearer", "x-chroma-token"):
        t = planted()
        paths.append((f"chroma {auth}", f"chroma+http://127.0.0.1:{port}?collection=docs&auth={auth}",
                      {"CHROMA_AUTH_TOKEN": t}, None, t))
    t = "alice:" + planted()
    paths.append(("chroma basic user:password", f"chroma+http://127.0.0.1:{port}?collection=docs&auth=basic",
                  {"CHROMA_AUTH_TOKEN": t}, None, t))
    t = planted()
    paths.append(("chroma basic, user in the URI", f"chroma+http://alice@127.0.0.1:{port}?collection=docs&auth=basic",
                  {"CHROMA_AUTH_TOKEN": t}, "alice", t))
    t = "root:" + planted()
    paths.append(("milvus MILVUS_TOKEN", f"milvus+http://127.0.0.1:{port}?collection=docs&timeout=3",
                  {"MILVUS_TOKEN": t}, None, t))
    return paths


def test_no_credential_path_echoes_its_secret(echo, tmp_path):
    paths = credential_paths(echo, tmp_path)
    # every path with --json and no retries; three of them also --verbose with retries, whose
    # log lines (the client libraries' and our retry warnings) go to stderr too
    trials = [(p, ["--json"], "0") for p in paths]
    trials += [(p, ["--verbose"], "1") for p in paths if p[0] in VERBOSE]
    _Echo.seen.clear()
    with ThreadPoolExecutor(3) as pool:  # separate processes; most of their time is imports
        results = list(pool.map(lambda t: run([*t[1], "status", "--store", f"{t[0][1]}&retry_budget={t[2]}"],
                                              t[0][2]), trials))
    for ((name, uri, env, user, secret), flags, _), done in zip(trials, results):
        forms = encodings(secret, user)
        assert done.returncode == 6, (name, done.returncode, done.stderr)
        if not name.startswith("milvus"):  # an HTTP client: the fake server saw the secret
            assert any(f in h for h in _Echo.seen for f in forms), (name, _Echo.seen[:1])
            assert "502" in done.stdout + done.stderr, (name, done.stderr)
        for form in forms:
            assert form not in done.stdout and form not in done.stderr, (name, flags, form, done.stderr)
        if flags == ["--json"]:
            report = json.loads(done.stdout)
            assert report["exit_code"] == 6 and report["error_type"] in ("ConnectionFailed", "ConnectorError")
            if name.startswith("qdrant"):  # its message quotes enough of the body to reach the header
                assert "***" in report["error"], report["error"]
        else:
            assert "gave up after" in done.stderr and "retrying in" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert len(trials) == 11


def test_redaction_covers_every_form_and_run_records(harness_chroma_persistent, collection_name):
    secret = "user7:" + planted()
    _secrets.register(secret)
    password = secret.split(":", 1)[1]
    text = (f"a {secret} b {password} c {base64.b64encode(secret.encode()).decode()} "
            f"d {json.dumps({'k': secret})} e {secret.replace(':', '%3A')}")
    cleaned = connectors.redact(text)
    assert all(form not in cleaned for form in encodings(secret)) and cleaned.count("***") >= 5
    assert password not in str(connectors.ConnectionFailed(f"echo: {password}"))
    h = harness_chroma_persistent
    h.create(collection_name, h.make_ids(3), np.eye(3, 4, dtype=np.float32), metric="dot", rich=False)
    try:
        with connectors.open_store(h.uri(collection_name)) as store:
            state = SyncState(store.state(f"{collection_name}_nudge_state"))
            state.ensure(4)
            state.put_run("r1", {"run_id": "r1", "reason": f"server said {password}", "nested": [{"x": secret}]})
            assert password not in json.dumps(state.runs())
    finally:
        for name in h.collections():
            if name.startswith(collection_name):
                h.drop(name)
