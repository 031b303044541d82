"""Simulate a client library that is not installed, for the tests of what a user without an extra
sees (``pip install '.[qdrant]'`` only, then a milvus: or chroma: URI)."""

from __future__ import annotations

import builtins
import sys

import pytest


def hide_module(monkeypatch: pytest.MonkeyPatch, missing: str, backend: str) -> None:
    """Make ``import <missing>`` (and its submodules) fail as an absent package does, and drop the
    ``connectors.<backend>`` modules already imported so that the backend is imported afresh."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == missing or name.startswith(missing + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    package = f"connectors.{backend}"
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", fake_import)
