"""Progress reporting hooks: the library reports phases; the CLI draws bars on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    """No-op progress sink. Subclass and override :meth:`begin`, :meth:`advance`, :meth:`end`."""

    def begin(self, phase: str, total: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def end(self) -> None:
        pass

    @contextmanager
    def phase(self, name: str, total: int | None = None) -> Iterator[Progress]:
        self.begin(name, total)
        try:
            yield self
        finally:
            self.end()
