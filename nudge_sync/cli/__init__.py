"""Entry point of the ``nudge-sync`` command (the click app lives in ``app``; the commands in ``commands``).

Kept separate so that a bare ``pip install nudge-sync`` (numpy only) still gives a helpful
message instead of a traceback when click is missing.
"""

from __future__ import annotations

import sys

try:
    from .app import main
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    if exc.name != "click":
        raise

    def main() -> None:  # type: ignore[misc]
        sys.stderr.write("the nudge-sync command line needs click: pip install 'nudge-sync[cli]'\n")
        sys.exit(2)


__all__ = ["main"]
