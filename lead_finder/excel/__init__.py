"""Excel front-ends: ``=FINDEMAIL(A2, B2)`` and friends.

- `lead_finder.excel.udfs`: classic xlwings UDFs for Excel on Windows (extra ``excel``).
- `lead_finder.excel.officejs`: the same functions as Office.js custom functions on xlwings
  Server, for Excel on Mac and on the web (extra ``excel-server``; xlwings Server is PolyForm
  Noncommercial or needs a paid licence). `lead_finder.excel.server` starts it
  (``lead-finder excel serve``).
- `lead_finder.excel.session`: the non-blocking layer both use (cache or placeholder at once,
  bulk lookups in the background, recalculation of exactly the waiting cells).
- `lead_finder.excel.cells`: what each function shows in a cell.

Importing this package is cheap (the CLI imports `lead_finder.excel.server` for its command);
the names below load their modules on first use, and nothing imports xlwings until a front-end
module is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cells import NOT_FOUND_ERROR, NOT_FOUND_TEXT, PENDING
    from .session import ExcelSession, default_session, set_default_session

__all__ = [
    "NOT_FOUND_ERROR",
    "NOT_FOUND_TEXT",
    "PENDING",
    "ExcelSession",
    "default_session",
    "set_default_session",
]

_HOME = {
    "NOT_FOUND_ERROR": "cells",
    "NOT_FOUND_TEXT": "cells",
    "PENDING": "cells",
    "ExcelSession": "session",
    "default_session": "session",
    "set_default_session": "session",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
