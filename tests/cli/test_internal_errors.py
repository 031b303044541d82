"""An unexpected exception (a bug) never reaches the user as a traceback: one line, exit code 1, and
the traceback only when NUDGE_SYNC_DEBUG=1. The bug is injected into the code path; the bad-input
suites (tests/fuzz) assert that no real input ever gets exit code 1."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from click.testing import CliRunner

from nudge_sync.cli import app
from nudge_sync.engine import ops
from nudge_sync.cli.app import cli, main


def _boom(*args, **kwargs):
    raise KeyError("a bug")


def invoke(*args, env=None):
    return CliRunner().invoke(cli, ["-q", *args], obj={}, env=env, catch_exceptions=False)


def test_an_unexpected_error_is_one_line_and_exit_code_1(monkeypatch):
    monkeypatch.setattr(ops, "status", _boom)
    result = invoke("status", "--store", "qdrant::memory:?collection=docs", env={"NUDGE_SYNC_DEBUG": ""})
    assert result.exit_code == 1
    assert result.stderr.strip() == ("internal error (a bug, please report it): KeyError: 'a bug' "
                                     "(set NUDGE_SYNC_DEBUG=1 for the traceback)")
    as_json = CliRunner().invoke(cli, ["-q", "--json", "status", "--store", "qdrant::memory:?collection=docs"],
                                 obj={}, catch_exceptions=False)
    assert json.loads(as_json.stdout) == {"status": "error", "error": "'a bug'", "error_type": "KeyError",
                                          "exit_code": 1}


def test_nudge_sync_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(ops, "status", _boom)
    result = invoke("status", "--store", "qdrant::memory:?collection=docs", env={"NUDGE_SYNC_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "_boom" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "internal error (a bug, please report it): KeyError: 'a bug'"


def test_the_console_script_catches_errors_outside_commands(monkeypatch, capsys):
    """A bug before any command runs (here: in reading the config) is caught by main() itself."""
    monkeypatch.setattr(app, "load_config", _boom)
    monkeypatch.setattr(sys, "argv", ["nudge-sync", "--config", "x.toml", "status"])
    monkeypatch.delenv("NUDGE_SYNC_DEBUG", raising=False)
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        logging.disable(logging.NOTSET)  # main() silences library logging for the rest of its process
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("internal error (a bug, please report it): KeyError")
