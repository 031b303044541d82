"""Options of a sync run and the report it returns."""

from __future__ import annotations

import math
import time
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from connectors import check_batch_size

from .errors import RefusedInput
from ..core.metrics import parse_metric

Method = Literal["nudge-n", "nudge-m"]
ContextMode = Literal["auto", "exact", "search"]

#: ``auto`` streams the collection (exact) up to this many stored floats (records x dimension),
#: and uses the database's kNN search above it, so huge collections are never pulled.
AUTO_EXACT_MAX_FLOATS = 200_000_000
#: The deepest ranking a metric (``ndcg@K``) or a validation context (``context_k``) may ask for:
#: every validation query holds K ids and scores, and Milvus searches return at most 16,384 hits.
MAX_K = 4096
#: Largest γ accepted for NUDGE-M (NUDGE-N's is 4): far past any useful step, well inside float32.
MAX_GAMMA_M = 1000.0
#: Default of ``gamma_margin`` (measured: bench/results/sticky.md).
DEFAULT_GAMMA_MARGIN = 0.01
#: Longest lock expiry: a dead run never blocks a collection for more than 30 days.
MAX_LOCK_TTL = 30 * 86_400.0
#: Largest batch: records per database call (Milvus reads at most 16,384 rows per query).
MAX_BATCH = 16_384


def check_metric(spec: Any, option: str = "objective") -> str:
    """``spec`` as a canonical metric name (``ndcg@10``), or RefusedInput naming ``option``."""
    problem, canonical = parse_metric_spec(spec)
    if problem:
        raise RefusedInput(f"option {option}={spec!r}: {problem}")
    return canonical


def parse_metric_spec(spec: Any) -> tuple[str, str]:
    """``("", "ndcg@10")`` for a metric nudge-sync can compute, else ``(what is wrong, "")``."""
    try:
        name, k = parse_metric(spec)
    except ValueError as exc:
        return str(exc), ""
    if k > MAX_K:
        return f"metric {spec!r}: k must be at most {MAX_K}", ""
    return "", f"{name}@{k}"


def check_fraction(value: Any, option: str) -> float:
    """A number strictly between 0 and 1, or RefusedInput naming ``option``."""
    if not _number(value) or not 0 < value < 1:
        raise RefusedInput(f"option {option}={value!r}: must be a number strictly between 0 and 1")
    return float(value)


