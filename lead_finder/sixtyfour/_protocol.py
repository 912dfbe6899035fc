"""The Find Email API's wire format, as pure functions: request bodies in, results and jobs out.

Nothing here does I/O. The sync and async clients build bodies with these functions, send them,
and hand the decoded JSON back to the parsers. Every response variant listed in SIXTYFOUR_API.md is
accepted; anything else raises `ResponseFormatError`, which the client turns into an ambiguous
request (POST) or a retry (GET).
"""

from __future__ import annotations

import enum
import ipaddress
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

import httpx

from ..errors import ConfigurationError, InvalidLeadError
from ..models import Email, EmailType, Mode, Result, Source

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BULK_LEADS",
    "REF_FIELD",
    "ApiLead",
    "Job",
    "JobState",
    "LeadInput",
    "ResponseFormatError",
    "build_bulk_body",
    "build_find_email_body",
    "check_lead_list",
    "chunk_ranges",
    "decode_json",
    "default_refs",
    "error_detail",
    "is_loopback",
    "job_state",
    "match_by_ref",
    "parse_balance",
    "parse_bulk",
    "parse_entries",
    "parse_job",
    "parse_result",
    "parse_submitted",
    "prepare_lead",
    "status_error_message",
    "validate_base_url",
]

DEFAULT_BASE_URL = "https://api.sixtyfour.ai"
#: The documented ceiling of leads per bulk call.
MAX_BULK_LEADS = 100
#: The key sent inside every bulk lead and echoed back, to join answers to inputs.
REF_FIELD = "lead_finder_ref"
#: Longest webhook URL the API accepts.
MAX_WEBHOOK_URL_LENGTH = 2083
#: Keys of a result object that are the API's answer rather than the echoed lead.
ANSWER_FIELDS = frozenset({"email", "personal_email", "cost_cents", REF_FIELD})

_SUCCESS = frozenset({"completed"})
_FAILURE = frozenset(
    {"failed", "cancelled", "canceled", "terminated", "timed_out", "continued_as_new"}
)
_DETAIL_LIMIT = 300


class ResponseFormatError(ValueError):
    """A 2xx answer that is not the JSON we expected (HTML, cut JSON, wrong shape)."""


@runtime_checkable
class ApiLead(Protocol):
    """Anything that can give the API's lead object, such as `lead_finder.Lead`."""

    def to_api(self) -> Mapping[str, Any]:
        """The lead as the API's `lead` object (field name -> value)."""
        ...


#: What the client accepts as a lead.
LeadInput: TypeAlias = ApiLead | Mapping[str, Any]


# -- configuration ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for a host on this machine (127.0.0.0/8, ::1, localhost): plain http may go there."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_problem(url: object, what: str) -> str | None:
    """Why `url` is not an acceptable https URL (http only on loopback), or None when it is."""
    if not isinstance(url, str) or not url.strip():
        return f"{what} must be a URL such as https://api.sixtyfour.ai"
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError):
        return f"{what} is not a valid URL"
    if parsed.userinfo:  # never echo it: it may hold a password
        return f"{what} must not contain a user name or password"
    if not parsed.host:
        return f"{what} must include a host, as in https://api.sixtyfour.ai"
    shown = f"{parsed.scheme}://{parsed.host}"
    if parsed.scheme == "https":
        return None
    if parsed.scheme == "http" and is_loopback(parsed.host):
        return None
    if parsed.scheme == "http":
        return (
            f"{what} must use https:// ({shown} would send data in clear text); "
            "http:// is only allowed for 127.0.0.1, ::1 and localhost"
        )
    return f"{what} must start with https:// (got {parsed.scheme or 'no'} scheme)"


def validate_base_url(url: str) -> str:
    """Check an API base URL and return it without a trailing slash.

    Any https URL is accepted; http only for loopback hosts (127.0.0.0/8, ::1, localhost), so a
    test or gateway server on this machine works but the key never travels in clear text.
    """
    problem = _url_problem(url, "base_url")
    if problem is not None:
        raise ConfigurationError(problem + ". Fix base_url or LEAD_FINDER_BASE_URL.")
    return url.strip().rstrip("/")


