"""Progress reporting: the library's steps emit events; a :class:`Progress` (the CLI draws bars on
stderr) follows them through the :class:`ProgressSubscriber` adapter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .events import Advanced, Event, RunFailed, RunFinished, RunStarted, StepFinished, StepStarted


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


#: What a step is called on a progress line, per command (the step names are the events').
LABELS: dict[str, dict[str, str]] = {
    "run": {"read_inputs": "reading feedback", "plan": "planning", "write": "writing", "verify": "verifying",
            "record": "recording"},
    "rollback": {"read_state": "reading state", "write": "restoring", "verify": "verifying",
                 "record": "recording"},
    "eval": {"read_inputs": "reading feedback", "score": "reading vectors"},
}


class ProgressSubscriber:
    """Turns a command's events into ``progress.begin / advance / end`` calls."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.command = "run"
        self.open = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.command = event.command
        elif isinstance(event, StepStarted):
            self._close()
            self.progress.begin(LABELS.get(self.command, {}).get(event.step, event.step), event.total)
            self.open = True
        elif isinstance(event, Advanced) and self.open:
            self.progress.advance(event.n)
        elif isinstance(event, (StepFinished, RunFinished, RunFailed)):
            self._close()

    def _close(self) -> None:
        if self.open:
            self.open = False
            self.progress.end()
