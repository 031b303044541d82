"""docker-compose.yml cannot run here (no Docker engine): check its shape instead."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests._procs import closed_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DATABASES = {"qdrant": 6333, "milvus": 19530, "chroma": 8000}


def test_every_image_is_pinned():
    for name, service in COMPOSE["services"].items():
        if "image" in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name} image {image} is not pinned"
            assert re.search(r":v?\d|RELEASE\.", image), f"{name} image {image} has no version tag"


def test_databases_are_healthchecked_on_loopback_with_volumes():
    for name, port in DATABASES.items():
        service = COMPOSE["services"][name]
        assert service["healthcheck"]["test"], name
        assert f"127.0.0.1:{port}:{port}" in service["ports"], name
        for volume in service["volumes"]:
            assert volume.split(":")[0] in COMPOSE["volumes"], f"{name}: {volume} is not a named volume"


def test_milvus_waits_for_its_dependencies_and_supports_partial_update():
    milvus = COMPOSE["services"]["milvus"]
    assert set(milvus["depends_on"]) == {"etcd", "minio"}
    major, minor, patch = map(int, re.search(r":v(\d+)\.(\d+)\.(\d+)", milvus["image"]).groups())
    assert (major, minor, patch) >= (2, 6, 2)


def test_ports_match_the_readme_uris():
    readme = (ROOT / "README.md").read_text()
    for name, port in DATABASES.items():
        assert f"{name}+http://127.0.0.1:{port}" in readme or f"{name}+http://localhost:{port}" in readme


def test_no_secret_is_written_in_the_file():
    for service in COMPOSE["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if any(w in key for w in ("API_KEY", "TOKEN")):
                assert str(value).startswith("${"), f"{key} must come from the environment"


# -- health checks that can actually run inside their images ------------------------------------------

#: Executables each image is known to ship (read from the projects' Dockerfiles and compose files:
#: qdrant and chroma 1.x are debian-slim images with bash but no curl/wget; the Milvus and MinIO
#: images have curl, the projects' own compose files probe with it; etcd ships etcdctl).
IMAGE_BINARIES = {
    "qdrant/qdrant": {"bash"},
    "chromadb/chroma": {"bash"},
    "milvusdb/milvus": {"curl"},
    "minio/minio": {"curl"},
    "quay.io/coreos/etcd": {"etcdctl"},
}


def _probe(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return list(test)


def test_health_checks_only_use_binaries_the_images_have():
    for name, service in COMPOSE["services"].items():
        if "image" not in service:
            continue
        repo = service["image"].rsplit(":", 1)[0]
        assert repo in IMAGE_BINARIES, f"{name}: add {repo} to IMAGE_BINARIES after checking its Dockerfile"
        kind, *argv = _probe(service)
        assert kind in ("CMD", "CMD-SHELL"), name
        exe = argv[0].split()[0] if kind == "CMD-SHELL" else argv[0]
        assert exe in IMAGE_BINARIES[repo], f"{name}: the health check runs {exe!r}, which {repo} does not ship"


def test_dollar_signs_in_health_checks_are_escaped_for_compose():
    # compose interpolates $name itself; a shell variable must be written $$name
    for name, service in COMPOSE["services"].items():
        if "healthcheck" not in service:
            continue
        for arg in _probe(service)[1:]:
            assert not re.search(r"(?<!\$)\$(?!\$)", arg.replace("$$", "")), f"{name}: unescaped $ in {arg!r}"


def test_qdrant_image_is_within_one_minor_of_the_client():
    from importlib.metadata import version

    image = COMPOSE["services"]["qdrant"]["image"]
    server = tuple(map(int, re.search(r":v(\d+)\.(\d+)\.\d+$", image).groups()))
    client = tuple(map(int, version("qdrant-client").split(".")[:2]))
    assert server[0] == client[0] and abs(server[1] - client[1]) <= 1, (image, client)


class _Health(BaseHTTPRequestHandler):
    path_ok = "/"
    status_ok = 200

    def do_GET(self) -> None:  # noqa: N802
        code = type(self).status_ok if self.path == type(self).path_ok else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("service, path", [("qdrant", "/readyz"), ("chroma", "/api/v2/heartbeat")])
def test_bash_http_health_checks_work(service, path):
    """Run the bash probe as Docker would (after compose's $$ -> $), against a loopback listener."""
    kind, *argv = _probe(COMPOSE["services"][service])
    assert kind == "CMD" and argv[:2] == ["bash", "-c"]
    port = DATABASES[service]
    script = argv[2].replace("$$", "$")
    assert f"/dev/tcp/127.0.0.1/{port}" in script and f"GET {path} " in script
    _Health.path_ok = path
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = script.replace(f"/{port} ", f"/{server.server_address[1]} ")
    try:
        for status, healthy in ((200, True), (503, False)):
            _Health.status_ok = status
            done = subprocess.run(["bash", "-c", local], capture_output=True, timeout=10)
            assert (done.returncode == 0) is healthy, (status, done.stderr)
    finally:
        server.shutdown()
        server.server_close()
    closed = script.replace(f"/{port} ", f"/{closed_port()} ")
    assert subprocess.run(["bash", "-c", closed], capture_output=True, timeout=10).returncode != 0
