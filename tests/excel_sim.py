"""Excel without Excel: a recalculation is every formula cell called at once from a pool of worker
threads of xlwings' size (min(32, cpus + 4)); `caller` is what xlwings passes as the calling cell.
Shared by tests/test_excel_udfs.py, tests/test_excel_officejs.py and benchmarks/excel_recalc.py."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lead_finder.excel.session import ExcelSession, set_default_session
from lead_finder.excel.windows import CallerCell

__all__ = ["Excel", "Formula", "Recalcs", "XlCaller", "default_sessions"]


@dataclass(frozen=True)
class _Book:
    name: str


@dataclass(frozen=True)
class _Sheet:
    name: str
    book: _Book


@dataclass(frozen=True)
class XlCaller:
    """The calling cell as xlwings passes it (a Range): `.address`, `.sheet.name`,
    `.sheet.book.name`."""

    address: str
    sheet: _Sheet = field(default=_Sheet("Leads", _Book("lead_finder.xlsm")))


class Recalcs:
    """The recalculation callback: records which cells it was asked to recalculate."""

    def __init__(self) -> None:
        self.calls: list[frozenset[Hashable]] = []
        self._cond = threading.Condition()

    def __call__(self, cells: frozenset[Hashable]) -> None:
        with self._cond:
            self.calls.append(cells)
            self._cond.notify_all()

    def addresses(self) -> list[str]:
        """Every cell address handed to the callback so far (repeats included)."""
        with self._cond:
            return self._addresses()

    def wait_for(self, addresses: set[str], timeout: float = 30.0) -> None:
        """Wait until every one of `addresses` was handed to the callback."""
        with self._cond:
            if not self._cond.wait_for(lambda: addresses <= set(self._addresses()), timeout):
                missing = addresses - set(self._addresses())
                raise TimeoutError(f"{len(missing)} waiting cells were never recalculated")

    def wait_for_call(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the callback has been called more than `count` times."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) > count, timeout):
                raise TimeoutError("no recalculation")

    def _addresses(self) -> list[str]:
        return [c.address for call in self.calls for c in call if isinstance(c, CallerCell)]


Formula = tuple[Callable[..., Any], tuple[Any, ...]]


class Excel:
    """Recalculates like Excel: every formula at once, from a pool of worker threads."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4))
        self.latencies: list[float] = []
        self.slowest: list[float] = []  # per recalculation

    def recalc(
        self, sheet: dict[str, Formula], only: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Call the formulas (all, or `only` these cells) at once; their values by address."""
        addresses = list(only if only is not None else sheet)

        def call(address: str) -> tuple[Any, float]:
            func, args = sheet[address]
            start = time.perf_counter()
            value = func(*args, caller=XlCaller(address))
            return value, time.perf_counter() - start

        answers = list(self.pool.map(call, addresses))
        self.latencies += [latency for _, latency in answers]
        self.slowest.append(max((latency for _, latency in answers), default=0.0))
        return {address: value for address, (value, _) in zip(addresses, answers, strict=True)}

    def close(self) -> None:
        self.pool.shutdown()




@contextmanager
def default_sessions() -> Iterator[Callable[[ExcelSession], ExcelSession]]:
    """Install sessions as the Excel functions' default; afterwards restore the previous one,
    close the installed ones and undo the interpreter tuning of `warm_up(serving=True)`."""
    installed: list[ExcelSession] = []

    def install(session: ExcelSession) -> ExcelSession:
        installed.append(session)
        set_default_session(session)
        return session

    previous = set_default_session(None)
    set_default_session(previous)
    switch = sys.getswitchinterval()
    try:
        yield install
    finally:
        set_default_session(previous)
        for session in installed:
            session.close()
        gc.unfreeze()
        sys.setswitchinterval(switch)
