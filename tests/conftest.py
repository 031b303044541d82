"""Shared fixtures: the ``harness`` fixture runs a test body against every real backend."""

from __future__ import annotations

import importlib
import itertools
import os
from pathlib import Path

import pytest

from tests.backends import HARNESS_NAMES

# Backend modules define session fixtures ``harness_<name>`` (servers start on first use). They
# import their database's client, so they are loaded only when importable: tests/core runs with
# numpy alone, and a test that asks for a backend whose client is missing is skipped by name.
_HARNESS_MODULES = ("chroma", "memory", "milvus", "qdrant")
MISSING_CLIENTS: dict[str, str] = {}
for _name in _HARNESS_MODULES:
    try:
        _module = importlib.import_module(f"tests.backends.{_name}")
    except ImportError as _exc:
        MISSING_CLIENTS[_name] = str(_exc)
        continue
    globals().update({k: getattr(_module, k) for k in getattr(_module, "__all__", dir(_module))
                      if not k.startswith("_")})

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config) -> None:
    """Compile nudge-sync's own modules once, before any ``nudge-sync`` subprocess starts. The suite
    starts about a thousand of them; where PYTHONDONTWRITEBYTECODE is set (CI machines set it), each
    would compile the package from source again (~0.15 s of CPU each). Python reads existing
    bytecode whatever that variable says; this writes it once, on the controller only."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has done it
        return
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in ("nudge_sync", "connectors"):
        compileall.compile_dir(root / package, quiet=1, workers=1)


def selected_harnesses() -> list[str]:
    """All harnesses, or the comma-separated subset in NUDGE_SYNC_BACKENDS (for local iteration)."""
    raw = os.environ.get("NUDGE_SYNC_BACKENDS", "").strip()
    if not raw:
        return list(HARNESS_NAMES)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(HARNESS_NAMES))
    if unknown:
        raise pytest.UsageError(f"NUDGE_SYNC_BACKENDS names unknown harnesses {unknown}; known: {HARNESS_NAMES}")
    return names


#: Tests that reach the database from another process (``nudge-sync`` subprocesses, a writer process):
#: an in-process harness (memory) cannot serve them, so its cases are deselected there.
SUBPROCESS_SUITES = ("tests/cli/", "tests/user/", "tests/contract/test_fresh_open.py")
IN_PROCESS_HARNESSES = frozenset({"memory"})


#: The harness whose session server only one xdist worker starts: its tests form one xdist group
#: (``--dist loadgroup`` in pyproject's addopts). A Milvus 2.3.5 standalone costs ~15 CPU-s to start
#: and ~10% of a core while idle (20 ms time ticks) for the whole session; a second one on the other
#: worker took that from a 2-core machine's tests.
ONE_WORKER_SERVER = "milvus-2.3.5"


def pytest_collection_modifyitems(config, items) -> None:
    """Leave in-process harnesses out of the suites that run the database from another process, and
    keep the tests of :data:`ONE_WORKER_SERVER` on one worker."""
    root = Path(str(config.rootpath))
    keep, drop = [], []
    for item in items:
        where = Path(str(item.path)).relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        params = getattr(getattr(item, "callspec", None), "params", {})
        in_process = any(isinstance(v, str) and v in IN_PROCESS_HARNESSES for v in params.values())
        (drop if in_process and where.startswith(SUBPROCESS_SUITES) else keep).append(item)
        if any(isinstance(v, str) and v == ONE_WORKER_SERVER for v in params.values()):
            item.add_marker(pytest.mark.xdist_group(ONE_WORKER_SERVER))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def fixture_name(harness_name: str) -> str:
    return "harness_" + harness_name.replace("-", "_").replace(".", "_")


#: Harnesses that repeat others' engine and connector code: ``milvus-lite-server`` runs Milvus Lite's
#: engine (the embedded ``milvus-lite``) behind the ``milvus+http`` path ``milvus-2.3.5`` takes, so only
#: a test that kills, stops or restarts a server needs it (tests/REMOVED_TESTS.md, "Merged, and a redundant
#: backend dropped").
TWIN_HARNESSES = ("milvus-lite-server",)


def harness_without(*names: str):
    """A ``harness`` fixture over the selected harnesses minus ``names``; a module that assigns it
    to ``harness`` runs its tests on the rest only."""
    @pytest.fixture(scope="session", params=[h for h in selected_harnesses() if h not in names])
    def harness(request):
        """A running backend (embedded or a real server started on a free loopback port)."""
        backend = request.param.split("-")[0]
        if backend in MISSING_CLIENTS:
            pytest.skip(f"{request.param}: {MISSING_CLIENTS[backend]} (pip install -e '.[test]')")
        return request.getfixturevalue(fixture_name(request.param))

    return harness


#: Every selected harness.
harness = harness_without()

_names = itertools.count()


@pytest.fixture
def collection_name(request) -> str:
    """A fresh collection name valid on every backend (letters, digits, underscores; 3+ chars)."""
    base = "".join(ch if ch.isalnum() else "_" for ch in request.node.originalname.lower())[:40].rstrip("_")
    return f"c{next(_names)}_{base}"


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def scifact_path() -> Path:
    path = SHARED_DATA / "scifact-minilm.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent: the scifact tests need ../shared/data beside the repository")
    return path


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """After the whole session (on the xdist controller): the user-level suite's counted trials as
    the README's table (tests/user/summary.py), printed and saved beside the trials file."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from tests.user._tally import TRIALS_FILE, trials_dir
    from tests.user.summary import load, render

    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    path = trials_dir(factory.getbasetemp()) / TRIALS_FILE
    if not path.exists():
        return
    table = render(load(path))
    (path.parent / "user-suite-summary.md").write_text(table + "\n")
    terminalreporter.write_sep("=", "user-level suite: counted trials (python -m tests.user.summary)")
    terminalreporter.write_line(table)
    terminalreporter.write_line(f"trials: {path}")
