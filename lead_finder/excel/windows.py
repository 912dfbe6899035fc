"""Classic Excel on Windows: which cell called a UDF, and how to make Excel compute it again.

xlwings passes a UDF parameter named ``caller`` the calling range (a ``ComRange``, which may be
used from other threads). A cell that showed PENDING is recalculated by writing its own formula
back, on xlwings' COM event loop: the same thing xlwings does for its own ``async_mode`` UDFs.
Excel then calls the UDF for that cell (and the cells that depend on it) and nothing else.

Nothing here runs on Linux or macOS: `windows_recalculate()` returns None there.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallerCell", "FormulaReentry", "caller_cell", "windows_recalculate"]

log = logging.getLogger("lead_finder.excel")


@dataclass(frozen=True)
class CallerCell:
    """A calling cell: equal for the same workbook, sheet and address. `range` is the
    xlwings range to recalculate it with (not part of its identity)."""

    book: str
    sheet: str
    address: str
    range: Any = field(default=None, compare=False, hash=False, repr=False)


def caller_cell(caller: Any) -> Hashable | None:
    """The identity of the cell that called a UDF, from xlwings' ``caller`` argument.

    None when the function was not called from a cell (VBA, the function wizard) or Excel
    would not say which cell it was.
    """
    if caller is None:
        return None
    try:
        sheet = caller.sheet
        return CallerCell(sheet.book.name, sheet.name, caller.address, caller)
    except Exception:  # Excel busy or not a range: the cell just won't be refreshed for us
        log.debug("could not identify the calling cell", exc_info=True)
        return None


async def _reenter(rng: Any) -> None:
    """Write a cell's formula back so that Excel recalculates it."""
    try:
        try:
            formula = await rng.get_formula2()
            await rng.set_formula2(formula)
        except AttributeError:  # Excel without dynamic arrays has no Formula2
            formula = await rng.get_formula()
            await rng.set_formula(formula)
    except Exception:  # the user can still recalculate by hand (Ctrl+Alt+F9)
        log.warning("could not recalculate an Excel cell", exc_info=True)


class FormulaReentry:
    """The recalculation callback for Windows: re-enter each waiting cell's formula on `loop`
    (xlwings' COM event loop), without blocking the thread that calls it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, cells: frozenset[Hashable]) -> None:
        for cell in cells:
            if isinstance(cell, CallerCell) and cell.range is not None:
                asyncio.run_coroutine_threadsafe(_reenter(cell.range), self._loop)


def windows_recalculate() -> FormulaReentry | None:
    """The recalculation callback for classic Excel on Windows, or None elsewhere."""
    if sys.platform != "win32":
        return None
    try:
        from xlwings import com_server
    except ImportError:  # xlwings without pywin32: no COM server to talk to
        return None
    return FormulaReentry(com_server.loop)