# -- requests ----------------------------------------------------------------------------------


def _check_value(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        kind = "NaN or infinite" if isinstance(value, float) else type(value).__name__
        raise InvalidLeadError(name, f"{name} must be text, not {kind}") from None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def prepare_lead(lead: LeadInput) -> dict[str, Any]:
    """The API's lead object for a `Lead` (via `.to_api()`) or a mapping of field names to values.

    Raises InvalidLeadError (nothing is sent) for something that is not a lead, non-text field
    names, values that are not JSON (NaN from an empty pandas cell, objects), or a lead with no
    value at all.
    """
    if isinstance(lead, Mapping):
        fields: Mapping[Any, Any] = lead
    elif isinstance(lead, ApiLead):
        fields = lead.to_api()
        if not isinstance(fields, Mapping):
            raise InvalidLeadError("lead", "Lead.to_api() must return a mapping")
    else:
        raise InvalidLeadError(
            "lead", f"a lead must be a Lead or a dict of fields, not {type(lead).__name__}"
        )
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name:
            raise InvalidLeadError("lead", "lead field names must be non-empty text")
        _check_value(name, value)
        body[name] = value
    if all(_blank(v) for k, v in body.items() if k != REF_FIELD):
        raise InvalidLeadError(
            "lead", "the lead is empty: give a name and company, a LinkedIn URL or an email"
        )
    return body


def _options(
    mode: Mode | str,
    verify_emails: bool,
    providers: Sequence[str] | None,
    webhook_url: str | None,
) -> dict[str, Any]:
    parsed = Mode.parse(mode)
    if not isinstance(verify_emails, bool):
        raise InvalidLeadError("verify_emails", "verify_emails must be True or False")
    options: dict[str, Any] = {"mode": parsed.value, "verify_emails": verify_emails}
    if providers is not None:
        if isinstance(providers, (str, bytes)) or not isinstance(providers, Iterable):
            raise InvalidLeadError("providers", "providers must be a list of provider names")
        names = list(providers)
        if not all(isinstance(p, str) and p.strip() for p in names):
            raise InvalidLeadError("providers", "every provider must be a non-empty name")
        options["providers"] = names
    if webhook_url is not None:
        problem = _url_problem(webhook_url, "webhook_url")
        if problem is None and len(webhook_url.strip()) > MAX_WEBHOOK_URL_LENGTH:
            problem = f"webhook_url is longer than {MAX_WEBHOOK_URL_LENGTH} characters"
        if problem is not None:
            raise InvalidLeadError("webhook_url", problem)
        options["webhook_url"] = webhook_url.strip()
    return options


def build_find_email_body(
    lead: LeadInput,
    *,
    mode: Mode | str = Mode.PROFESSIONAL,
    verify_emails: bool = True,
    providers: Sequence[str] | None = None,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """The FindEmailRequest body for `/find-email` and `/find-email-async`; validates everything."""
    return {"lead": prepare_lead(lead), **_options(mode, verify_emails, providers, webhook_url)}


def default_refs(count: int) -> list[str]:
    """The join keys used when the caller gives none: "0", "1", ... in input order."""
    return [str(i) for i in range(count)]


def check_lead_list(leads: object) -> None:
    """Raise InvalidLeadError unless `leads` is a list-like of leads (not one lead, not text)."""
    if isinstance(leads, (str, bytes, Mapping)) or not isinstance(leads, Sequence):
        raise InvalidLeadError("leads", "leads must be a list of leads")


def build_bulk_body(
    leads: Sequence[LeadInput],
    refs: Sequence[str],
    *,
    mode: Mode | str = Mode.PROFESSIONAL,
    verify_emails: bool = True,
    providers: Sequence[str] | None = None,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """The FindEmailBulkRequest body: 1 to 100 leads, each carrying its `lead_finder_ref`.

    `refs[i]` is written into lead i (replacing any ref the lead already had); refs must be
    distinct non-empty strings, one per lead.
    """
    check_lead_list(leads)
    if not leads:
        raise InvalidLeadError("leads", "a bulk request needs at least one lead")
    if len(leads) > MAX_BULK_LEADS:
        raise InvalidLeadError(
            "leads", f"at most {MAX_BULK_LEADS} leads per bulk request, got {len(leads)}"
        )
    if isinstance(refs, str) or len(refs) != len(leads):
        raise InvalidLeadError("refs", "give exactly one ref per lead")
    if not all(isinstance(r, str) and r for r in refs) or len(set(refs)) != len(refs):
        raise InvalidLeadError("refs", "refs must be distinct, non-empty strings")
    options = _options(mode, verify_emails, providers, webhook_url)
    body = [{**prepare_lead(lead), REF_FIELD: ref} for lead, ref in zip(leads, refs, strict=True)]
    return {"leads": body, **options}


def chunk_ranges(count: int, size: int = MAX_BULK_LEADS) -> list[range]:
    """Index ranges covering `count` items in chunks of at most `size` (input order)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


# -- responses ---------------------------------------------------------------------------------


def decode_json(body: bytes) -> Any:
    """The JSON value of a response body; ResponseFormatError for HTML, cut or invalid JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ResponseFormatError("the answer is not valid JSON") from exc


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def parse_entries(value: Any, field_name: str) -> tuple[Email, ...]:
    """Emails from an `email` or `personal_email` field.

    Entries are `[address, status, type]` or `[address, status]`; a missing type is inferred from
    the field (`email` -> COMPANY, `personal_email` -> PERSONAL). The raw status is kept as sent
    (CATCH_ALL, RISKY, ... stay readable; display maps them to UNKNOWN). A null field is no emails.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ResponseFormatError(f"{field_name} is not a list of entries")
    inferred = EmailType.PERSONAL if field_name == "personal_email" else EmailType.COMPANY
    emails = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) < 2:
            raise ResponseFormatError(f"an entry of {field_name} is not [address, status, type]")
        address, status = entry[0], entry[1]
        kind = entry[2] if len(entry) >= 3 and entry[2] is not None else inferred.value
        if not all(x is None or isinstance(x, str) for x in (address, status, kind)):
            raise ResponseFormatError(f"an entry of {field_name} holds a non-text value")
        emails.append(Email(_text(address).strip(), _text(status).strip(), _text(kind).upper()))
    return tuple(emails)


def _cents(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return round(value)


def parse_result(data: Any, *, mode: Mode | None = None) -> Result:
    """A `Result` from one result object (the lead's keys echoed, plus `email`, `personal_email`,
    and sometimes `cost_cents`).

    `Result.lead` holds the echoed lead fields; `Result.ref` the echoed `lead_finder_ref`. When
    `mode` is None it is inferred: PERSONAL when the answer has a `personal_email` field. A text
    `email` (the lead's own email echoed without entries) stays in `Result.lead`.
    """
    if not isinstance(data, Mapping):
        raise ResponseFormatError("a result is not a JSON object")
    raw_email = data.get("email")
    echoed_email = isinstance(raw_email, str)
    emails = () if echoed_email else parse_entries(raw_email, "email")
    personal = parse_entries(data.get("personal_email"), "personal_email")
    lead = {k: v for k, v in data.items() if isinstance(k, str) and k not in ANSWER_FIELDS}
    if echoed_email:
        lead["email"] = raw_email
    ref = data.get(REF_FIELD)
    if mode is None:
        mode = Mode.PERSONAL if "personal_email" in data else Mode.PROFESSIONAL
    return Result(
        lead=lead,
        mode=mode,
        emails=emails,
        personal_emails=personal,
        cost_cents=_cents(data.get("cost_cents")),
        source=Source.API,
        ref=None if ref is None else str(ref),
    )


def _result_list(data: Any) -> list[Any] | None:
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        for name in ("results", "leads"):
            if isinstance(data.get(name), list):
                return list(data[name])
    return None


def parse_bulk(data: Any, *, mode: Mode | None = None) -> list[Result]:
    """Results from a bulk answer: a JSON list of result objects, or an object holding that list
    under `results` or `leads`. Order is whatever the API sent; join with `match_by_ref`."""
    items = _result_list(data)
    if items is None:
        raise ResponseFormatError("the bulk answer holds no list of results")
    return [parse_result(item, mode=mode) for item in items]


def match_by_ref(refs: Sequence[str], results: Iterable[Result]) -> list[Result | None]:
    """Results aligned with `refs` by their echoed `lead_finder_ref`, never by position.

    A ref the answer lacks gives None. Unknown refs are ignored and a repeated ref keeps its first
    result. The one exception to "no ref, no match": a single lead answered by a single result.
    """
    found = list(results)
    by_ref: dict[str, Result] = {}
    for result in found:
        if result.ref is not None and result.ref not in by_ref:
            by_ref[result.ref] = result
    if len(refs) == 1 and len(found) == 1 and found[0].ref is None:
        return [found[0]]
    return [by_ref.get(ref) for ref in refs]


def parse_balance(data: Any) -> float:
    """The `credits` number from `/check-balance`."""
    credits = data.get("credits") if isinstance(data, Mapping) else None
    if isinstance(credits, bool) or not isinstance(credits, (int, float)):
        raise ResponseFormatError("the balance answer has no credits number")
    return float(credits)


# -- jobs ----------------------------------------------------------------------------------------


class JobState(enum.StrEnum):
    """Where an async job is: still going, done with results, or ended without them."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


def job_state(status: str) -> JobState:
    """Interpret a raw job status, whatever its case (`RUNNING`, `completed`, `Timed-Out`, ...).

    `completed` is success; `failed`, `cancelled`/`canceled`, `terminated`, `timed_out` and
    `continued_as_new` are failures; anything else (running, pending, queued, processing, or a
    status nobody documented) means keep polling.
    """
    text = status.strip().casefold().replace("-", "_").replace(" ", "_")
    if text in _SUCCESS:
        return JobState.COMPLETED
    if text in _FAILURE:
        return JobState.FAILED
    return JobState.RUNNING


@dataclass(frozen=True)
class Job:
    """An async job as last seen.

    `status` is the raw string the API sent and `state` its meaning. `results` is empty unless the
    job completed: one element for a single-lead job, one per answered lead for a bulk job (each
    with `.ref`). `charge_cents` is `charge_amount` when the API reported it in cents.
    """

    task_id: str
    status: str
    state: JobState
    results: tuple[Result, ...] = ()
    charge_cents: int | None = None
    error: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def parse_submitted(data: Any) -> Job:
    """The job from an async submit answer, `{"task_id": ..., "status": "RUNNING"}`."""
    if not isinstance(data, Mapping):
        raise ResponseFormatError("the submit answer is not a JSON object")
    task_id = data.get("task_id") or data.get("id")
    if not isinstance(task_id, str) or not task_id.strip():
        raise ResponseFormatError("the submit answer has no task_id")
    status = data.get("status")
    status = status if isinstance(status, str) and status.strip() else "RUNNING"
    return Job(task_id=task_id.strip(), status=status, state=job_state(status), raw=dict(data))


def _error_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for name in ("message", "detail", "error"):
            if isinstance(value.get(name), str):
                return str(value[name])
    return json.dumps(value, default=str)[:_DETAIL_LIMIT]


def parse_job(data: Any, *, task_id: str | None = None, mode: Mode | None = None) -> Job:
    """A `Job` from `/job-status/{task_id}`.

    A completed job's `result` is one result object (single job) or a list of them, bare or under
    `results`/`leads` (bulk job). `task_id` is the id we asked for; it wins over the answer's
    `id`. `mode` sets the results' mode; None infers it per result (see `parse_result`).
    """
    if not isinstance(data, Mapping):
        raise ResponseFormatError("the job answer is not a JSON object")
    status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        raise ResponseFormatError("the job answer has no status")
    found_id = task_id or data.get("task_id") or data.get("id")
    if not isinstance(found_id, str) or not found_id:
        raise ResponseFormatError("the job answer has no task id")
    state = job_state(status)
    results: tuple[Result, ...] = ()
    raw_result = data.get("result")
    if state is JobState.COMPLETED and raw_result is not None:
        items = _result_list(raw_result)
        if items is not None:
            results = tuple(parse_result(item, mode=mode) for item in items)
        else:
            results = (parse_result(raw_result, mode=mode),)
    return Job(
        task_id=found_id,
        status=status,
        state=state,
        results=results,
        charge_cents=_cents(data.get("charge_amount")),
        error=_error_text(data.get("error")),
        raw=dict(data),
    )


# -- errors --------------------------------------------------------------------------------------


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def _field_errors(items: list[Any]) -> str:
    parts = []
    for item in items[:5]:
        if isinstance(item, Mapping):
            loc = item.get("loc")
            where = ".".join(str(x) for x in loc) if isinstance(loc, list) else ""
            msg = _text(item.get("msg") or item.get("message") or item.get("type"))
            parts.append(f"{where}: {msg}" if where else msg)
        else:
            parts.append(str(item))
    more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
    return "; ".join(parts) + more


def error_detail(body: bytes) -> tuple[str, Any]:
    """What an error body says, as (short text, parsed detail), for every documented form:
    `{"detail": "text"}`, `{"detail": [field errors]}`, `{"error": type, "message": text}`.
    A body that is not JSON (an HTML error page from a proxy) gives ("", None)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "", None
    if isinstance(data, Mapping):
        detail = data.get("detail")
        if isinstance(detail, str):
            return _clip(detail), detail
        if isinstance(detail, list):
            return _clip(_field_errors(detail)), detail
        message, kind = data.get("message"), data.get("error")
        if isinstance(message, str) or isinstance(kind, str):
            text = ": ".join(x for x in (kind, message) if isinstance(x, str) and x)
            return _clip(text), dict(data)
        if detail is not None:
            return _clip(json.dumps(detail, default=str)), detail
    if isinstance(data, str):
        return _clip(data), data
    return "", data


def status_error_message(status_code: int, method: str, path: str, detail: str) -> str:
    """The user-facing message for an error status: what happened and what to do."""
    said = f": {detail}" if detail else ""
    where = f"{method} {path}"
    if status_code == 400:
        return f"The API rejected the request to {where} (400){said}. Check the lead and options."
    if status_code == 401:
        return (
            "The API key was rejected (401). Check SIXTYFOUR_API_KEY or run "
            "`lead-finder config set-key`."
        )
    if status_code == 402:
        return (
            f"The Sixtyfour account has too few credits or no subscription (402){said}. Top up, "
            "then set the key again (client.api_key = ...) to resume."
        )
    if status_code == 403:
        return f"This API key's plan does not allow {where} (403){said}. Check your Sixtyfour plan."
    if status_code == 404:
        return (
            f"The API does not know {where} (404){said}. A job may have expired; it is not "
            "resubmitted automatically. Otherwise check base_url."
        )
    if status_code == 422:
        return f"The API refused a field (422){said}. Fix the input and try again."
    if status_code == 429:
        return (
            f"The API kept rate-limiting {where} (429){said}. Try again in a minute, or lower "
            "requests_per_minute."
        )
    if status_code >= 500:
        return f"The API failed on {where} ({status_code}){said}. Try again later."
    if 300 <= status_code < 400:
        return (
            f"The API answered {where} with a redirect ({status_code}). lead_finder does not "
            "follow redirects (they would forward the API key): check base_url."
        )
    return f"Unexpected answer {status_code} from {where}{said}."
