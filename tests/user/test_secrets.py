"""Secrets never reach what nudge-sync prints or stores (issue #10, defect 5).

A planted secret goes through every credential path (each backend's variable, ``secret_env=``,
``secret_file=``, every Chroma ``auth=`` mode, the user in the URI); then

* against an echoing fake server (HTTP 502 repeating the request's headers, for Qdrant and Chroma;
  a gRPC endpoint failing with the call's metadata, for Milvus), the fake must have received the
  secret -- so its error text holds it -- and stdout, stderr and the JSON report must not;
* against the real backends the planted secret rides along the whole command sequence of
  test_sequences.py (five backends; where the server ignores or checks the credential; Milvus 2.3.5
  with its own root password in a secret file), whose outputs, ``history`` and state collection are
  scanned there.

Scans look for the plain secret, its URL-quoted form and its base64 forms (standard and URL-safe,
at every byte alignment: HTTP basic credentials are ``base64(user:secret)``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.user._data import BATCH_ARGS
from tests.user._fakes import EchoGrpcServer, EchoHTTPServer
from tests.user._runner import nudge
from tests.user._secrets import find_secret, planted

#: (case id, backend, URI options, how the secret is given: "env:NAME" | "file", secret shape)
CREDENTIAL_PATHS = [
    ("qdrant-QDRANT_API_KEY", "qdrant", "", "env:QDRANT_API_KEY", "{s}"),
    ("qdrant-secret_env", "qdrant", "&secret_env=APP_QDRANT_KEY", "env:APP_QDRANT_KEY", "{s}"),
    ("qdrant-secret_file", "qdrant", "&secret_file={file}", "file", "{s}"),
    ("milvus-MILVUS_TOKEN-user:password", "milvus", "", "env:MILVUS_TOKEN", "planted:{s}"),
    ("milvus-MILVUS_TOKEN-api-key", "milvus", "", "env:MILVUS_TOKEN", "{s}"),
    ("milvus-secret_env", "milvus", "&secret_env=APP_MILVUS_TOKEN", "env:APP_MILVUS_TOKEN", "planted:{s}"),
    ("milvus-secret_file", "milvus", "&secret_file={file}", "file", "planted:{s}"),
    ("chroma-auth=bearer", "chroma", "&auth=bearer", "env:CHROMA_AUTH_TOKEN", "{s}"),
    ("chroma-auth=x-chroma-token", "chroma", "&auth=x-chroma-token", "env:CHROMA_AUTH_TOKEN", "{s}"),
    ("chroma-auth=basic", "chroma", "&auth=basic", "env:CHROMA_AUTH_TOKEN", "planted:{s}"),
    ("chroma-auth=basic-user-in-uri", "chroma", "&auth=basic", "env:CHROMA_AUTH_TOKEN", "{s}"),
    ("chroma-secret_env", "chroma", "&secret_env=APP_CHROMA_TOKEN", "env:APP_CHROMA_TOKEN", "{s}"),
    ("chroma-secret_file", "chroma", "&auth=x-chroma-token&secret_file={file}", "file", "{s}"),
]


def credential(given: str, value: str, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """(environment, secret file) carrying ``value`` the way ``given`` says."""
    path = tmp_path / "secret"
    if given == "file":
        path.write_text(value + "\n")
        path.chmod(0o600)
        return {}, path
    return {given.removeprefix("env:"): value}, path


@pytest.mark.parametrize("case, backend, options, given, shape", CREDENTIAL_PATHS, ids=[c[0] for c in CREDENTIAL_PATHS])
def test_a_failing_server_that_echoes_credentials(case, backend, options, given, shape, tmp_path, tally):
    secret = planted()
    env, path = credential(given, shape.format(s=secret), tmp_path)
    fake_cls = EchoGrpcServer if backend == "milvus" else EchoHTTPServer
    with tally.counting(f"{backend} (fake server)", "secrets", fault="echoing server"), fake_cls() as fake:
        user = "alice@" if case.endswith("user-in-uri") else ""
        uri = (f"{backend}+http://{user}127.0.0.1:{fake.port}?collection=docs&timeout=3&retry_budget=0"
               + options.format(file=path))
        # --json: the error is both the JSON report on stdout and the message on stderr
        result = nudge("run", "--store", uri, *BATCH_ARGS, env=env, expect=None)
        assert result.code == 6, f"expected a database error (6)\n{result.describe()}"
        assert f"127.0.0.1:{fake.port}" in result.stderr, f"the error does not name the server\n{result.describe()}"
        assert result.report["exit_code"] == 6 and result.report["error"], result.describe()
        outputs = [result.stdout, result.stderr]
        assert fake.seen, "the fake server was never reached"
        assert find_secret(secret, fake.headers_seen()), f"the secret was not sent, so this proves nothing: {fake.seen[:2]}"
        leaked = find_secret(secret, *outputs)
        assert not leaked, f"the secret reached the user as {leaked}: " + next(o for o in outputs if any(f in o for f in leaked))[-1500:]
