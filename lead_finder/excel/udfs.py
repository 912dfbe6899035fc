"""Excel worksheet functions for classic xlwings (Excel on Windows): ``=FINDEMAIL(A2, B2)``.

Point the workbook's ``xlwings.conf`` sheet (``UDF Modules``) at ``lead_finder.excel.udfs`` and
click *Import Functions* in the xlwings ribbon; see ``workbook/README.md``.

Every function answers at once: from the cache, or with the placeholder ``PENDING`` while its lead
waits for the next bulk request. When the answers land, Excel recalculates exactly the cells that
showed ``PENDING`` (see `lead_finder.excel.session`). Recalculating a sheet sends nothing new.
What each function shows is listed in `lead_finder.excel.cells`; "not found" is the text
``NOT_FOUND`` here, because classic UDFs cannot return Excel error values.

Arguments are declared with ``err_to_str`` so that an error cell (``#N/A``, ``#REF!``) arrives as
its text and is reported as such instead of looking like an empty cell. The parameter named
``caller`` is filled in by xlwings with the calling cell and does not appear in Excel.

On Linux and macOS the xlwings decorators do nothing and these are plain functions (that is how
the tests drive them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import xlwings as xw

from ..errors import InvalidLeadError
from ..models import Mode, Result
from .cells import ARG_DOCS, email_cell, lead_fields, spill_row, spill_rows, status_cell
from .session import ExcelSession, default_session
from .windows import caller_cell

__all__ = ["EMAILSTATUS", "FINDEMAIL", "FINDEMAILS", "PERSONALEMAIL", "session"]

_CATEGORY = "Lead Finder"


def session() -> ExcelSession:
    """The session these functions use (`lead_finder.excel.session.default_session`)."""
    return default_session()


def _lookup(fields: Mapping[str, Any], mode: Any, caller: Any) -> Result | None:
    # The calling cell is identified (a few calls to Excel) only when it has to wait.
    return session().lookup(fields, mode, locate=lambda: caller_cell(caller))


@xw.func(category=_CATEGORY)
@xw.arg("name", doc=ARG_DOCS["name"], err_to_str=True)
@xw.arg("company", doc=ARG_DOCS["company"], err_to_str=True)
@xw.arg("mode", doc=ARG_DOCS["mode"], err_to_str=True)
@xw.arg("domain", doc=ARG_DOCS["domain"], err_to_str=True)
@xw.arg("linkedin", doc=ARG_DOCS["linkedin"], err_to_str=True)
def FINDEMAIL(
    name: Any,
    company: Any,
    mode: Any = None,
    domain: Any = None,
    linkedin: Any = None,
    caller: Any = None,
) -> str:
    """Work email of a person at a company. Shows PENDING until it is found, NOT_FOUND when
    there is none, or a short reason (bad input, no API key, budget reached). Never buys a
    lead twice."""
    fields = lead_fields(name, company, domain, linkedin)
    return email_cell(_lookup(fields, mode, caller), errors=False)


@xw.func(category=_CATEGORY)
@xw.arg("name", doc=ARG_DOCS["name"], err_to_str=True)
@xw.arg("company", doc=ARG_DOCS["company"], err_to_str=True)
@xw.arg("mode", doc=ARG_DOCS["mode"], err_to_str=True)
@xw.arg("domain", doc=ARG_DOCS["domain"], err_to_str=True)
@xw.arg("linkedin", doc=ARG_DOCS["linkedin"], err_to_str=True)
def EMAILSTATUS(
    name: Any,
    company: Any,
    mode: Any = None,
    domain: Any = None,
    linkedin: Any = None,
    caller: Any = None,
) -> str:
    """How sure the email is: OK (verified), UNKNOWN (catch-all or risky), NOT_FOUND, PENDING
    (being looked up), or a short reason why it could not be looked up."""
    return status_cell(_lookup(lead_fields(name, company, domain, linkedin), mode, caller))


@xw.func(category=_CATEGORY)
@xw.arg("name", doc=ARG_DOCS["name"], err_to_str=True)
@xw.arg("company", doc=ARG_DOCS["company"], err_to_str=True)
@xw.arg("domain", doc=ARG_DOCS["domain"], err_to_str=True)
@xw.arg("linkedin", doc=ARG_DOCS["linkedin"], err_to_str=True)
def PERSONALEMAIL(
    name: Any,
    company: Any,
    domain: Any = None,
    linkedin: Any = None,
    caller: Any = None,
) -> str:
    """Personal email (Gmail, Yahoo, ...) of a person; costs more than a work email. Shows
    PENDING until it is found, NOT_FOUND when there is none, or a short reason."""
    fields = lead_fields(name, company, domain, linkedin)
    return email_cell(_lookup(fields, Mode.PERSONAL, caller), errors=False)


@xw.func(category=_CATEGORY)
@xw.arg("names", doc=ARG_DOCS["names"], ndim=2, err_to_str=True)
@xw.arg("companies", doc=ARG_DOCS["companies"], ndim=2, err_to_str=True)
@xw.arg("mode", doc=ARG_DOCS["mode"], err_to_str=True)
@xw.arg("domains", doc=ARG_DOCS["domains"], ndim=2, err_to_str=True)
def FINDEMAILS(
    names: Any,
    companies: Any,
    mode: Any = None,
    domains: Any = None,
    caller: Any = None,
) -> list[list[str]]:
    """Emails for a whole column at once: spills email, status and type for each row, in
    order, batching the lookups. Rows show PENDING until found. Needs Excel with dynamic
    arrays (Microsoft 365 or 2021+)."""
    try:
        Mode.parse(mode)
        rows = spill_rows(names, companies, domains)
    except InvalidLeadError as exc:
        return [[exc.reason]]
    results = session().lookup_many(rows, mode, locate=lambda: caller_cell(caller))
    return [spill_row(result, errors=False) for result in results] or [[""]]
