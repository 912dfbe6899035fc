"""What a spreadsheet cell shows for a lookup, and how range arguments become leads.

Both Excel front-ends (classic xlwings UDFs and the Office.js custom functions) show the same
values; only "not found" differs, because only Office.js can return an error value:

==========================  ======================  =============================================
lookup                      FINDEMAIL               EMAILSTATUS
==========================  ======================  =============================================
found (OK or UNKNOWN)       the address             ``OK`` / ``UNKNOWN``
not found                   ``#N/A`` (Office.js),   ``NOT_FOUND``
                            text ``NOT_FOUND``
                            (classic UDFs)
still being looked up       ``PENDING``             ``PENDING``
bad input, no key, budget,  a short reason          the same reason
API down, ...
nothing to look up (blank)  empty                   empty
==========================  ======================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidLeadError
from ..models import Result, Status

__all__ = [
    "ARG_DOCS",
    "MAX_REASON_LENGTH",
    "NOT_FOUND_ERROR",
    "NOT_FOUND_TEXT",
    "PENDING",
    "email_cell",
    "lead_fields",
    "spill_row",
    "spill_rows",
    "status_cell",
]

#: The placeholder a cell shows while its lead is queued or being looked up. It is not a valid
#: lead field for the UDFs either: a formula that reads a pending cell waits instead of paying
#: for a lead named "PENDING".
PENDING = "PENDING"
#: Excel's error value for "not available"; the Office.js route turns it into a real error cell.
NOT_FOUND_ERROR = "#N/A"
#: What a runtime without error values shows for "not found".
NOT_FOUND_TEXT = "NOT_FOUND"
#: Reasons longer than this are cut (with "…") so that a cell stays readable.
MAX_REASON_LENGTH = 255
#: What Excel's function wizard says about each argument, in both front-ends.
ARG_DOCS: Mapping[str, str] = {
    "name": "The person's full name, e.g. Jane Doe (or a cell that holds it).",
    "company": "The company they work for, e.g. Acme Inc. (or its website).",
    "mode": 'Optional: "PROFESSIONAL" (work email, the default) or "PERSONAL" (Gmail etc.).',
    "domain": "Optional: the company's domain or website, e.g. acme.com.",
    "linkedin": "Optional: the person's LinkedIn profile URL.",
    "names": "A column (or row) of full names.",
    "companies": "The matching column of companies, or one company for every row.",
    "domains": "Optional: the matching column of company domains.",
}


def lead_fields(
    name: Any, company: Any, domain: Any = None, linkedin: Any = None
) -> dict[str, Any]:
    """A one-lead function's arguments as the cell values `ExcelSession.lookup` takes."""
    return {"name": name, "company": company, "domain": domain, "linkedin": linkedin}


def _reason(result: Result) -> str:
    text = " ".join((result.error or "lookup failed").split())
    if len(text) > MAX_REASON_LENGTH:
        text = text[: MAX_REASON_LENGTH - 1] + "…"
    return text


def email_cell(result: Result | None, *, errors: bool) -> str:
    """FINDEMAIL's value: the best address, PENDING, a reason, or not found.

    `errors` says whether the runtime shows ``#N/A`` as an error value (Office.js) rather than as
    text (classic UDFs, which then show ``NOT_FOUND``).
    """
    if result is None:
        return ""
    status = result.status
    if status is Status.PENDING:
        return PENDING
    if status is Status.ERROR:
        return _reason(result)
    if status is Status.NOT_FOUND:
        return NOT_FOUND_ERROR if errors else NOT_FOUND_TEXT
    return result.email or ""


def status_cell(result: Result | None) -> str:
    """EMAILSTATUS's value: OK, UNKNOWN, NOT_FOUND, PENDING, or the reason a lookup failed."""
    if result is None:
        return ""
    status = result.status
    if status is Status.ERROR:
        return _reason(result)
    return status.value


def spill_row(result: Result | None, *, errors: bool) -> list[str]:
    """One FINDEMAILS row: email, status, type.

    A failed row leaves the email empty and gives the reason in the status column.
    """
    if result is None:
        return ["", "", ""]
    if result.status is Status.ERROR:
        return ["", _reason(result), ""]
    best = result.best
    return [email_cell(result, errors=errors), status_cell(result), best.type if best else ""]


def _column(values: Any, label: str) -> list[Any]:
    """A range argument as a list of cell values; it must be one column or one row."""
    if not isinstance(values, list | tuple):
        return [values]
    rows = [list(row) if isinstance(row, list | tuple) else [row] for row in values]
    if all(len(row) == 1 for row in rows):
        return [row[0] for row in rows]
    if len(rows) == 1:
        return rows[0]
    raise InvalidLeadError(label, f"{label} must be one column or one row")


def _spread(values: list[Any], rows: int, label: str) -> list[Any]:
    """One value for every row, or exactly one value per row."""
    if len(values) == 1:
        return values * rows
    if len(values) != rows:
        raise InvalidLeadError(
            label, f"{label} has {len(values)} cells but names has {rows}: give one per name"
        )
    return values


def spill_rows(names: Any, companies: Any, domains: Any = None) -> list[dict[str, Any]]:
    """The leads of a FINDEMAILS call, one per name, in order; raises InvalidLeadError for
    ranges that do not line up."""
    name_list = _column(names, "names")
    count = len(name_list)
    company_list = _spread(_column(companies, "companies"), count, "companies")
    domain_list = _spread(_column(domains, "domains"), count, "domains")
    return [
        {"name": n, "company": c, "domain": d}
        for n, c, d in zip(name_list, company_list, domain_list, strict=True)
    ]
