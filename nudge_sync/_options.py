"""Options of a sync run and the report it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from connectors import check_batch_size

from ._errors import RefusedInput

Method = Literal["nudge-n", "nudge-m"]
ContextMode = Literal["auto", "exact", "search"]

#: ``auto`` streams the collection (exact) up to this many stored floats (records x dimension),
#: and uses the database's kNN search above it, so huge collections are never pulled.
AUTO_EXACT_MAX_FLOATS = 200_000_000


@dataclass
class SyncOptions:
    """Everything that shapes one run. Defaults are what a nightly job should use."""

    #: Log collection in the same database (default ``<collection>_feedback``); ignored when
    #: entries are passed to ``sync()`` directly (e.g. read from a file).
    log: str | None = None
    #: Companion collection holding originals, fingerprints, runs and the lock.
    state: str | None = None
    method: Method = "nudge-n"
    #: Fixed γ (skips the search), else chosen on validation.
    gamma: float | None = None
    #: "fine" searches γ finely for ``objective``; "parity" reproduces nudge-ft's grid/sweep.
    gamma_search: Literal["fine", "parity"] = "fine"
    objective: str = "ndcg@10"
    context: ContextMode = "auto"
    #: Depth of each validation query's context (>= the objective's k).
    context_k: int = 20
    val_fraction: float = 0.2
    split_salt: str = ""
    normalize_queries: bool = True
    #: Gate: at least this many validation queries ...
    min_val_queries: int = 10
    #: ... a validation gain (objective, absolute, e.g. 0.01 = one point) strictly above this ...
    min_gain: float = 0.0
    #: ... and at most this share of the collection rewritten in one run.
    max_changed_fraction: float = 0.25
    #: Only run when at least this many log entries are newer than the last run's watermark.
    min_new_feedback: int = 0
    #: Vectors closer than this (max abs difference) to the stored ones are not rewritten.
    tolerance: float = 1e-6
    batch_size: int = 1000
    lock_ttl: float = 3600.0
    break_lock: bool = False
    dry_run: bool = False

    def validate(self) -> SyncOptions:
        def bad(name: str, why: str) -> RefusedInput:
            return RefusedInput(f"option {name}={getattr(self, name)!r}: {why}")

        if self.method not in ("nudge-n", "nudge-m"):
            raise bad("method", "expected nudge-n or nudge-m")
        if self.context not in ("auto", "exact", "search"):
            raise bad("context", "expected auto, exact or search")
        if self.gamma_search not in ("fine", "parity"):
            raise bad("gamma_search", "expected fine or parity")
        if self.gamma is not None and not (self.gamma >= 0 and self.gamma == self.gamma and self.gamma != float("inf")):
            raise bad("gamma", "must be a finite number >= 0")
        if self.method == "nudge-n" and self.gamma is not None and self.gamma > 4:
            raise bad("gamma", "NUDGE-N bounds the squared step on the unit sphere: gamma must be <= 4")
        if not 0 < self.val_fraction < 1:
            raise bad("val_fraction", "must be strictly between 0 and 1")
        if self.context_k < 1:
            raise bad("context_k", "must be >= 1")
        if self.min_val_queries < 1:
            raise bad("min_val_queries", "must be >= 1")
        if not 0 < self.max_changed_fraction <= 1:
            raise bad("max_changed_fraction", "must be in (0, 1]")
        if self.tolerance < 0 or self.batch_size < 1 or self.lock_ttl <= 0 or self.min_new_feedback < 0:
            raise RefusedInput("tolerance, min_new_feedback must be >= 0; batch_size, lock_ttl must be > 0")
        return self

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class SyncReport:
    """What a run did. ``status`` is one of: written, unchanged, dry-run, gated; and for a run that
    failed after writing: undone (it put back what it wrote) or partial (it could not)."""

    run_id: str
    status: str
    store: str
    collection: str
    method: str
    started: float
    finished: float = 0.0
    gamma: float | None = None
    objective: str = ""
    context_mode: str = ""
    reason: str = ""  #: why nothing was written (gated) or a short summary
    counts: dict[str, int] = field(default_factory=dict)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  #: {"before": {...}, "after": {...}}
    curve: dict[str, list[float]] = field(default_factory=dict)  #: {"gamma": [...], "score": [...]}
    timings: dict[str, float] = field(default_factory=dict)
    watermark: float | None = None
    #: how the log was split into train/validation: {"val_fraction": f, "salt": s} (eval reuses it)
    split: dict[str, Any] = field(default_factory=dict)
    written_ids: list[Any] = field(default_factory=list)
    #: the lock this run took over: left by a process of this host that no longer runs
    took_over_lock: dict[str, Any] | None = None

    def to_dict(self, *, with_ids: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_ids:
            out.pop("written_ids")
        return out


def check_batch_size_option(batch_size: int) -> None:
    """The connectors' batch-size rule, refused as the sync library's RefusedInput (exit code 4)."""
    try:
        check_batch_size(batch_size)
    except ValueError as exc:
        raise RefusedInput(str(exc)) from None
