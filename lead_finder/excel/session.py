"""The non-blocking layer between spreadsheet cells and `LeadFinder`.

Excel calls a UDF once per cell, from several threads, and calls all of them again on every
recalculation. An `ExcelSession` answers each call within milliseconds:

- with the answer, when the lead was answered earlier in this session (kept in memory: a
  recalculation touches no lock, no file and no network) or is in the cache file;
- with a PENDING result once the lead has joined `LeadFinder`'s coalescer, which sends the leads
  of a whole burst of calls as bulk requests of at most 100;
- with the remembered failure, when the lead's last lookup failed (budget reached, API down, ...)
  less than `retry_after` seconds ago, so a recalculation loop does not resubmit it every time.
  `retry_failed()` forgets the failures at once.

A cell's call only validates its input (so bad input is answered at once) and reads memory.
The rest of a new lead's way happens on one intake thread: its cache key (name parsing costs
~1 ms a lead), the cache check and the hand-over to the coalescer. Measured with xlwings' six
worker threads, doing that on the cell threads made single calls wait 50-190 ms behind one
another and behind the bulk lookups' cache writes. A cell waits for the intake at most
`cache_wait` seconds (so a cached lead is answered at once when nothing else is queued) and
otherwise shows PENDING.

When a lead's lookup lands, every cell that got PENDING for it is handed to the `recalculate`
callback (one call per burst of results), which makes Excel compute exactly those cells again.
On Windows the callback re-enters the cells' formulas through xlwings
(`lead_finder.excel.windows`); tests pass a recorder.

Async front-ends (the Office.js custom functions) use `alookup`, which awaits the same shared
lookups instead of returning a placeholder.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import InvalidLeadError, LeadFinderError, user_message
from ..finder import LeadFinder, LeadRequest
from ..leads import LEAD_FIELDS, Lead
from ..models import Mode, Result, Source, Status
from .cells import PENDING

__all__ = [
    "EXCEL_QUIET",
    "ExcelSession",
    "Locate",
    "Recalculate",
    "default_session",
    "set_default_session",
]

log = logging.getLogger("lead_finder.excel")

#: Called with the cells whose lookups have landed, so that the spreadsheet recalculates them.
Recalculate = Callable[[frozenset[Hashable]], None]
#: Returns the identity of the calling cell (or None); called only when the cell has to wait.
Locate = Callable[[], Hashable | None]

#: How long `LeadFinder` waits for more cells before sending a partial batch, in Excel: long
#: enough that a fill-down interrupted by a garbage collection or a busy CPU (stalls of 0.1-0.3 s
#: measured on a loaded two-core machine) still goes out in full batches of 100. The cells show
#: PENDING meanwhile anyway, and a bulk job takes seconds.
EXCEL_QUIET = 0.5
#: The interpreter's thread switch interval in a process that serves the spreadsheet.
SWITCH_INTERVAL = 0.001

#: Bound on the in-memory answers and validated leads (each is cleared when full).
_MEMO_SIZE = 200_000
#: A new lead's cell waits for its cache check only when at most this many are queued for it.
_WAIT_BACKLOG = 8


@dataclass(frozen=True)
class _Valid:
    """Cell values that make a valid lead, before its cache key is known."""

    lead: Lead
    mode: Mode


class _Started(NamedTuple):
    """A started lookup: what its cells wait for (a cache key, or the cell values before the
    key is known), the lead, the lookup's future, and the intake's event when this call queued
    it."""

    wait_id: Hashable
    valid: _Valid
    future: Future[Result]
    checked: threading.Event | None


@dataclass
class _Lookup:
    """A lead's lookup as this session knows it: its future, and when it failed."""

    future: Future[Result]
    failed_at: float | None = None


@dataclass
class _Intake:
    """Work for the intake thread: key and submit a valid lead (`memo`, `valid`) or submit a
    keyed one (`prepared`). `checked` is set when that is done."""

    future: Future[Result]
    checked: threading.Event
    memo: tuple[Any, ...] | None = None
    valid: _Valid | None = None
    prepared: LeadRequest | None = None


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _memo_key(fields: Mapping[str, object], mode: object) -> tuple[Any, ...] | None:
    # The type is part of the key: True == 1 == 1.0 would otherwise share a (different) reason.
    parts: list[Any] = [(type(mode).__name__, mode)]
    parts += [(type(fields.get(f)).__name__, fields.get(f)) for f in LEAD_FIELDS]
    key = tuple(parts)
    try:
        hash(key)
    except TypeError:  # a range passed where one cell was expected: not worth memoising
        return None
    return key


