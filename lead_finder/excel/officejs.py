"""Excel functions as Office.js custom functions, served by xlwings Server (Excel on Mac, on the
web, and on Windows without a local Python).

The same four functions as the classic UDFs (`lead_finder.excel.udfs`), under the add-in's
namespace (``=LEADFINDER.FINDEMAIL(A2, B2)``). Office.js calls one function per cell, each as its
own HTTP request; each call awaits its lead's lookup in the process-wide session, so calls that
arrive together are sent as bulk requests of up to 100 leads, and Excel shows ``#BUSY!`` until the
answer is there. Not found is a real ``#N/A`` error cell (the text ``NOT_FOUND`` on Office.js
runtimes older than 1.4, which have no error values). A lookup still running after
`WAIT_SECONDS` shows ``PENDING``; it goes on in the background and a recalculation
(Ctrl+Alt+F9) reads it from the cache.

xlwings Server is source-available under the PolyForm Noncommercial License 1.0.0 (free for
non-commercial use) or a paid xlwings licence: importing this module needs the environment
variable ``XLWINGS_LICENSE_KEY`` (``noncommercial``, or your key). Start it with
``lead-finder excel serve`` (see `lead_finder.excel.server`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from xlwings.conversion import Converter
from xlwings.server import arg, func, ret

from ..errors import InvalidLeadError
from ..models import Mode
from .cells import (
    ARG_DOCS,
    NOT_FOUND_ERROR,
    NOT_FOUND_TEXT,
    email_cell,
    lead_fields,
    spill_row,
    spill_rows,
    status_cell,
)
from .session import ExcelSession, default_session

__all__ = ["WAIT_SECONDS", "emailstatus", "findemail", "findemails", "personalemail"]

#: How long one call waits for its lookup; below the add-in's own request timeout (300 s).
WAIT_SECONDS = 240.0


def _replace_not_found(value: Any) -> Any:
    if isinstance(value, list):
        return [_replace_not_found(item) for item in value]
    return NOT_FOUND_TEXT if value == NOT_FOUND_ERROR else value


class CellValues(Converter):
    """Return converter: keeps ``#N/A`` as an error cell where the Office.js runtime has error
    values (CustomFunctionsRuntime 1.4 and later), and writes ``NOT_FOUND`` elsewhere."""

    @staticmethod
    def write_value(value: Any, options: dict[str, Any]) -> Any:
        try:
            has_errors = float(options.get("runtime") or 0) >= 1.4
        except (TypeError, ValueError):
            has_errors = False
        return value if has_errors else _replace_not_found(value)


def session() -> ExcelSession:
    """The session these functions use (`lead_finder.excel.session.default_session`)."""
    return default_session()


@func
@arg("name", doc=ARG_DOCS["name"], err_to_str=True)
@arg("company", doc=ARG_DOCS["company"], err_to_str=True)
@arg("mode", doc=ARG_DOCS["mode"], err_to_str=True)
@arg("domain", doc=ARG_DOCS["domain"], err_to_str=True)
@arg("linkedin", doc=ARG_DOCS["linkedin"], err_to_str=True)
@ret(CellValues)
async def findemail(
    name: Any, company: Any, mode: Any = None, domain: Any = None, linkedin: Any = None
) -> str:
    """Work email of a person at a company: #N/A when there is none, or a short reason (bad
    input, no API key, budget reached). Never buys a lead twice."""
    result = await session().alookup(lead_fields(name, company, domain, linkedin), mode,
                                      timeout=WAIT_SECONDS)
    return email_cell(result, errors=True)


@func
@arg("name", doc=ARG_DOCS["name"], err_to_str=True)
@arg("company", doc=ARG_DOCS["company"], err_to_str=True)
@arg("mode", doc=ARG_DOCS["mode"], err_to_str=True)
@arg("domain", doc=ARG_DOCS["domain"], err_to_str=True)
@arg("linkedin", doc=ARG_DOCS["linkedin"], err_to_str=True)
@ret(CellValues)
async def emailstatus(
    name: Any, company: Any, mode: Any = None, domain: Any = None, linkedin: Any = None
) -> str:
    """How sure the email is: OK (verified), UNKNOWN (catch-all or risky), NOT_FOUND, or a
    short reason why it could not be looked up."""
    result = await session().alookup(lead_fields(name, company, domain, linkedin), mode,
                                      timeout=WAIT_SECONDS)
    return status_cell(result)


@func
@arg("name", doc=ARG_DOCS["name"], err_to_str=True)
@arg("company", doc=ARG_DOCS["company"], err_to_str=True)
@arg("domain", doc=ARG_DOCS["domain"], err_to_str=True)
@arg("linkedin", doc=ARG_DOCS["linkedin"], err_to_str=True)
@ret(CellValues)
async def personalemail(
    name: Any, company: Any, domain: Any = None, linkedin: Any = None
) -> str:
    """Personal email (Gmail, Yahoo, ...) of a person; costs more than a work email. #N/A when
    there is none, or a short reason."""
    fields = lead_fields(name, company, domain, linkedin)
    result = await session().alookup(fields, Mode.PERSONAL, timeout=WAIT_SECONDS)
    return email_cell(result, errors=True)


@func
@arg("names", doc=ARG_DOCS["names"], ndim=2, err_to_str=True)
@arg("companies", doc=ARG_DOCS["companies"], ndim=2, err_to_str=True)
@arg("mode", doc=ARG_DOCS["mode"], err_to_str=True)
@arg("domains", doc=ARG_DOCS["domains"], ndim=2, err_to_str=True)
@ret(CellValues)
async def findemails(
    names: Any, companies: Any, mode: Any = None, domains: Any = None
) -> list[list[str]]:
    """Emails for a whole column at once: spills email, status and type for each row, in
    order, in bulk requests of up to 100."""
    try:
        Mode.parse(mode)
        rows = spill_rows(names, companies, domains)
    except InvalidLeadError as exc:
        return [[exc.reason]]
    current = session()
    results = await asyncio.gather(
        *(current.alookup(row, mode, timeout=WAIT_SECONDS) for row in rows)
    )
    return [spill_row(result, errors=True) for result in results] or [[""]]
