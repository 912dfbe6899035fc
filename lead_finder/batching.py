"""Coalesce single-key lookups into bulk requests, once per key.

Excel fills a formula down 2,000 rows and calls it 2,000 times from a pool of threads; a notebook
awaits hundreds of lookups at once. Each caller asks for one key and gets a future. The
`Coalescer` gathers the waiting keys and hands them to a `flush` function in batches of at most
`max_batch` distinct keys (the API's bulk limit), and it never sends a key that is already waiting
or in flight: the second caller simply gets the first caller's future (single-flight).

When a batch goes out is decided by `_due`, a pure function:

- at once when `max_batch` keys are waiting;
- when no new key arrived for `quiet` seconds (the burst is over);
- when the oldest waiting key has waited `max_delay` seconds (a steady trickle cannot starve).

One daemon dispatcher thread makes that decision, sleeping on a condition variable until the next
deadline; a small pool of daemon worker threads runs `flush`. Single-flight across processes is the
flush function's business (it consults the ledger); this module only deduplicates within a process.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, TypeVar

from .errors import LeadFinderError

__all__ = ["Coalescer", "MissingResultError"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MissingResultError(LeadFinderError):
    """A bulk lookup came back without an answer for this key.

    The other keys of the same batch are unaffected; submitting the key again starts a new lookup.
    """

    def __init__(self, key: object) -> None:
        self.key = key
        super().__init__(
            f"The bulk lookup returned no result for {key!r}; submit it again to retry it."
        )


def _deadline(first_at: float, last_at: float, quiet: float, max_delay: float) -> float:
    """The moment a partial batch becomes due: the quiet window after the newest key ends, or
    the oldest key reaches `max_delay`, whichever comes first."""
    return min(last_at + quiet, first_at + max_delay)


def _due(
    now: float,
    first_at: float,
    last_at: float,
    n: int,
    quiet: float,
    max_delay: float,
    max_batch: int,
) -> bool:
    """Whether `n` waiting keys should be flushed now.

    `first_at` is when the oldest waiting key arrived, `last_at` when the newest did.
    """
    if n <= 0:
        return False
    if n >= max_batch:
        return True
    return now >= _deadline(first_at, last_at, quiet, max_delay)


class Coalescer(Generic[K, V]):
    """Turn many single-key requests from threads and coroutines into few bulk requests.

    `flush(keys)` is called on a background worker thread with at most `max_batch` distinct keys,
    none of which is in any other running flush, and returns a mapping with a value per key. Keys
    it leaves out complete with `MissingResultError`; if it raises, every future of that batch
    raises the same exception and other batches are unaffected.

    A batch is flushed when `max_batch` keys are waiting, when no new key arrived for `quiet`
    seconds, or when the oldest waiting key has waited `max_delay` seconds; at most
    `max_concurrent_flushes` flushes run at once (further keys keep gathering meanwhile).

    A key that is waiting or in flight is joined: `submit` returns the same future. Once that future
    is done, a later `submit` of the key starts a new lookup (the caller's cache normally answers
    first). Use one instance per process and backend, and `close()` it (or use it as a context
    manager) to flush what is still waiting.
    """

    def __init__(
        self,
        flush: Callable[[Sequence[K]], Mapping[K, V]],
        *,
        max_batch: int = 100,
        quiet: float = 0.1,
        max_delay: float = 1.0,
        max_concurrent_flushes: int = 4,
        name: str = "lead-finder-batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if quiet < 0 or max_delay < 0:
            raise ValueError(
                f"quiet and max_delay must not be negative, not {quiet} and {max_delay}"
            )
        if max_concurrent_flushes < 1:
            raise ValueError(
                f"max_concurrent_flushes must be at least 1, not {max_concurrent_flushes}"
            )
        self._flush = flush
        self._max_batch = max_batch
        self._quiet = quiet
        self._max_delay = max_delay
        self._max_concurrent = max_concurrent_flushes
        self._name = name
        self._reset_state()
        _LIVE.add(self)

    def _reset_state(self) -> None:
        # Everything below is guarded by self._cond.
        self._cond = threading.Condition()
        # key -> (shared future, arrival time); ordered oldest first.
        self._waiting: OrderedDict[K, tuple[Future[V], float]] = OrderedDict()
        self._in_flight: dict[K, Future[V]] = {}
        self._last_at = 0.0  # arrival time of the newest waiting key
        self._force_remaining = 0  # keys that flush_now() asked to send without waiting
        self._running = 0  # batches handed to workers and not yet completed
        self._closed = False
        self._dispatcher: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        # Batches handed from the dispatcher to the workers: (key, shared future), oldest first;
        # None tells a worker to stop.
        self._batches: queue.SimpleQueue[list[tuple[K, Future[V]]] | None] = queue.SimpleQueue()

    def _after_fork_in_child(self) -> None:
        # The child has none of the parent's threads, and the lock may have been copied while
        # held. Futures of the parent's lookups would never complete here, so forget them: the
        # child starts its own lookups (its cache and ledger still prevent paying twice).
        closed = self._closed
        self._reset_state()
        self._closed = closed

    # ----------------------------------------------------------------------------- submitting

    def submit(self, key: K) -> Future[V]:
        """Ask for `key`; the future completes with its value when its batch has been flushed.

        A key that is already waiting or in flight returns the same future. The future cannot be
        cancelled (other callers share it); stop waiting on it instead.
        """
        with self._cond:
            future, notify = self._enqueue_locked(key, time.monotonic())
            if notify:
                self._cond.notify_all()
        return future

    def submit_many(self, keys: Iterable[K]) -> list[Future[V]]:
        """Ask for several keys at once; one future per key, in the same order.

        The keys are enqueued together, so 250 new keys go out as batches of 100 and 100 at once
        and the remaining 50 after the quiet window. Repeated keys share one future.
        """
        keys = list(keys)
        futures: list[Future[V]] = []
        with self._cond:
            now = time.monotonic()
            notify = False
            for key in keys:
                future, wake = self._enqueue_locked(key, now)
                futures.append(future)
                notify = notify or wake
            if notify:
                self._cond.notify_all()
        return futures

    async def asubmit(self, key: K) -> V:
        """Await the value for `key` from a coroutine; batching is shared with threaded callers.

        Cancelling the awaiting task stops only this wait: the lookup continues for other callers.
        """
        # The shared future is already RUNNING (see _enqueue_locked), so when wrap_future
        # propagates a cancellation to it, cancel() is refused and other waiters are unaffected.
        return await asyncio.wrap_future(self.submit(key))

    def _enqueue_locked(self, key: K, now: float) -> tuple[Future[V], bool]:
        """Join or create the future for `key`; also say whether the dispatcher must wake up."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed; no new lookups can be submitted")
        waiting = self._waiting.get(key)
        if waiting is not None:
            return waiting[0], False
        flying = self._in_flight.get(key)
        if flying is not None and not flying.done():
            return flying, False
        if self._dispatcher is None:
            # Started before the key is recorded: if the thread cannot start, nothing is left
            # waiting for a dispatcher that does not exist.
            dispatcher = threading.Thread(
                target=self._dispatch_loop, name=f"{self._name}-dispatcher", daemon=True
            )
            dispatcher.start()
            self._dispatcher = dispatcher
        future: Future[V] = Future()
        # A shared future must not be cancellable by one of its callers: a RUNNING future
        # refuses cancel(), and only this module ever sets its result.
        future.set_running_or_notify_cancel()
        self._waiting[key] = (future, now)
        self._last_at = now
        # The dispatcher sleeps without a deadline while nothing waits, and must act at once on
        # a full batch. Otherwise its current deadline can only be too early (a new key moves the
        # quiet window later), and it re-checks when it wakes.
        n = len(self._waiting)
        return future, n == 1 or n >= self._max_batch

    # ----------------------------------------------------------------------------- inspecting

    def pending_count(self) -> int:
        """How many distinct keys are waiting for a batch."""
        with self._cond:
            return len(self._waiting)

    def in_flight_count(self) -> int:
        """How many distinct keys are in a flush that has not completed yet."""
        with self._cond:
            return sum(1 for future in self._in_flight.values() if not future.done())

    # ----------------------------------------------------------------------------- flushing

    def flush_now(self) -> None:
        """Send every key waiting now without waiting for the quiet window.

        It does not wait for the results; batches still respect `max_batch` and
        `max_concurrent_flushes`.
        """
        with self._cond:
            self._force_remaining = len(self._waiting)
            self._cond.notify_all()

    def close(self, wait: bool = True) -> None:
        """Stop accepting keys, flush every waiting key, and stop the threads when done.

        With `wait=True` it returns after every flush has completed; with `wait=False` the
        draining happens in the background (daemon threads: it is cut short if the process exits).
        Later calls to `submit` raise RuntimeError. Calling it again does nothing more. Called
        from inside `flush`, it does not wait (that flush would be waiting for itself).
        """
        with self._cond:
            self._closed = True
            dispatcher = self._dispatcher
            self._cond.notify_all()
        if not wait or dispatcher is None or threading.current_thread() in self._workers:
            return
        dispatcher.join()
        # The dispatcher has sent every batch and one stop sentinel per worker; the workers list
        # no longer changes.
        for worker in list(self._workers):
            worker.join()

    def __enter__(self) -> Coalescer[K, V]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        with self._cond:
            return (
                f"<Coalescer {self._name!r} waiting={len(self._waiting)} "
                f"in_flight={len(self._in_flight)} closed={self._closed}>"
            )

    # ----------------------------------------------------------------------------- threads

    def _ready_locked(self, now: float) -> bool:
        if not self._waiting or self._running >= self._max_concurrent:
            return False
        if self._closed or self._force_remaining > 0:
            return True
        first_at = next(iter(self._waiting.values()))[1]
        return _due(
            now,
            first_at,
            self._last_at,
            len(self._waiting),
            self._quiet,
            self._max_delay,
            self._max_batch,
        )

    def _timeout_locked(self, now: float) -> float | None:
        """How long the dispatcher may sleep before re-checking; None means until notified."""
        if not self._waiting or self._running >= self._max_concurrent:
            # A new key or a finished flush will notify.
            return None
        first_at = next(iter(self._waiting.values()))[1]
        return max(0.0, _deadline(first_at, self._last_at, self._quiet, self._max_delay) - now)

    def _take_batch_locked(self) -> list[tuple[K, Future[V]]]:
        batch: list[tuple[K, Future[V]]] = []
        while self._waiting and len(batch) < self._max_batch:
            key, (future, _arrived) = self._waiting.popitem(last=False)
            self._in_flight[key] = future
            batch.append((key, future))
        self._force_remaining = max(0, self._force_remaining - len(batch))
        self._running += 1
        # Every running batch needs a worker of its own, or it would queue behind another flush.
        if len(self._workers) < self._running:
            worker = threading.Thread(
                target=self._work_loop,
                name=f"{self._name}-flush-{len(self._workers) + 1}",
                daemon=True,
            )
            worker.start()
            self._workers.append(worker)
        return batch

    def _dispatch_loop(self) -> None:
        cond = self._cond
        while True:
            with cond:
                now = time.monotonic()
                while not self._ready_locked(now):
                    if self._closed and not self._waiting:
                        for _ in self._workers:
                            self._batches.put(None)
                        return
                    cond.wait(self._timeout_locked(now))
                    now = time.monotonic()
                batch = self._take_batch_locked()
                self._batches.put(batch)

    def _work_loop(self) -> None:
        batches = self._batches
        while True:
            batch = batches.get()
            if batch is None:
                return
            self._run_flush(batch)

    def _run_flush(self, batch: list[tuple[K, Future[V]]]) -> None:
        keys = [key for key, _ in batch]
        try:
            try:
                results = self._flush(keys)
                for key, future in batch:
                    try:
                        value = results[key]
                    except KeyError:
                        future.set_exception(MissingResultError(key))
                    else:
                        future.set_result(value)
            except BaseException as exc:  # the callers waiting on this batch must see it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
        finally:
            # Forget the keys only after their futures are done: until then a new submit must
            # join this lookup rather than pay for another.
            cond = self._cond
            with cond:
                for key, future in batch:
                    if self._in_flight.get(key) is future:
                        del self._in_flight[key]
                self._running = max(0, self._running - 1)
                cond.notify_all()


# Every live coalescer, so that a forked child can reset them (its threads do not survive a fork).
_LIVE: weakref.WeakSet[Coalescer[Any, Any]] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for coalescer in list(_LIVE):
        coalescer._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
