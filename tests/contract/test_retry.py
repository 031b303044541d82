"""Retries (connectors._retry): which errors are retried, backoff within a time budget, the message
when giving up, passes restarted after a failure, and a real server stopped (SIGSTOP) mid-call."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import connectors
from connectors import AuthenticationFailed, ConnectionFailed, ConnectorError, WriteFailed
from connectors._retry import GaveUp, RetryingStore, RetryPolicy, retry_status
from tests.backends.chroma import start_chroma_server


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def policy(budget: float = 10.0) -> tuple[RetryPolicy, FakeClock]:
    fake = FakeClock()
    return RetryPolicy(budget, sleep=fake.sleep, clock=fake.clock), fake


def failing(errors: list[Exception], result="ok"):
    calls = []

    def call():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


def test_transient_errors_are_retried_with_growing_jittered_delays():
    p, fake = policy()
    call, calls = failing([ConnectionFailed("down")] * 4)
    assert p.call("read", call) == "ok" and len(calls) == 5
    assert len(fake.sleeps) == 4
    for n, delay in enumerate(fake.sleeps):
        nominal = min(p.max_delay, p.first_delay * 2**n)
        assert nominal * 0.5 <= delay <= nominal


@pytest.mark.parametrize("error", [
    AuthenticationFailed("refused"), WriteFailed("read-back differs"), ConnectorError("bad request"),
    ConnectorError("HTTP 400").retryable(False),
], ids=["auth", "readback", "plain", "4xx"])
def test_other_errors_are_never_retried(error):
    p, fake = policy()
    call, calls = failing([error])
    with pytest.raises(type(error)):
        p.call("write", call)
    assert len(calls) == 1 and not fake.sleeps


def test_giving_up_says_how_often_for_how_long_and_why():
    p, fake = policy(budget=3.0)
    call, calls = failing([WriteFailed("HTTP 503: busy").retryable()] * 100)
    with pytest.raises(GaveUp) as err:
        p.call("update vectors", call)
    message = str(err.value)
    assert message.startswith(f"gave up after {len(calls)} attempts over ")
    assert "(retry_budget=3): HTTP 503: busy" in message
    assert fake.now <= 3.0 and err.value.attempts == len(calls) >= 4
    assert isinstance(err.value, ConnectionFailed) and not err.value.transient


def test_budget_zero_means_no_retries():
    p, fake = policy(budget=0)
    call, calls = failing([ConnectionFailed("down")])
    with pytest.raises(ConnectionFailed, match="^down$"):
        p.call("read", call)
    assert len(calls) == 1


def test_http_statuses_worth_retrying():
    assert [s for s in (400, 401, 403, 404, 408, 409, 429, 500, 501, 502, 503, 504, 505) if retry_status(s)] == \
        [408, 429, 500, 502, 503, 504]


class FlakyPass:
    """A store whose full read fails once after ``fail_after`` records (then reads normally)."""

    def __init__(self, ids, fail_after, shift_by=0):
        self.ids, self.fail_after, self.shift_by, self.passes = list(ids), fail_after, shift_by, 0

    def iter_vectors(self, batch_size=1000):
        self.passes += 1
        ids = self.ids if self.passes == 1 else self.ids[self.shift_by:]
        for start in range(0, len(ids), batch_size):
            if self.passes == 1 and start >= self.fail_after:
                raise ConnectionFailed("connection reset")
            chunk = ids[start:start + batch_size]
            yield chunk, np.asarray(chunk, np.float32)[:, None]


def test_a_pass_that_fails_part_way_restarts_and_hands_out_each_record_once():
    p, _ = policy()
    inner = FlakyPass(range(100), fail_after=40)
    store = RetryingStore(inner, p)  # type: ignore[arg-type]
    seen = [i for ids, _ in store.iter_vectors(batch_size=15) for i in ids]
    assert seen == list(range(100)) and inner.passes == 2


def test_a_pass_over_a_collection_that_changed_meanwhile_fails_loudly():
    p, _ = policy()
    store = RetryingStore(FlakyPass(range(100), fail_after=40, shift_by=3), p)  # type: ignore[arg-type]
    with pytest.raises(ConnectorError, match="changed while the pass was being read again"):
        list(store.iter_vectors(batch_size=15))


def test_retry_budget_and_timeout_options_are_checked():
    for bad in ("-1", "x", "inf", "nan"):
        with pytest.raises(connectors.InvalidURI, match="retry_budget"):
            connectors.open_store(f"qdrant::memory:?collection=c&retry_budget={bad}")
    with pytest.raises(connectors.InvalidURI, match="version_field .* is a Qdrant option"):
        connectors.parse_uri("chroma:///tmp/x?collection=c&version_field=updated_at")


def test_a_stopped_server_is_waited_for_and_then_given_up_on(tmp_path):
    """SIGSTOP: the server accepts connections and never answers. A finite per-call timeout turns
    that into a transient failure; the call succeeds once the server resumes within the budget,
    and gives up clearly when it does not."""
    proc, base = start_chroma_server(tmp_path / "data", tmp_path)
    try:
        uri = f"chroma+{base}?collection=docs&timeout=1"
        connectors.create_collection(uri, ["a", "b"], np.eye(2, dtype=np.float32), metric="dot")
        with connectors.open_store(uri + "&retry_budget=20") as store:
            assert store.describe().count == 2
            os.kill(proc.pid, signal.SIGSTOP)
            resume = threading.Timer(2.5, os.kill, (proc.pid, signal.SIGCONT))
            resume.start()
            t0 = time.monotonic()
            found, vectors, _ = store.get_vectors(["b"])
            assert found == ["b"] and vectors.tolist() == [[0.0, 1.0]]
            assert 2.0 < time.monotonic() - t0 < 20
            resume.join()
        with connectors.open_store(uri + "&retry_budget=2") as store:
            store.describe()
            os.kill(proc.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            with pytest.raises(GaveUp, match=r"gave up after \d+ attempts over .* \(retry_budget=2\)"):
                store.get_vectors(["a"])
            assert time.monotonic() - t0 < 10
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.stop()


# -- the deadline: one budget for the whole command (issue 18, finding 5) ---------------------------


def hanging(fake: FakeClock, seconds: float, errors: int, result="ok"):
    """A call that hangs ``seconds`` (the client's timeout) and then fails, ``errors`` times."""
    calls = []

    def call():
        calls.append(fake.now)
        if len(calls) <= errors:
            fake.now += seconds
            raise ConnectionFailed("timed out")
        return result

    return call, calls


def test_the_budget_is_shared_by_every_call_of_the_command():
    p, fake = policy(budget=10.0)
    for _ in range(3):  # three calls that each recover after ~3 s of failures
        call, _ = hanging(fake, 3.0, errors=1)
        assert p.call("read", call) == "ok"
    assert 9.0 <= p.spent <= 10.0
    call, calls = hanging(fake, 3.0, errors=100)
    start = fake.now
    with pytest.raises(GaveUp):
        p.call("read", call)
    # whatever was left of the pool (< 1 s) plus the attempt running when it ran out
    assert fake.now - start <= (10.0 - 9.0) + 3.0 and len(calls) == 1


def test_no_attempt_starts_after_the_deadline_and_sleeps_are_cut_to_it():
    p, fake = policy(budget=5.0)
    call, calls = hanging(fake, 2.0, errors=100)
    with pytest.raises(GaveUp):
        p.call("update vectors", call)
    assert all(t < 5.0 for t in calls), calls  # every attempt started within the budget
    assert fake.now <= 5.0 + 2.0  # the budget plus one call timeout
    assert sum(fake.sleeps) + 2.0 * len(calls) - 2.0 <= 5.0


def test_after_giving_up_one_more_attempt_then_the_circuit_opens():
    p, fake = policy(budget=2.0)
    call, _ = hanging(fake, 1.0, errors=100)
    with pytest.raises(GaveUp):
        p.call("write", call)
    given_up_at = fake.now
    put_back, put_calls = hanging(fake, 1.0, errors=100)
    with pytest.raises(GaveUp):  # the put-back gets one attempt, no retries
        p.call("put back", put_back)
    assert len(put_calls) == 1 and fake.now == given_up_at + 1.0
    later, later_calls = hanging(fake, 1.0, errors=100)
    with pytest.raises(GaveUp, match="not attempted: this command's retry budget"):
        p.call("release lock", later)
    assert not later_calls and fake.now == given_up_at + 1.0


def test_a_put_back_that_succeeds_keeps_the_circuit_closed():
    p, fake = policy(budget=1.0)
    call, _ = hanging(fake, 1.0, errors=100)
    with pytest.raises(GaveUp):
        p.call("write", call)
    ok, _ = hanging(fake, 1.0, errors=0)
    assert p.call("put back", ok) == "ok" and p.call("put back", ok) == "ok" and p.broken is None


def test_a_long_pass_is_charged_only_for_its_failures():
    p, fake = policy(budget=2.0)

    class SlowPass(FlakyPass):
        def iter_vectors(self, batch_size=1000):
            for chunk, vecs in super().iter_vectors(batch_size):
                fake.now += 10.0  # a healthy pass that takes long: not the database failing
                yield chunk, vecs

    inner = SlowPass(range(100), fail_after=40)
    seen = [i for ids, _ in RetryingStore(inner, p).iter_vectors(batch_size=15) for i in ids]  # type: ignore[arg-type]
    assert seen == list(range(100)) and p.spent < 2.0


def test_renew_gives_a_reused_store_a_fresh_budget():
    p, fake = policy(budget=1.0)
    for _ in range(2):
        with pytest.raises(GaveUp):
            p.call("write", hanging(fake, 1.0, errors=100)[0])
    assert p.broken is not None
    p.renew()
    assert p.call("read", hanging(fake, 0.5, errors=1)[0]) == "ok" and 0.5 <= p.spent <= 0.5 + p.first_delay


def test_a_failed_attempt_is_charged_at_most_one_call_timeout():
    """A method that makes several calls (answered) and then one that times out: the answered
    calls are work, not waiting, so the failure costs the budget one call timeout at most."""
    fake = FakeClock()
    p = RetryPolicy(10.0, sleep=fake.sleep, clock=fake.clock, call_timeout=2.0)
    call, calls = hanging(fake, 30.0, errors=1)  # 28 s of answered calls, then a 2 s timeout
    assert p.call("read query log", call) == "ok" and len(calls) == 2
    assert 2.0 <= p.spent <= 2.0 + p.first_delay