def _failed(fields: Mapping[str, object], mode: object, exc: BaseException) -> Result:
    """The result a cell shows when its lookup failed unexpectedly (logged by type only)."""
    log.warning("Excel lookup failed: %s", type(exc).__name__)
    return Result.failed(_api_fields(fields), user_message(exc), mode=Mode.parse_or_default(mode))


def _api_fields(fields: Mapping[str, object]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k in LEAD_FIELDS and v is not None}


def _validate(fields: Mapping[str, object], mode: object) -> _Valid | str:
    """The lead in a cell's values, or why there is none (cheap: no cache key yet)."""
    try:
        parsed_mode = Mode.parse(mode)
        lead = Lead.parse(**{k: v for k, v in fields.items() if v is not None})
    except InvalidLeadError as exc:
        return exc.reason
    return _Valid(lead, parsed_mode)


def _result_of(future: Future[Result], lead: Lead, mode: Mode) -> Result:
    try:
        return future.result()
    except Exception as exc:  # a failed batch: this lead's cell says why
        return Result.failed(lead.to_api(), user_message(exc), mode=mode)


def _forward(inner: Future[Result], outer: Future[Result], lead: Lead, mode: Mode) -> None:
    if not outer.done():
        outer.set_result(_result_of(inner, lead, mode))