def _number(value: Any) -> bool:
    """A finite real number (bools are not numbers here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass
class SyncOptions:
    """Everything that shapes one run. Defaults are what a nightly job should use."""

    #: Log collection in the same database (default ``<collection>_feedback``); ignored when
    #: entries are passed to ``sync()`` directly (e.g. read from a file).
    log: str | None = None
    #: Companion collection holding originals, fingerprints, runs and the lock.
    state: str | None = None
    #: State entries failing their checksums are adopted (left as stored) and counted instead of
    #: refusing the run (--skip-unverified).
    skip_unverified: bool = False
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
    #: Search mode: the last run's γ stays unless the newly chosen one beats it on this run's
    #: validation context by more than this (absolute objective), so the noise of an approximate
    #: kNN does not rewrite every nudged record (``nudge_sync.engine.sticky``; bench/bench_sticky.py).
    gamma_margin: float = DEFAULT_GAMMA_MARGIN
    #: Only run when at least this many log entries are newer than the last run's watermark.
    min_new_feedback: int = 0
    #: Vectors closer than this (max abs difference) to the stored ones are not rewritten.
    tolerance: float = 1e-6
    batch_size: int = 1000
    lock_ttl: float = 3600.0
    break_lock: bool = False
    dry_run: bool = False
    #: Run in full even when nothing is new since the last run (skips the ``nothing_new`` gate of
    #: ``nudge_sync.engine.noop``): e.g. after re-embedding records outside nudge-sync.
    force: bool = False

    @classmethod
    def refusal(cls, name: str, value: Any, **others: Any) -> str:
        """What :meth:`validate` says of ``value`` for option ``name`` beside the defaults (and
        ``others``); ``""`` when it is accepted. The command line checks its options with it."""
        try:
            cls(**{**others, name: value}).validate()
        except RefusedInput as exc:
            return str(exc)
        return ""

    def validate(self) -> SyncOptions:
        """Self, or RefusedInput naming the first option that is out of range (NaN and infinities
        included: a NaN compares false with every bound, so each check asks for a finite number first)."""
        def bad(name: str, why: str) -> RefusedInput:
            return RefusedInput(f"option {name}={getattr(self, name)!r}: {why}")

        def count(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
                    or (high is not None and value > high)):
                raise bad(name, f"must be an integer >= {low}" + (f" and <= {high}" if high is not None else ""))

        if self.method not in ("nudge-n", "nudge-m"):
            raise bad("method", "expected nudge-n or nudge-m")
        if self.context not in ("auto", "exact", "search"):
            raise bad("context", "expected auto, exact or search")
        if self.gamma_search not in ("fine", "parity"):
            raise bad("gamma_search", "expected fine or parity")
        gamma_max = 4.0 if self.method == "nudge-n" else MAX_GAMMA_M
        if self.gamma is not None and not (_number(self.gamma) and 0 <= self.gamma <= gamma_max):
            why = "NUDGE-N bounds the squared step on the unit sphere: " if self.method == "nudge-n" else ""
            raise bad("gamma", f"{why}must be a finite number from 0 to {gamma_max:g}")
        self.objective = check_metric(self.objective, "objective")
        check_fraction(self.val_fraction, "val_fraction")
        count("context_k", 1, MAX_K)
        count("min_val_queries", 1)
        count("min_new_feedback", 0)
        count("batch_size", 1, MAX_BATCH)
        if not (_number(self.max_changed_fraction) and 0 < self.max_changed_fraction <= 1):
            raise bad("max_changed_fraction", "must be a number in (0, 1]")
        if not (_number(self.min_gain) and -1 <= self.min_gain <= 1):
            raise bad("min_gain", "must be a number from -1 to 1 (metrics lie between 0 and 1)")
        if not (_number(self.gamma_margin) and 0 <= self.gamma_margin <= 1):
            raise bad("gamma_margin", "must be a number from 0 to 1 (metrics lie between 0 and 1)")
        if not (_number(self.tolerance) and self.tolerance >= 0):
            raise bad("tolerance", "must be a finite number >= 0")
        if not (_number(self.lock_ttl) and 0 < self.lock_ttl <= MAX_LOCK_TTL):
            raise bad("lock_ttl", f"must be a number of seconds > 0 and <= {MAX_LOCK_TTL:,.0f} (30 days)")
        if not isinstance(self.split_salt, str):
            raise bad("split_salt", "must be a string")
        return self


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
    notes: list[str] = field(default_factory=list)  #: adjustments the run made to its options, said aloud
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
    #: the plan id this dry run saved (``plan --out``) or this run applied (``apply``)
    plan: str | None = None
    #: what the run was planned from besides the state and the vectors (``noop.basis_of``): the
    #: next run compares its own with it to tell that nothing is new
    basis: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, with_ids: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_ids:
            out.pop("written_ids")
        return out

    def would_write(self, ids: list[Any], restores: int) -> SyncReport:
        """A dry run's outcome: what it would write, having written nothing."""
        self.status = "dry-run"
        self.reason = f"would write {len(ids)} vectors ({restores} restores)"
        self.written_ids = ids
        self.finished = time.time()
        return self

    def wrote(self, ids: list[Any], *, restores: int, adopted: int, vanished: int) -> dict[str, Any]:
        """A run's outcome once its writes landed (``ids``); the run record the state keeps."""
        self.counts.update(written=len(ids), adopted_during_run=adopted, vanished_during_run=vanished)
        self.status = "written" if ids else "unchanged"
        self.reason = f"wrote {len(ids)} vectors ({restores} restores)"
        if adopted:
            self.reason += f"; {adopted} re-embedded by someone else during the run were adopted, not written"
        self.written_ids = ids
        self.finished = time.time()
        return self.to_dict()


def check_batch_size_option(batch_size: int) -> None:
    """The connectors' batch-size rule, refused as the sync library's RefusedInput (exit code 4)."""
    try:
        check_batch_size(batch_size)
    except ValueError as exc:
        raise RefusedInput(str(exc)) from None
