"""Retries for every database call, one implementation for every backend.

Every call nudge-sync makes is safe to repeat: reads are reads, and writes are idempotent (the same
vectors written by key, upserts by key, deletes by key; ``create`` creates only what is missing).
So :class:`RetryingStore` wraps any :class:`VectorStore` (and the :class:`StateCollection` s it
hands out) and repeats a call that failed with a *transient* error -- the database unreachable, a
timeout, HTTP 5xx / 429, gRPC UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED, as each
connector marks them (``ConnectorError.transient``) -- with exponential backoff and jitter. Credentials refused, a missing collection, bad input or a
read-back mismatch are never retried.

The deadline. ``retry_budget`` (URI option, seconds, default 60; 0 turns retries off) is what one
store -- one command -- may spend on a failing database *in all*, not per call: the time from the
start of a call's first failed attempt (at most one call timeout before it failed: a method making
several calls is charged only for the one that failed) to the start of its next successful one is
taken from one pool, so a server that keeps failing, hangs (SIGSTOP), drops packets or answers slowly cannot keep
a command alive by answering now and then. No attempt starts once the pool is spent, and the sleeps
between attempts are cut to what is left of it. Every network call has its own timeout (``timeout``
URI option; :data:`connectors._uri.SERVER_CALL_TIMEOUT` by default), so the attempt running when the
pool runs out ends within one call timeout. Once the pool is spent each later call gets one attempt
without retries -- the put-back of what a failed run wrote -- and the first of those that fails too
opens the circuit: every call after it fails at once with :class:`GaveUp`, without reaching the
database. So a command that meets a failing database ends within ``retry_budget`` plus two call
timeouts (the last retried attempt and the put-back's first attempt), plus the time its successful
calls take (README: Safety, "The deadline").

A full pass (``iter_vectors``, ``read_log``, ``scan``) that fails part-way restarts from the
beginning and skips the records it already handed out, after checking that the record at the seam
is the one it handed out last (a collection that changed meanwhile fails loudly instead of
skipping or repeating records).

Giving up raises :class:`GaveUp` (a ConnectionFailed): "gave up after N attempts over S s
(retry_budget=B): <cause>".
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ._base import (
    CollectionInfo,
    LabelledQuery,
    RecordId,
    SearchResult,
    StateCollection,
    StateRecord,
    VectorStore,
    Versioned,
)
from ._errors import ConnectionFailed, ConnectorError

__all__ = ["DEFAULT_RETRY_BUDGET", "GaveUp", "RetryPolicy", "RetryingState", "RetryingStore", "retry_status"]

log = logging.getLogger("connectors.retry")
T = TypeVar("T")

DEFAULT_RETRY_BUDGET = 60.0


def retry_status(status: int) -> bool:
    """HTTP statuses worth retrying: overloaded, rate-limited, gateways and timeouts."""
    return status in (408, 429) or (500 <= status <= 599 and status not in (501, 505))


class GaveUp(ConnectionFailed):
    """A transient failure outlasted the retry budget."""

    transient = False  # the budget is spent: an outer loop must not start over

    def __init__(self, message: str, *, attempts: int, seconds: float, cause: ConnectorError):
        super().__init__(message)
        self.attempts, self.seconds, self.cause = attempts, seconds, cause


@dataclass
class RetryPolicy:
    """Exponential backoff (``first_delay`` doubling up to ``max_delay``, each delay scaled by a
    random factor in [0.5, 1]) while the failures of all calls together stay within ``budget``
    seconds (the deadline: see the module docstring)."""

    budget: float = DEFAULT_RETRY_BUDGET
    first_delay: float = 0.2
    max_delay: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    #: the longest one network call may take (the store's ``timeout``), None if unbounded: a failed
    #: attempt of a method that makes several calls is charged at most this much (the calls before
    #: the failing one answered: that is work, not waiting on a failing database)
    call_timeout: float | None = None
    #: seconds of the budget taken by failures so far (every call of this store together)
    spent: float = field(default=0.0, init=False)
    #: a call gave up: the budget is spent (later calls get one attempt each)
    exhausted: bool = field(default=False, init=False)
    #: a call failed after the budget was spent: no call reaches the database any more
    broken: ConnectorError | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.budget >= 0 and math.isfinite(self.budget)):
            raise ValueError(f"retry budget must be a finite number of seconds >= 0, got {self.budget!r}")

    def renew(self) -> None:
        """A fresh budget: for a long-lived process that reuses one store for many commands (each
        command opened by the CLI gets its own store, so its own budget)."""
        self.spent, self.exhausted, self.broken = 0.0, False, None

    @property
    def left(self) -> float:
        """Seconds of the budget not yet spent on failures."""
        return max(0.0, self.budget - self.spent)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, retried on transient connector errors."""
        streak = _Streak(self, what)
        while True:
            streak.attempt()
            try:
                result = fn()
            except ConnectorError as exc:
                streak.failed(exc)
            else:
                streak.reset()
                return result

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.first_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


