"""docker-compose.yml cannot run here (no Docker engine): check its shape instead."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

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
