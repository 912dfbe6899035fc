"""The coalescer: batching rule, single-flight, threads, asyncio, errors, shutdown.

Behaviour around time is asserted with wide margins (the machine is shared); the exact rule is
tested as a pure function.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import pytest

from lead_finder.batching import Coalescer, MissingResultError, _deadline, _due
from lead_finder.errors import LeadFinderError

WAIT = 10.0  # upper bound for any wait, so a bug fails a test instead of hanging the suite


def value(key: str) -> str:
    return f"v:{key}"


class Backend:
    """A bulk lookup that records every call and can hold calls until released."""

    def __init__(
        self, *, hold: bool = False, fail_if: str | None = None, omit: Sequence[str] = ()
    ) -> None:
        self.lock = threading.Lock()
        self.calls: list[list[str]] = []
        self.times: list[float] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.fail_if = fail_if
        self.omit = set(omit)
        self.running = 0
        self.most_running = 0

    def __call__(self, keys: Sequence[str]) -> Mapping[str, str]:
        with self.lock:
            self.calls.append(list(keys))
            self.times.append(time.monotonic())
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if not self.release.wait(WAIT):
                raise TimeoutError("test backend was never released")
            if self.fail_if is not None and self.fail_if in keys:
                raise ValueError(f"backend rejects {self.fail_if}")
            answer = {key: value(key) for key in keys if key not in self.omit}
            answer["not-asked-for"] = "ignored"
            return answer
        finally:
            with self.lock:
                self.running -= 1

    def flushed_keys(self) -> list[str]:
        with self.lock:
            return [key for call in self.calls for key in call]


Factory = Callable[..., Coalescer[str, str]]


@pytest.fixture
def make() -> Iterator[Factory]:
    made: list[tuple[Coalescer[str, str], Backend]] = []

    def factory(backend: Backend, **options: Any) -> Coalescer[str, str]:
        options.setdefault("name", "test-batcher")
        coalescer: Coalescer[str, str] = Coalescer(backend, **options)
        made.append((coalescer, backend))
        return coalescer

    yield factory
    for coalescer, backend in made:
        backend.release.set()
        close_within(coalescer, WAIT)


def close_within(coalescer: Coalescer[str, str], seconds: float) -> None:
    """close(wait=True), failing (not hanging) if it does not return in time."""
    closer = threading.Thread(target=coalescer.close, daemon=True)
    closer.start()
    closer.join(seconds)
    assert not closer.is_alive(), "close() did not return"


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


async def await_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


# ------------------------------------------------------------------------------- the timing rule


@pytest.mark.parametrize(
    ("now", "first_at", "last_at", "n", "quiet", "max_delay", "max_batch", "expected"),
    [
        pytest.param(5.0, 0.0, 0.0, 0, 0.1, 1.0, 100, False, id="nothing waiting"),
        pytest.param(0.0, 0.0, 0.0, 100, 0.1, 1.0, 100, True, id="full batch at once"),
        pytest.param(0.0, 0.0, 0.0, 250, 0.1, 1.0, 100, True, id="more than a batch"),
        pytest.param(0.0, 0.0, 0.0, 1, 0.1, 1.0, 1, True, id="batch of one"),
        pytest.param(0.05, 0.0, 0.0, 99, 0.1, 1.0, 100, False, id="inside quiet window"),
        pytest.param(0.1, 0.0, 0.0, 99, 0.1, 1.0, 100, True, id="quiet window just over"),
        pytest.param(0.3, 0.0, 0.25, 5, 0.1, 1.0, 100, False, id="new key restarts quiet"),
        pytest.param(0.36, 0.0, 0.25, 5, 0.1, 1.0, 100, True, id="quiet after last key"),
        pytest.param(0.99, 0.0, 0.95, 40, 0.1, 1.0, 100, False, id="trickle below max_delay"),
        pytest.param(1.0, 0.0, 0.95, 40, 0.1, 1.0, 100, True, id="trickle hits max_delay"),
        pytest.param(7.0, 6.0, 6.95, 3, 0.1, 1.0, 100, True, id="max_delay from oldest"),
        pytest.param(0.0, 0.0, 0.0, 1, 0.0, 1.0, 100, True, id="no quiet window"),
        pytest.param(0.0, 0.0, 0.0, 1, 0.5, 0.0, 100, True, id="no delay allowed"),
    ],
)
def test_due(
    now: float,
    first_at: float,
    last_at: float,
    n: int,
    quiet: float,
    max_delay: float,
    max_batch: int,
    expected: bool,
) -> None:
    assert _due(now, first_at, last_at, n, quiet, max_delay, max_batch) is expected


@pytest.mark.parametrize(
    ("first_at", "last_at", "quiet", "max_delay", "expected"),
    [
        (0.0, 0.0, 0.1, 1.0, 0.1),  # a lone key: the quiet window
        (0.0, 0.5, 0.1, 1.0, 0.6),  # the window follows the newest key
        (0.0, 0.95, 0.1, 1.0, 1.0),  # ... but never past the oldest key's max_delay
        (2.0, 2.0, 0.3, 0.2, 2.2),  # max_delay shorter than quiet wins
    ],
)
def test_deadline(
    first_at: float, last_at: float, quiet: float, max_delay: float, expected: float
) -> None:
    assert _deadline(first_at, last_at, quiet, max_delay) == pytest.approx(expected)


# ------------------------------------------------------------------------------- threads


def test_recalculation_from_excel_worker_pool_sends_full_batches(make: Factory) -> None:
    # Excel's recalculation: 1,000 calls from min(32, cpus+4) threads, 800 distinct leads. The
    # backend holds each request until every call has been made, like a slow API, so repeated
    # keys meet their first request still in flight. A long quiet window makes the expected
    # count exact: only full batches may go out.
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=30.0, max_delay=60.0)
    unique = [f"lead-{i}" for i in range(800)]
    rng = random.Random(7)
    calls = unique + rng.choices(unique, k=200)
    rng.shuffle(calls)
    with ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4)) as pool:
        futures = list(pool.map(coalescer.submit, calls))
    backend.release.set()
    done, not_done = wait(futures, timeout=WAIT)
    assert not not_done
    assert [f.result() for f in futures] == [value(key) for key in calls]
    assert len(backend.calls) == math.ceil(len(unique) / 100) == 8
    assert all(len(call) <= 100 for call in backend.calls)
    flushed = backend.flushed_keys()
    assert len(flushed) == len(set(flushed)) == 800  # no key in two flushes
    assert set(flushed) == set(unique)
    assert backend.most_running <= 4


def test_same_key_from_many_threads_is_flushed_once(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=0.05)
    barrier = threading.Barrier(50)

    def call(_: int) -> Future[str]:
        barrier.wait(WAIT)
        return coalescer.submit("jane@acme")

    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = list(pool.map(call, range(50)))
    backend.release.set()
    assert all(f.result(WAIT) == value("jane@acme") for f in futures)
    assert all(f is futures[0] for f in futures)
    assert backend.calls == [["jane@acme"]]


def test_key_in_flight_is_joined_and_done_key_is_looked_up_again(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=0.0)
    first = coalescer.submit("k")
    wait_until(lambda: coalescer.in_flight_count() == 1)
    assert coalescer.submit("k") is first
    assert coalescer.pending_count() == 0
    backend.release.set()
    assert first.result(WAIT) == value("k")
    # Done means done: the caller's cache answers repeats; a new submit is a new lookup.
    second = coalescer.submit("k")
    assert second is not first
    assert second.result(WAIT) == value("k")
    assert backend.calls == [["k"], ["k"]]


def test_key_is_joined_until_its_future_is_done(make: Factory) -> None:
    # Done callbacks run on the flush thread while the batch is being completed: exactly the
    # moment a careless implementation has already forgotten the batch, or not yet.
    backend = Backend()
    coalescer = make(backend, quiet=30.0, max_delay=60.0)
    a, b = coalescer.submit_many(["a", "b"])
    seen: dict[str, Future[str]] = {}

    def on_a_done(_: Future[str]) -> None:
        seen["a"] = coalescer.submit("a")  # done: a new lookup
        seen["b"] = coalescer.submit("b")  # same batch, not done yet: joined

    a.add_done_callback(on_a_done)
    coalescer.flush_now()
    assert b.result(WAIT) == value("b")
    assert seen["b"] is b
    assert seen["a"] is not a
    assert coalescer.pending_count() == 1


def test_counts_and_flush_now(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=30.0, max_delay=60.0)
    futures = coalescer.submit_many(["a", "b", "c"])
    assert (coalescer.pending_count(), coalescer.in_flight_count()) == (3, 0)
    coalescer.flush_now()
    wait_until(lambda: coalescer.in_flight_count() == 3)
    assert coalescer.pending_count() == 0
    late = coalescer.submit("d")  # arrived after flush_now: waits for its own window
    assert coalescer.pending_count() == 1
    backend.release.set()
    assert [f.result(WAIT) for f in futures] == ["v:a", "v:b", "v:c"]
    wait_until(lambda: coalescer.in_flight_count() == 0)
    assert backend.calls == [["a", "b", "c"]]
    assert not late.done()


def test_shared_future_cannot_be_cancelled_by_one_caller(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=0.0)
    future = coalescer.submit("k")
    assert future.cancel() is False
    backend.release.set()
    assert coalescer.submit("k").result(WAIT) == value("k")


def test_submit_many_sends_full_batches_without_waiting(make: Factory) -> None:
    backend = Backend()
    quiet = 1.5
    coalescer = make(backend, quiet=quiet, max_delay=30.0)
    keys = [f"k{i}" for i in range(250)]
    started = time.monotonic()
    futures = coalescer.submit_many([*keys, "k0"])
    assert futures[-1] is futures[0]
    # The first two batches do not wait for the quiet window; the last 50 keys do.
    _, not_done = wait(futures[:200], timeout=quiet * 0.7)
    assert not not_done
    assert not futures[249].done()
    assert futures[249].result(WAIT) == value("k249")
    assert [len(call) for call in backend.calls] == [100, 100, 50]
    assert backend.flushed_keys() == keys
    assert backend.times[2] - started >= quiet * 0.9


def test_at_most_max_concurrent_flushes_and_keys_keep_gathering(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=30.0, max_delay=60.0, max_concurrent_flushes=2)
    futures = coalescer.submit_many(f"k{i}" for i in range(500))
    wait_until(lambda: len(backend.calls) == 2)
    time.sleep(0.1)  # give a wrong implementation time to start a third flush
    assert len(backend.calls) == 2
    assert coalescer.pending_count() == 300
    backend.release.set()
    assert [f.result(WAIT) for f in futures] == [value(f"k{i}") for i in range(500)]
    assert [len(call) for call in backend.calls] == [100] * 5
    assert backend.most_running == 2


# ------------------------------------------------------------------------------- timing behaviour


def test_quiet_window_waits_for_the_burst_to_end(make: Factory) -> None:
    backend = Backend()
    quiet = 0.5
    coalescer = make(backend, quiet=quiet, max_delay=30.0)
    futures = [coalescer.submit("q0")]
    time.sleep(0.1)
    futures.append(coalescer.submit("q1"))
    time.sleep(0.1)
    futures.append(coalescer.submit("q2"))
    last = time.monotonic()
    assert [f.result(WAIT) for f in futures] == ["v:q0", "v:q1", "v:q2"]
    assert backend.calls == [["q0", "q1", "q2"]]
    assert backend.times[0] - last >= quiet * 0.9


def test_steady_trickle_is_flushed_by_max_delay(make: Factory) -> None:
    # One key every 20 ms never leaves a 250 ms quiet gap, so only max_delay gets keys out while
    # the trickle lasts.
    backend = Backend()
    max_delay = 0.8
    coalescer = make(backend, quiet=0.25, max_delay=max_delay)
    submitted: dict[str, float] = {}
    futures = []
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        key = f"t{len(submitted)}"
        submitted[key] = time.monotonic()
        futures.append(coalescer.submit(key))
        time.sleep(0.02)
    ended = time.monotonic()
    assert all(f.result(WAIT) == value(key) for f, key in zip(futures, submitted, strict=True))
    during = [t for t in backend.times if t < ended]
    assert len(during) >= 2, "the trickle starved: nothing was sent while it lasted"
    assert len(backend.calls) <= 8, "keys were sent one by one instead of in batches"
    for keys, flushed_at in zip(backend.calls, backend.times, strict=True):
        oldest = min(submitted[key] for key in keys)
        assert flushed_at - oldest <= max_delay + 1.0
    assert sorted(backend.flushed_keys()) == sorted(submitted)


# ------------------------------------------------------------------------------- errors


def test_exception_fails_only_its_batch(make: Factory) -> None:
    backend = Backend(fail_if="k5")
    coalescer = make(backend, quiet=0.05)
    futures = coalescer.submit_many(f"k{i}" for i in range(150))
    for future in futures[:100]:
        with pytest.raises(ValueError, match="backend rejects k5"):
            future.result(WAIT)
    assert [f.result(WAIT) for f in futures[100:]] == [value(f"k{i}") for i in range(100, 150)]
    # The coalescer keeps working, and a failed key can be tried again.
    backend.fail_if = None
    assert coalescer.submit("k5").result(WAIT) == value("k5")
    assert len(backend.calls) == 3


def test_missing_key_raises_missing_result_error(make: Factory) -> None:
    backend = Backend(omit=["lost"])
    coalescer = make(backend, quiet=0.0)
    lost, kept = coalescer.submit_many(["lost", "kept"])
    with pytest.raises(MissingResultError) as info:
        lost.result(WAIT)
    assert isinstance(info.value, LeadFinderError)
    assert info.value.key == "lost"
    assert kept.result(WAIT) == value("kept")


def test_invalid_settings_are_refused() -> None:
    backend = Backend()
    for options in (
        {"max_batch": 0},
        {"quiet": -0.1},
        {"max_delay": -1.0},
        {"max_concurrent_flushes": 0},
    ):
        with pytest.raises(ValueError):
            Coalescer(backend, **options)


# ------------------------------------------------------------------------------- asyncio


async def test_asubmit_from_one_loop_batches(make: Factory) -> None:
    backend = Backend()
    coalescer = make(backend, quiet=0.1)
    keys = [f"a{i}" for i in range(200)]
    results = await asyncio.wait_for(
        asyncio.gather(*(coalescer.asubmit(key) for key in keys)), WAIT
    )
    assert results == [value(key) for key in keys]
    assert [len(call) for call in backend.calls] == [100, 100]


@pytest.mark.parametrize("phase", ["waiting", "in flight"])
async def test_cancelling_one_awaiter_leaves_the_others(make: Factory, phase: str) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=30.0, max_delay=60.0)
    cancelled = asyncio.create_task(coalescer.asubmit("k"))
    other = asyncio.create_task(coalescer.asubmit("k"))
    await await_until(lambda: coalescer.pending_count() == 1)
    if phase == "in flight":
        coalescer.flush_now()
        await await_until(lambda: coalescer.in_flight_count() == 1)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    shared = coalescer.submit("k")
    assert not shared.cancelled()
    coalescer.flush_now()
    backend.release.set()
    assert await asyncio.wait_for(other, WAIT) == value("k")
    assert shared.result(WAIT) == value("k")
    assert backend.calls == [["k"]]


# ------------------------------------------------------------------------------- shutdown


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(name)]


def test_close_drains_waiting_keys_and_stops(make: Factory) -> None:
    backend = Backend()
    coalescer = make(backend, quiet=30.0, max_delay=60.0, name="close-test")
    futures = coalescer.submit_many(f"c{i}" for i in range(120))
    assert _threads("close-test")
    close_within(coalescer, 5.0)  # well inside the 30 s quiet window
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [value(f"c{i}") for i in range(120)]
    assert [len(call) for call in backend.calls] == [100, 20]
    assert not _threads("close-test")
    with pytest.raises(RuntimeError):
        coalescer.submit("late")
    with pytest.raises(RuntimeError):
        coalescer.submit_many(["late"])
    coalescer.close()  # again: nothing left to do


def test_close_waits_for_flushes_in_flight(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=0.0)
    future = coalescer.submit("k")
    wait_until(lambda: coalescer.in_flight_count() == 1)
    threading.Timer(0.2, backend.release.set).start()
    close_within(coalescer, WAIT)
    assert future.done()
    assert future.result() == value("k")


def test_close_without_wait_drains_in_background(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=30.0, max_delay=60.0)
    future = coalescer.submit("k")
    coalescer.close(wait=False)
    assert not future.done()
    with pytest.raises(RuntimeError):
        coalescer.submit("late")
    backend.release.set()
    assert future.result(WAIT) == value("k")


def test_close_from_inside_flush_does_not_deadlock() -> None:
    coalescer: Coalescer[str, str]

    def flush(keys: Sequence[str]) -> Mapping[str, str]:
        coalescer.close()
        return {key: value(key) for key in keys}

    coalescer = Coalescer(flush, quiet=0.0, max_concurrent_flushes=1, name="inner-close")
    future = coalescer.submit("k")
    assert future.result(WAIT) == value("k")
    close_within(coalescer, WAIT)
    assert not _threads("inner-close")


def test_context_manager_closes(make: Factory) -> None:
    backend = Backend()
    with Coalescer(backend, quiet=30.0, max_delay=60.0, name="with-test") as coalescer:
        futures = coalescer.submit_many(["x", "y"])
    assert [f.result(0) for f in futures] == ["v:x", "v:y"]
    assert not _threads("with-test")


async def test_asubmit_after_close_raises() -> None:
    coalescer: Coalescer[str, str] = Coalescer(Backend())
    coalescer.close()
    with pytest.raises(RuntimeError):
        await coalescer.asubmit("k")


# ------------------------------------------------------------------------------- fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+ warns on fork with threads
def test_forked_child_does_not_wait_on_the_parents_lookups(make: Factory) -> None:
    backend = Backend(hold=True)
    coalescer = make(backend, quiet=0.0)
    parents = coalescer.submit("k")
    wait_until(lambda: coalescer.in_flight_count() == 1)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()

    def child() -> None:
        backend.release.set()  # the child's copy of the backend answers at once
        try:
            answers.put(coalescer.submit("k").result(timeout=5))
        except BaseException as exc:
            answers.put(repr(exc))

    process = context.Process(target=child)
    process.start()
    try:
        assert answers.get(timeout=WAIT) == value("k")
    finally:
        process.join(WAIT)
    assert process.exitcode == 0
    assert not parents.done()
    backend.release.set()
    assert parents.result(WAIT) == value("k")