class _Streak:
    """Consecutive failures of one call: decides whether to wait and try again or give up, and
    charges the time they took to the policy's budget."""

    def __init__(self, policy: RetryPolicy, what: str):
        self.policy, self.what = policy, what
        self.attempts = 0
        self.started: float | None = None  #: when the first failed attempt of the streak started
        self.attempt_started = 0.0

    def attempt(self) -> None:
        """Called before each attempt: refuses to reach the database once the circuit is open."""
        broken = self.policy.broken
        if broken is not None:
            raise GaveUp(f"{self.what}: not attempted: this command's retry budget "
                         f"(retry_budget={self.policy.budget:g} s) is spent and the database failed again "
                         f"after that: {broken}", attempts=0, seconds=0.0, cause=broken) from None
        self.attempt_started = self.policy.clock()

    def failed(self, exc: ConnectorError) -> None:
        """Wait before the next attempt, or raise (the error itself, or GaveUp)."""
        policy = self.policy
        if not exc.transient:
            raise exc
        now = policy.clock()
        if self.started is None:
            cap = policy.call_timeout
            self.started = self.attempt_started if cap is None else max(self.attempt_started, now - cap)
        self.attempts += 1
        elapsed = now - self.started
        left = policy.budget - policy.spent - elapsed  # what the pool still holds after this streak
        if left <= 0:
            attempts = self.attempts
            self.reset(now)
            if policy.exhausted:  # the put-back's (or any later call's) one attempt failed: open the circuit
                policy.broken = exc
            policy.exhausted = True
            if policy.budget <= 0:
                raise exc
            raise GaveUp(f"gave up after {attempts} attempts over {elapsed:.1f} s "
                         f"(retry_budget={policy.budget:g}): {exc}",
                         attempts=attempts, seconds=elapsed, cause=exc) from None
        delay = min(policy.delay(self.attempts), left)  # the next attempt starts before the pool is spent
        log.warning("%s failed (attempt %d), retrying in %.2f s: %s", self.what, self.attempts, delay, exc)
        policy.sleep(delay)

    def reset(self, now: float | None = None) -> None:
        """The streak is over (a success, progress, or giving up): charge its failures to the budget."""
        if self.started is not None:
            end = self.attempt_started if now is None else now
            self.policy.spent += max(0.0, end - self.started)
        self.attempts, self.started = 0, None


def _restartable(policy: RetryPolicy, what: str, start: Callable[[], Iterator[T]], size: Callable[[T], int],
                 cut: Callable[[T, int], T], key: Callable[[T, int], Any]) -> Iterator[T]:
    """The batches of ``start()``; after a transient failure the pass starts again and skips the
    records already handed out (``size`` counts a batch's records, ``cut(batch, k)`` drops its first
    ``k``, ``key(batch, j)`` names its ``j``-th record for the seam check)."""
    streak = _Streak(policy, what)
    handed, last = 0, None
    while True:
        streak.attempt()
        try:
            skip = handed
            batches = iter(start())
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                if streak.started is not None:
                    streak.reset()  # a batch arrived: the failures are over (and charged to the budget)
                n = size(batch)
                if skip >= n:
                    if skip == n and n and key(batch, n - 1) != last:
                        raise _changed(what)
                    skip -= n
                    streak.attempt()
                    continue
                if skip:
                    if key(batch, skip - 1) != last:
                        raise _changed(what)
                    batch, n, skip = cut(batch, skip), n - skip, 0
                if n:
                    yield batch
                    handed += n
                    last = key(batch, n - 1)
                streak.attempt()  # the wait for the next batch starts now, not when the consumer began
            if skip:
                raise _changed(what)
            return
        except ConnectorError as exc:
            streak.failed(exc)


def _changed(what: str) -> ConnectorError:
    return ConnectorError(f"{what}: the collection changed while the pass was being read again after a "
                          "failure (records were added or removed before the point reached); run again")


def _vector_batches(ids_vecs: tuple[list[RecordId], np.ndarray]) -> int:
    return len(ids_vecs[0])


