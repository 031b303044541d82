"""Store URIs: parsing, secrets from env/files only, redaction."""

from __future__ import annotations

import pytest

from connectors import InvalidURI, MissingDependency, parse_uri
from tests._imports import hide_module


@pytest.mark.parametrize(
    "uri, backend, transport, location, collection",
    [
        ("qdrant:///data/q?collection=docs", "qdrant", "local", "/data/q", "docs"),
        ("qdrant::memory:?collection=docs", "qdrant", "memory", "", "docs"),
        ("qdrant+http://db.internal:6333?collection=docs", "qdrant", "http", "http://db.internal:6333", "docs"),
        ("qdrant+https://db.example.com?collection=d", "qdrant", "https", "https://db.example.com", "d"),
        ("milvus:///srv/m.db?collection=docs", "milvus", "local", "/srv/m.db", "docs"),
        ("milvus+http://127.0.0.1:19530?collection=docs", "milvus", "http", "http://127.0.0.1:19530", "docs"),
        ("chroma:///srv/chroma?collection=docs", "chroma", "local", "/srv/chroma", "docs"),
        ("chroma+https://h:8000/prefix/?collection=docs", "chroma", "https", "https://h:8000/prefix", "docs"),
        ("CHROMA+HTTP://h:8000?collection=docs", "chroma", "http", "http://h:8000", "docs"),
    ],
)
def test_parse_uri_forms(uri, backend, transport, location, collection):
    c = parse_uri(uri, env={})
    assert (c.backend, c.transport, c.location, c.collection) == (backend, transport, location, collection)


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_uri("milvus:sub/x.db?collection=docs", env={}).location == str(tmp_path / "sub" / "x.db")


def test_options_and_collection_override():
    c = parse_uri("qdrant+http://h:6333?collection=a&vector=text&timeout=5", collection="b", env={})
    assert c.collection == "b"
    assert c.option("vector") == "text"
    assert c.timeout() == 5.0


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "empty store URI"),
        ("docs", "no scheme"),
        ("pinecone://x?collection=a", "unknown backend 'pinecone'"),
        ("qdrant+grpc://h:1?collection=a", "unknown transport 'grpc'"),
        ("qdrant:///x", "no collection"),
        ("qdrant+http://?collection=a", "needs a host"),
        ("qdrant+http://h:notaport?collection=a", "port must be a number from 0 to 65535"),
        ("qdrant+http://h:99999?collection=a", "port must be a number from 0 to 65535"),
        ("qdrant:///x?collection=a&frobnicate=1", "unknown option 'frobnicate'"),
        ("qdrant:///x?collection=a&api_key=s3cret", "secrets are never read from URIs"),
        ("milvus+http://root:s3cret@h:19530?collection=a", "passwords are never read from URIs"),
        ("qdrant:///x?collection=a&collection=b", "given twice"),
        ("qdrant:///x?collection=a&timeout=-1", None),
        ("chroma://host/path?collection=a", "no host for local stores"),
    ],
)
def test_bad_uris_are_refused_with_a_clear_message(uri, message):
    if message is None:
        with pytest.raises(InvalidURI, match="timeout"):
            parse_uri(uri, env={}).timeout()
        return
    with pytest.raises(InvalidURI, match=message) as err:
        parse_uri(uri, env={})
    assert "s3cret" not in str(err.value)


def test_secret_from_default_env_named_env_and_file(tmp_path):
    assert parse_uri("qdrant+https://h?collection=a", env={"QDRANT_API_KEY": "k1"}).secret == "k1"
    # (not Milvus' default root:Milvus: the redaction of secrets is process-wide, and would hide the
    # word "Milvus" from every later message of this test process)
    assert parse_uri("milvus+http://h:1?collection=a", env={"MILVUS_TOKEN": "root:pw-4711"}).secret == "root:pw-4711"
    assert parse_uri("chroma+http://h:1?collection=a&secret_env=MY_TOKEN", env={"MY_TOKEN": "t"}).secret == "t"
    f = tmp_path / "key"
    f.write_text("  from-file\n")
    assert parse_uri(f"qdrant+https://h?collection=a&secret_file={f}", env={"QDRANT_API_KEY": "x"}).secret == "from-file"
    with pytest.raises(InvalidURI, match="not set"):
        parse_uri("chroma+http://h:1?collection=a&secret_env=NOPE", env={})
    with pytest.raises(InvalidURI, match="cannot be read"):
        parse_uri(f"chroma+http://h:1?collection=a&secret_file={tmp_path / 'missing'}", env={})


def test_secrets_never_show_in_repr_or_redacted_uri():
    c = parse_uri("qdrant+https://h:6333?collection=a", env={"QDRANT_API_KEY": "top-secret-key"})
    assert "top-secret-key" not in repr(c)
    assert "top-secret-key" not in c.redacted()
    assert c.redacted() == "qdrant+https://h:6333?collection=a"


def test_an_empty_collection_given_beside_the_uri_is_refused():
    """``collection=""`` used to mean the URI's own collection (``run --collection ""`` ran on it)."""
    with pytest.raises(InvalidURI, match="empty collection name"):
        parse_uri("qdrant:///tmp/x?collection=docs", collection="")
    assert parse_uri("qdrant:///tmp/x?collection=docs", collection=None).collection == "docs"


def test_missing_client_library_names_the_extra(monkeypatch):
    import connectors
    from connectors import _uri

    hide_module(monkeypatch, "chromadb", "chroma")
    with pytest.raises(MissingDependency, match=r"pip install 'nudge-sync\[chroma\]'"):
        connectors.open_store("chroma:///tmp/x?collection=a")
    assert _uri.BACKENDS["chroma"][1] == "chroma"


def test_a_missing_dependency_of_a_client_library_is_named_with_the_extra(monkeypatch, tmp_path):
    """pymilvus needs orjson and grpc: with only another extra installed, a milvus: URI said
    'internal error (a bug)' instead of naming what to install."""
    import connectors

    hide_module(monkeypatch, "orjson", "milvus")
    with pytest.raises(MissingDependency, match=r"needs orjson; install it with: pip install 'nudge-sync\[milvus\]' "
                                                 r"\(from a checkout of nudge-sync: pip install '\.\[milvus\]'\)"):
        connectors.open_store(f"milvus:///{tmp_path}/x.db?collection=a")
