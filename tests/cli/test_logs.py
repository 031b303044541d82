"""The command line owns stderr: client libraries' log lines are hidden unless --verbose, and
redacted when shown (pymilvus prints an [ERROR] line with a traceback for every failed RPC)."""

from __future__ import annotations

import logging

import pytest

from connectors import _secrets
from connectors._uri import _backend_module
from nudge_sync.cli import logs


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield
    root.setLevel(saved[0])
    for handler in list(root.handlers):
        if handler not in saved[1]:
            root.removeHandler(handler)


def test_client_library_logs_are_hidden_then_shown_redacted(restore_logging, capsys):
    secret = "tok-" + "9f3c2a7e41d8b6"
    _secrets.register(secret)
    pymilvus_settings = pytest.importorskip("pymilvus.settings")
    logs.configure(verbose=False)
    pymilvus_settings.init_log("WARNING")  # what importing pymilvus does: its own stderr handlers
    _backend_module("milvus")  # a store being opened: the CLI's logging is put back
    assert logging.getLogger("pymilvus").handlers == []
    logging.getLogger("pymilvus.decorators").error("RPC error: [query] token=%s\nTraceback: ...", secret)
    logging.getLogger("connectors.retry").warning("update vectors failed (attempt 1), retrying in 0.2 s")
    err = capsys.readouterr().err
    assert "RPC error" not in err and "retrying in 0.2 s" in err  # our own warnings stay visible
    logs.configure(verbose=True)
    logging.getLogger("pymilvus.decorators").error("RPC error: [query] token=%s", secret)
    err = capsys.readouterr().err
    assert "RPC error: [query] token=***" in err and secret not in err