class RetryingStore(VectorStore):
    """Any VectorStore, with :class:`RetryPolicy` around every call (see the module docstring).

    Backend-specific attributes of the wrapped store (``write_path``, ``conn`` ...) stay reachable."""

    def __init__(self, inner: VectorStore, policy: RetryPolicy):
        self._inner = inner
        self.policy = policy

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_inner"), name)

    @property
    def inner(self) -> VectorStore:
        return self._inner

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self.policy.call(what, fn)

    def describe(self) -> CollectionInfo:
        return self._call("describe", self._inner.describe)

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[list[RecordId], np.ndarray]]:
        return _restartable(self.policy, "read vectors", lambda: self._inner.iter_vectors(batch_size),
                            _vector_batches, lambda b, k: (b[0][k:], b[1][k:]), lambda b, j: b[0][j])

    def get_vectors(self, ids: Sequence[RecordId]) -> tuple[list[RecordId], np.ndarray, list[RecordId]]:
        return self._call("get vectors", lambda: self._inner.get_vectors(ids))

    def get_versioned(self, ids: Sequence[RecordId]) -> Versioned:
        return self._call("get vectors and versions", lambda: self._inner.get_versioned(ids))

    def update_vectors(self, ids: Sequence[RecordId], vectors: np.ndarray, *, verify: bool = True) -> int:
        return self._call("update vectors", lambda: self._inner.update_vectors(ids, vectors, verify=verify))

    def update_vectors_if(self, ids: Sequence[RecordId], vectors: np.ndarray, versions: Sequence[Any]) -> int:
        return self._call("conditional update of vectors",
                          lambda: self._inner.update_vectors_if(ids, vectors, versions))

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[RecordId] = ()) -> SearchResult:
        excluded = list(exclude)  # an iterator could not be consumed twice
        return self._call("search", lambda: self._inner.search(queries, k, excluded))

    def log_exists(self, name: str) -> bool:
        return self._call("check the query log", lambda: self._inner.log_exists(name))

    def read_log(self, name: str, batch_size: int = 1000) -> Iterator[LabelledQuery]:
        batches = _restartable(self.policy, f"read query log {name!r}",
                               lambda: ([e] for e in self._inner.read_log(name, batch_size)),
                               len, lambda b, k: b[k:], lambda b, j: b[j].query_id)
        return (entry for batch in batches for entry in batch)

    def append_log(self, name: str, queries: Sequence[LabelledQuery], *, batch_size: int | None = None) -> int:
        return self._call("append to the query log",
                          lambda: self._inner.append_log(name, queries, batch_size=batch_size))

    def state(self, name: str) -> StateCollection:
        return RetryingState(self._inner.state(name), self.policy)

    def close(self) -> None:
        self._inner.close()


class RetryingState(StateCollection):
    """A StateCollection with :class:`RetryPolicy` around every call."""

    def __init__(self, inner: StateCollection, policy: RetryPolicy):
        self._inner = inner
        self.policy = policy

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_inner"), name)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._inner.name

    @property
    def inner(self) -> StateCollection:
        return self._inner

    @property
    def max_meta_bytes(self) -> int | None:  # type: ignore[override]
        return self._inner.max_meta_bytes

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self.policy.call(f"{what} ({self._inner.name})", fn)

    def exists(self) -> bool:
        return self._call("state exists", self._inner.exists)

    def dimension(self) -> int:
        return self._call("state dimension", self._inner.dimension)

    def count(self) -> int:
        return self._call("count state", self._inner.count)

    def create(self, dimension: int) -> None:
        self._call("create state", lambda: self._inner.create(dimension))

    def _create(self, dimension: int) -> None:  # create() is delegated whole
        raise NotImplementedError

    def put(self, kind: str, records: Sequence[StateRecord]) -> None:
        self._call("write state", lambda: self._inner.put(kind, records))

    def put_meta(self, kind: str, records: Sequence[StateRecord]) -> None:
        self._call("write state", lambda: self._inner.put_meta(kind, records))

    def get(self, kind: str, keys: Sequence[str]) -> list[StateRecord]:
        return self._call("read state", lambda: self._inner.get(kind, keys))

    def scan(self, kind: str, batch_size: int = 1000) -> Iterator[list[StateRecord]]:
        return _restartable(self.policy, f"scan state {self._inner.name!r}",
                            lambda: self._inner.scan(kind, batch_size), len, lambda b, k: b[k:],
                            lambda b, j: b[j].key)

    def delete(self, kind: str, keys: Sequence[str]) -> None:
        self._call("delete from state", lambda: self._inner.delete(kind, keys))

    def drop(self) -> None:
        self._call("drop state", self._inner.drop)
