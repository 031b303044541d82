"""The architecture is checked, not just described (ARCHITECTURE.md): the import contracts hold,
and no module grows past the size where it stops having one job."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: A module over this many lines is holding several jobs: split it (ARCHITECTURE.md).
MAX_MODULE_LINES = 400




def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs it")
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_module_is_over_the_size_limit():
    modules = sorted(ROOT.glob("nudge_sync/**/*.py")) + sorted(ROOT.glob("connectors/**/*.py"))
    too_long = {str(p.relative_to(ROOT)): n for p in modules
                if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