class ExcelSession:
    """Answer spreadsheet cells at once; look leads up in the background; recalculate the cells.

    `finder` is a `LeadFinder`, or a function that builds one when the first cell needs it (the
    session then owns it: `retry_failed` rebuilds it and `close` closes it). `recalculate` is
    called from a background thread with the cells whose lookups have landed; `settle` is how
    long it waits for the rest of a batch's results before calling. `retry_after` is how many
    seconds a failed lookup is answered from memory before a recalculation may try it again.
    `cache_wait` is how long a cell waits for the cache check of a lead it is the first to ask
    for.
    """

    def __init__(
        self,
        finder: LeadFinder | Callable[[], LeadFinder],
        *,
        recalculate: Recalculate | None = None,
        retry_after: float = 120.0,
        cache_wait: float = 0.005,
        settle: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(finder, LeadFinder):
            self._finder: LeadFinder | None = finder
            self._factory: Callable[[], LeadFinder] | None = None
        else:
            self._finder = None
            self._factory = finder
        self._recalculate = recalculate
        self.retry_after = retry_after
        self.cache_wait = cache_wait
        self._settle = settle
        self._clock = clock
        self._lock = threading.Lock()
        self._finder_lock = threading.Lock()
        # Read without the lock (a dict read is atomic), written under it. Cell values ->
        # a reason, a valid lead, or (once the intake has keyed it) the keyed lead.
        self._memo: dict[tuple[Any, ...], LeadRequest | _Valid | str] = {}
        self._answers: dict[str, Result] = {}
        # Guarded by the lock. `_firsts` are the lookups of cell values not keyed yet;
        # `_waiting` maps a cache key or cell values to the cells that wait for it.
        self._lookups: dict[str, _Lookup] = {}
        self._firsts: dict[tuple[Any, ...], Future[Result]] = {}
        self._waiting: dict[Hashable, set[Hashable]] = {}
        self._intake: list[_Intake] = []
        self._ready: set[Hashable] = set()
        self._wake = threading.Condition(self._lock)
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False

    # -- the finder -------------------------------------------------------------------------------

    @property
    def finder(self) -> LeadFinder:
        """The `LeadFinder` doing the lookups (built on first use when a factory was given)."""
        finder = self._finder
        if finder is not None:
            return finder
        with self._finder_lock:
            if self._finder is None:
                assert self._factory is not None
                self._finder = self._factory()
            return self._finder

    def warm_up(self, *, serving: bool = False) -> None:
        """Do the one-time work of a first lookup now: build the finder, load the name, company
        and domain rules and open the cache file, so that the first cells answer as fast as the
        rest (in a fresh process that work takes 0.1-0.3 s). `default_session` runs it in the
        background.

        `serving=True` is for a process that exists to answer the spreadsheet (Excel's Python,
        the add-in server; `default_session` says so). It tunes the interpreter for short calls
        arriving while lookups run in the background: every object alive so far (the
        interpreter, the libraries) is moved out of the garbage collector's reach
        (`gc.freeze()`: full collections over them paused every thread for 100-250 ms), and
        threads take turns every 1 ms instead of 5 ms (`sys.setswitchinterval`).
        """
        try:
            self.finder.cached({"name": "Jane Doe", "company": "Acme Inc.",
                                "domain": "https://www.acme.com"})
        except LeadFinderError as exc:  # the cells will say what is wrong
            log.warning("warming up the Excel session: %s", user_message(exc))
        if serving:
            gc.collect()  # what is garbage now is collected, not frozen
            gc.freeze()
            sys.setswitchinterval(SWITCH_INTERVAL)

    # -- answering cells --------------------------------------------------------------------------

    def lookup(
        self,
        fields: Mapping[str, object],
        mode: object = None,
        cell: Hashable | None = None,
        *,
        locate: Locate | None = None,
    ) -> Result | None:
        """Answer one cell without waiting for the network: the answer, or a PENDING result.

        `fields` holds the cell's name, company, domain and linkedin values as Excel passed
        them. None means there is nothing to look up (every field is blank). A PENDING answer
        registers `cell` (any hashable that identifies the calling cell; or, when `cell` is
        None, what `locate()` returns: it is called only for a cell that has to wait), which is
        handed to `recalculate` once the lookup lands. Never raises: problems come back as ERROR
        results.
        """
        started = self._begin(fields, mode)
        if isinstance(started, _Started) and started.checked is not None:
            started.checked.wait(self.cache_wait)
        return self._answer(started, fields, mode, cell, locate)

    def lookup_many(
        self,
        rows: Sequence[Mapping[str, object]],
        mode: object = None,
        cell: Hashable | None = None,
        *,
        locate: Locate | None = None,
    ) -> list[Result | None]:
        """`lookup` for each row of a spill, in order; `cell` waits for every pending row.

        All rows are queued first and the call waits (at most `cache_wait`) once, for the last
        row's cache check, so a spill of cached leads fills in at once.
        """
        started = [self._begin(row, mode) for row in rows]
        checks = [s.checked for s in started if isinstance(s, _Started) and s.checked is not None]
        if checks:
            checks[-1].wait(self.cache_wait)
        if cell is None and locate is not None and any(
            isinstance(s, _Started) and not s.future.done() for s in started
        ):
            cell, locate = locate(), None  # one cell for every row
        return [self._answer(s, row, mode, cell, None)
                for s, row in zip(started, rows, strict=True)]

    async def alookup(
        self, fields: Mapping[str, object], mode: object = None, *, timeout: float = 240.0
    ) -> Result | None:
        """Answer one cell when its lookup lands (for runtimes whose functions may await).

        Lookups awaited together are batched like `lookup`'s. After `timeout` seconds the
        answer is PENDING: the lookup goes on, and a later recalculation reads the cache.
        """
        try:
            started = self._start(fields, mode)
            if not isinstance(started, _Started):
                return started
            valid, future = started.valid, started.future
            if not future.done():
                try:
                    # shield: a timed-out wait must not cancel a lookup other cells share
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
                except TimeoutError:
                    return self._pending(valid)
                except Exception:  # reported for this lead by _result_of below
                    pass
            return _result_of(future, valid.lead, valid.mode)
        except Exception as exc:
            return _failed(fields, mode, exc)

    def retry_failed(self) -> int:
        """Forget remembered failures so the next recalculation looks those leads up again.

        Returns how many were forgotten. A session that builds its own finder builds a fresh
        one on next use, so settings changed since (a key set with `lead-finder config set-key`,
        a raised LEAD_FINDER_BUDGET) take effect. Nothing is bought twice: the cache and the
        ledger still answer for leads that were already paid for.
        """
        with self._lock:
            failed = [k for k, lk in self._lookups.items() if lk.failed_at is not None]
            for key in failed:
                del self._lookups[key]
            self._memo.clear()  # keys depend on the settings (API or built-in engine)
        if self._factory is not None:
            with self._finder_lock:
                old, self._finder = self._finder, None
            if old is not None:
                # Its waiting lookups finish in the background; cells then read the cache.
                threading.Thread(target=old.close, name="lead-finder-excel-close",
                                 daemon=True).start()
        return len(failed)

    def waiting_cells(self) -> frozenset[Hashable]:
        """The cells that got PENDING and have not been handed to `recalculate` yet."""
        with self._lock:
            return frozenset(cell for cells in self._waiting.values() for cell in cells)

    def close(self) -> None:
        """Stop the background threads; close the finder if this session built it."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            threads = list(self._threads.values())
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(5)
        if self._factory is not None and self._finder is not None:
            self._finder.close()

    # -- on the cell's thread ---------------------------------------------------------------------

    def _begin(self, fields: Mapping[str, object], mode: object) -> Result | None | _Started:
        try:
            return self._start(fields, mode)
        except Exception as exc:  # a cell shows a reason, never a traceback
            return _failed(fields, mode, exc)

    def _answer(
        self,
        started: Result | None | _Started,
        fields: Mapping[str, object],
        mode: object,
        cell: Hashable | None,
        locate: Locate | None,
    ) -> Result | None:
        """A cell's value once its lookup is started: the result if it landed, else PENDING
        (and the cell registered for the recalculation)."""
        if not isinstance(started, _Started):
            return started
        try:
            wait_id, valid, future = started.wait_id, started.valid, started.future
            if cell is None and locate is not None and not future.done():
                cell = locate()  # asked only now: finding the cell may cost a call to Excel
            if cell is not None and self._wait_for(wait_id, future, cell):
                return self._pending(valid)
            if not future.done():
                return self._pending(valid)
            return _result_of(future, valid.lead, valid.mode)
        except Exception as exc:
            return _failed(fields, mode, exc)

    def _start(self, fields: Mapping[str, object], mode: object) -> Result | None | _Started:
        """Answer from memory, or start (or join) a lookup: then what to wait for, the lead, the
        lookup's future and the intake's event when it is this call that queued it."""
        lead_fields = {f: fields.get(f) for f in LEAD_FIELDS}
        if all(_is_blank(v) for v in lead_fields.values()):
            return None
        if any(isinstance(v, str) and v.strip() == PENDING for v in lead_fields.values()):
            # Another cell's lookup is still running; Excel recalculates this one when it lands.
            return Result(lead=_api_fields(fields), mode=Mode.parse_or_default(mode), pending=True,
                          source=Source.NONE)
        memo = _memo_key(lead_fields, mode)
        known = self._memo.get(memo) if memo is not None else None
        if known is None:
            known = _validate(lead_fields, mode)
            if memo is not None:
                with self._lock:
                    if len(self._memo) >= _MEMO_SIZE:
                        self._memo.clear()  # rare; everything is recomputed on demand
                    known = self._memo.setdefault(memo, known)
        if isinstance(known, str):
            return Result.failed(_api_fields(fields), known, mode=Mode.parse_or_default(mode))
        if isinstance(known, _Valid):
            if memo is None:  # cannot be remembered: key it here (rare)
                return self._start_keyed(self.finder.prepare(known.lead, known.mode))
            return self._start_first(memo, known)
        return self._start_keyed(known)

    def _start_keyed(self, prepared: LeadRequest) -> Result | _Started:
        answer = self._answers.get(prepared.key)
        if answer is not None:
            return answer
        future, checked = self._join(prepared)
        return _Started(prepared.key, _Valid(prepared.lead, prepared.mode), future, checked)

    def _start_first(self, memo: tuple[Any, ...], valid: _Valid) -> Result | _Started:
        """Cell values seen for the first time: the intake keys them (shared by the cells that
        ask meanwhile)."""
        with self._lock:
            known = self._memo.get(memo)
            if known is not None and not isinstance(known, _Valid | str):
                keyed: LeadRequest | None = known  # the intake keyed it a moment ago
            else:
                keyed = None
                joined = self._firsts.get(memo)
                if joined is not None:
                    return _Started(memo, valid, joined, None)
                future = self._new_future()
                self._firsts[memo] = future
                checked = self._queue(_Intake(future, threading.Event(), memo=memo, valid=valid))
        if keyed is not None:
            return self._start_keyed(keyed)
        future.add_done_callback(lambda done: self._first_landed(memo, done))
        return _Started(memo, valid, future, checked)

    def _join(self, prepared: LeadRequest) -> tuple[Future[Result], threading.Event | None]:
        """The lookup for a keyed lead: one in flight, a recent failure, or a new one (submitted
        here on the intake thread, else queued for it)."""
        key = prepared.key
        on_intake = threading.current_thread() is self._threads.get("intake")
        checked = None
        with self._lock:
            known = self._lookups.get(key)
            if known is not None:
                if known.failed_at is None:
                    return known.future, None  # in flight (or landed a moment ago)
                if self._clock() - known.failed_at < self.retry_after:
                    return known.future, None  # failed recently: not on every recalculation
            future = self._new_future()
            self._lookups[key] = _Lookup(future)
            if not on_intake:
                checked = self._queue(_Intake(future, threading.Event(), prepared=prepared))
        future.add_done_callback(lambda done: self._landed(prepared, done))
        if on_intake:
            self._submit(prepared, future)
        return future, checked

    def _new_future(self) -> Future[Result]:
        # A shared future must not be cancellable by one of its callers.
        future: Future[Result] = Future()
        future.set_running_or_notify_cancel()
        return future

    def _queue(self, item: _Intake) -> threading.Event | None:
        """Queue work for the intake (under the lock); its event, unless the queue is long."""
        self._intake.append(item)
        self._ensure_thread("intake", self._intake_loop)
        self._wake.notify_all()
        # Behind a long queue (a fill-down arriving) the check would not be done in time:
        # answer PENDING at once rather than wait for nothing.
        return None if len(self._intake) > _WAIT_BACKLOG else item.checked

    def _wait_for(self, wait_id: Hashable, future: Future[Result], cell: Hashable) -> bool:
        """Register `cell` as waiting for `future`; False when it has already landed."""
        with self._lock:
            # Checked under the lock that the landing callbacks take: a future that lands after
            # this finds the cell registered, one that landed before is answered directly.
            if future.done():
                return False
            self._waiting.setdefault(wait_id, set()).add(cell)
            return True

    def _pending(self, valid: _Valid) -> Result:
        return Result(lead=valid.lead.to_api(), mode=valid.mode, pending=True,
                      source=Source.NONE)

    # -- on the intake thread ---------------------------------------------------------------------

    def _intake_loop(self) -> None:
        """Key new leads, check the cache and hand them to the finder's coalescer, one thread
        for all cells."""
        while True:
            with self._lock:
                while not self._intake and not self._closed:
                    self._wake.wait()
                if self._closed and not self._intake:
                    return
                batch, self._intake = self._intake, []
            for item in batch:
                try:
                    if item.prepared is not None:
                        self._submit(item.prepared, item.future)
                    else:
                        assert item.memo is not None and item.valid is not None
                        self._key_first(item.memo, item.valid, item.future)
                except Exception as exc:  # e.g. the cache file cannot be read
                    log.warning("Excel lookup failed: %s", type(exc).__name__)
                    lead = item.valid or item.prepared
                    assert lead is not None
                    _forward(_failed_future(exc), item.future, lead.lead, lead.mode)
                item.checked.set()

    def _key_first(self, memo: tuple[Any, ...], valid: _Valid, future: Future[Result]) -> None:
        prepared = self.finder.prepare(valid.lead, valid.mode)
        with self._lock:
            self._memo[memo] = prepared  # later calls go straight to the key
            self._firsts.pop(memo, None)
        answer = self._answers.get(prepared.key)
        if answer is not None:
            future.set_result(answer)
            return
        keyed, _checked = self._join(prepared)
        keyed.add_done_callback(
            functools.partial(_forward, outer=future, lead=valid.lead, mode=valid.mode))

    def _submit(self, prepared: LeadRequest, future: Future[Result]) -> None:
        """Hand a keyed lead to the finder (cache check, then the coalescer); never raises."""
        try:
            inner = self.finder.submit(prepared)  # already keyed: not parsed again
        except Exception as exc:  # e.g. the cache file cannot be read: the lookup fails
            log.warning("Excel lookup failed: %s", type(exc).__name__)
            inner = _failed_future(exc)
        inner.add_done_callback(
            functools.partial(_forward, outer=future, lead=prepared.lead, mode=prepared.mode))

    # -- when lookups land ------------------------------------------------------------------------

    def _landed(self, prepared: LeadRequest, future: Future[Result]) -> None:
        """A keyed lookup finished: remember the answer or the failure, wake waiting cells."""
        result = _result_of(future, prepared.lead, prepared.mode)
        with self._lock:
            known = self._lookups.get(prepared.key)
            if known is not None and known.future is future:
                if result.status is Status.ERROR:
                    known.failed_at = self._clock()
                else:
                    del self._lookups[prepared.key]
                    if len(self._answers) >= _MEMO_SIZE:
                        self._answers.clear()
                    self._answers[prepared.key] = result
            self._wake_cells(prepared.key)

    def _first_landed(self, memo: tuple[Any, ...], future: Future[Result]) -> None:
        with self._lock:
            if self._firsts.get(memo) is future:
                del self._firsts[memo]
            self._wake_cells(memo)

    def _wake_cells(self, wait_id: Hashable) -> None:
        """Hand the cells waiting for `wait_id` to the recalculation thread (under the lock)."""
        cells = self._waiting.pop(wait_id, None)
        if not cells or self._recalculate is None or self._closed:
            return
        self._ready |= cells
        self._ensure_thread("recalc", self._notify_loop)
        self._wake.notify_all()

    def _notify_loop(self) -> None:
        """Hand landed cells to `recalculate`, one call per burst of results."""
        assert self._recalculate is not None
        while True:
            with self._lock:
                while not self._ready and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
            # Results of one bulk request land within milliseconds: gather them into one call.
            time.sleep(self._settle)
            with self._lock:
                cells, self._ready = frozenset(self._ready), set()
            try:
                self._recalculate(cells)
            except Exception:  # the next landing tries again; the cells keep their placeholder
                log.exception("recalculating %d Excel cells failed", len(cells))

    def _ensure_thread(self, name: str, target: Callable[[], None]) -> None:
        """Start a daemon thread once (called under the lock)."""
        if name not in self._threads:
            thread = threading.Thread(target=target, name=f"lead-finder-excel-{name}",
                                      daemon=True)
            self._threads[name] = thread
            thread.start()


def _failed_future(exc: BaseException) -> Future[Result]:
    future: Future[Result] = Future()
    future.set_exception(exc)
    return future


_default: ExcelSession | None = None
_default_lock = threading.Lock()


def default_session() -> ExcelSession:
    """The process's session for the Excel functions, built on first use.

    Its finder takes its settings from the environment, the keyring and the config file (never
    from the workbook) and batches with `EXCEL_QUIET`. It warms up in the background, and on
    Windows (Excel's own Python) as a serving process (see `ExcelSession.warm_up`) that
    recalculates cells through xlwings.
    """
    global _default
    with _default_lock:
        if _default is None:
            from .windows import windows_recalculate

            _default = ExcelSession(lambda: LeadFinder(quiet=EXCEL_QUIET),
                                    recalculate=windows_recalculate())
            # Only Excel's own Python (the xlwings COM server, Windows) is tuned as a serving
            # process; a script or notebook calling these functions keeps its interpreter as is.
            threading.Thread(target=_default.warm_up,
                             kwargs={"serving": sys.platform == "win32"},
                             name="lead-finder-excel-warm-up", daemon=True).start()
        return _default


def set_default_session(session: ExcelSession | None) -> ExcelSession | None:
    """Make `session` the one the Excel functions use (None: build a default one on next use).

    Returns the previous session, which the caller may close.
    """
    global _default
    with _default_lock:
        previous, _default = _default, session
        return previous
