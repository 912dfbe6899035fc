"""The client core: every operation written once, as a generator of I/O requests.

Every operation is a *flow*: a generator that yields what it needs done (`Send` a request,
`Sleep` a while) and receives the outcome, like httpx's `auth_flow`. Retries, pacing, the 429
throttle, job polling and bulk chunking live in the flows. `Client` (in `_client`) drives them
with blocking I/O and `time.sleep`; `AsyncClient` with `await`. The drivers only send, read the
body under our own deadline (`BodyReader`), sleep and close.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx

from ..errors import (
    AmbiguousRequestError,
    APIError,
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    InsufficientCreditsError,
    InvalidLeadError,
    JobError,
    JobTimeoutError,
    RateLimitError,
    TransportError,
    status_error_class,
)
from ..models import Mode, Result
from . import _protocol as proto
from ._protocol import REF_FIELD, Job, JobState, LeadInput
from ._retry import (
    is_ambiguous,
    is_connect_phase,
    key_fingerprint,
    parse_retry_after,
    retry_delay,
    should_retry,
    throttle_for,
)

__all__ = [
    "BaseClient",
    "BodyReader",
    "BodyTooLarge",
    "DeadlineExceeded",
    "Flow",
    "Outcome",
    "Reply",
    "Send",
    "Sleep",
]

log = logging.getLogger("lead_finder.sixtyfour")

T = TypeVar("T")

#: Each poll waits this much longer than the one before, up to `poll_max_interval`.
POLL_BACKOFF: Final = 1.5
#: Largest response body we read; the biggest real answer (100 results) is far smaller.
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_COST_UNITS = ("cents", "credits")


def _user_agent() -> str:
    try:
        version = metadata.version("lead-finder")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "0"
    return f"lead-finder/{version}"


class _Secret:
    """Holds the API key so that repr(), vars() and debuggers show a mask instead."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("the API key cannot be pickled")


def _clean_key(api_key: object) -> str:
    if not isinstance(api_key, str) or not api_key.strip():
        raise ConfigurationError(
            "No API key: pass api_key=, set SIXTYFOUR_API_KEY or run `lead-finder config set-key`."
        )
    key = api_key.strip()
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigurationError(
            "The API key contains spaces or characters that cannot be sent in a header; copy it "
            "again from the Sixtyfour dashboard."
        )
    return key


# -- what a flow asks for and what it gets back -------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    billable: bool = False  # held back after a 402 (polling and balance stay allowed)


@dataclass(frozen=True)
class Send:
    call: Call
    deadline: float  # clock reading by which the whole answer must be in


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: httpx.Headers
    body: bytes


Action = Send | Sleep
Outcome = Reply | Exception | None
Flow = Generator[Action, Outcome, T]


class DeadlineExceeded(Exception):
    """The answer did not arrive in full within our total per-attempt deadline."""


class BodyTooLarge(Exception):
    """The answer was larger than any real answer can be."""


class BodyReader:
    """Collects a streamed body, enforcing the total deadline between chunks.

    httpx's read timeout restarts with every chunk, so a server that trickles one byte at a time
    would otherwise hold us forever.
    """

    def __init__(self, deadline: float, clock: Callable[[], float], timeout: float) -> None:
        self._deadline = deadline
        self._clock = clock
        self._timeout = timeout
        self._parts: list[bytes] = []
        self._size = 0

    def check(self) -> None:
        if self._clock() > self._deadline:
            raise DeadlineExceeded(f"no complete answer within {self._timeout:g} s")

    def add(self, chunk: bytes) -> None:
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"the answer is larger than {MAX_BODY_BYTES} bytes")
        self.check()

    def body(self) -> bytes:
        return b"".join(self._parts)


def _describe(error: BaseException) -> str:
    """A short reason for a failed attempt, fit for a message (never headers, never the key)."""
    if isinstance(error, (DeadlineExceeded, BodyTooLarge, proto.ResponseFormatError)):
        return str(error)
    if isinstance(error, httpx.TimeoutException):
        return f"{type(error).__name__}: timed out"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the connection was dropped or the answer was cut short"
    text = str(error).strip()
    text = text if len(text) <= 200 else text[:199] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _wall_now(headers: httpx.Headers) -> float:
    """Unix time to read an HTTP-date Retry-After against: the answer's Date header if any."""
    date = headers.get("date")
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return time.time()


def _short_reason(exc: APIError) -> str:
    """A phrase fit for a cell, for a lead whose bulk chunk failed."""
    if isinstance(exc, AmbiguousRequestError):
        return "the answer was lost after the request was sent; it may have been charged"
    if isinstance(exc, AuthenticationError):
        return "API key rejected: check SIXTYFOUR_API_KEY"
    if isinstance(exc, InsufficientCreditsError):
        return "no credits left on the API account"
    if isinstance(exc, RateLimitError):
        return "rate limited by the API: try again later"
    if isinstance(exc, TransportError):
        return "could not reach the API"
    return str(exc)


# -- the shared core -----------------------------------------------------------------------------


class BaseClient:
    """Configuration, key handling and every flow; no I/O of its own."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        requests_per_minute: float,
        poll_interval: float,
        poll_max_interval: float,
        clock: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self._key = _Secret(_clean_key(api_key))
        self._base_url = proto.validate_base_url(base_url)
        for name, value in (
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("requests_per_minute", requests_per_minute),
            ("poll_interval", poll_interval),
            ("poll_max_interval", poll_max_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number, not {value!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, not {max_retries!r}")
        self._timeout = float(timeout)
        self._connect_timeout = float(connect_timeout)
        self._max_retries = max_retries
        self._interval = 60.0 / requests_per_minute if math.isfinite(requests_per_minute) else 0.0
        self._poll_interval = float(poll_interval)
        self._poll_max_interval = max(float(poll_max_interval), self._poll_interval)
        self._clock = clock
        self._rng = rng
        self._throttle = throttle_for(self._key.reveal(), clock)
        # After a 401 (every call) or a 402 (billable calls) nothing is sent until the key is set.
        self._latched: APIStatusError | None = None

    # -- key and settings ------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The API key. Setting it (even to the same value) lifts the stop after a 401/402."""
        return self._key.reveal()

    @api_key.setter
    def api_key(self, value: str) -> None:
        self._key = _Secret(_clean_key(value))
        self._throttle = throttle_for(self._key.reveal(), self._clock)
        self._latched = None

    @property
    def base_url(self) -> str:
        """The API's base URL (no trailing slash)."""
        return self._base_url

    def __repr__(self) -> str:
        fingerprint = key_fingerprint(self._key.reveal())
        return f"<{type(self).__name__} base_url={self._base_url!r} key=sha256:{fingerprint}>"

    def _httpx_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "base_url": self._base_url,
            "timeout": httpx.Timeout(self._timeout, connect=self._connect_timeout),
            # A redirect would carry x-api-key to wherever it points: treat 3xx as an error.
            "follow_redirects": False,
            "headers": {"user-agent": _user_agent(), "accept": "application/json"},
        }
        url = httpx.URL(self._base_url)
        if proto.is_loopback(url.host):
            # HTTP(S)_PROXY still applies to the hosted API, but a server on this machine is
            # reached directly: a proxy could not reach it, and over plain http it would read
            # x-api-key. (A None mount means "no proxy"; SSL_CERT_FILE and friends still apply.)
            options["mounts"] = {f"all://{url.netloc.decode('ascii')}": None}
        return options

    def _request_headers(self) -> dict[str, str]:
        return {"x-api-key": self._key.reveal()}

    def _redact(self, text: str) -> str:
        """Remove the key from server-provided text (a hostile or buggy server could echo it)."""
        key = self._key.reveal()
        return text.replace(key, "***") if key in text else text

    def _redact_value(self, value: Any) -> Any:
        """`_redact` through a parsed JSON value (an error's `detail`)."""
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, Mapping):
            return {k: self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_value(v) for v in value]
        return value

    # -- the request flow: pacing, retries, error mapping ---------------------------------------

    def _check_latch(self, call: Call) -> None:
        latched = self._latched
        if latched is None:
            return
        if isinstance(latched, AuthenticationError) or call.billable:
            raise type(latched)(
                f"{latched} Not sent: an earlier call was refused with "
                f"{latched.status_code}; set client.api_key to try again.",
                status_code=latched.status_code,
                detail=latched.detail,
            )

    def _pace(self) -> Flow[None]:
        """Wait for this key's next send slot, and behind any 429 block set meanwhile."""
        start = self._throttle.reserve(self._clock(), self._interval)
        while True:
            now = self._clock()
            if self._throttle.blocked_until > start:  # a 429 arrived while we waited: queue again
                start = self._throttle.reserve(now, self._interval)
                continue
            if start <= now:
                return
            yield Sleep(start - now)

    def _request(self, call: Call, parse: Callable[[Any], T]) -> Flow[T]:
        """Send `call` until it succeeds or must not be tried again; return `parse(json)`."""
        attempt = 0
        while True:
            self._check_latch(call)
            yield from self._pace()
            started = self._clock()
            outcome = yield Send(call, started + self._timeout)
            elapsed = self._clock() - started
            status: int | None = None
            error: Exception | None = None
            headers = httpx.Headers()
            if isinstance(outcome, Reply):
                status, headers = outcome.status_code, outcome.headers
                log.debug(
                    "%s %s -> %d in %.2fs (attempt %d)",
                    call.method, call.path, status, elapsed, attempt + 1,
                )
                if 200 <= status < 300:
                    try:
                        return parse(proto.decode_json(outcome.body))
                    except proto.ResponseFormatError as exc:
                        error = exc
            elif isinstance(outcome, Exception):
                error = outcome
                log.debug(
                    "%s %s failed after %.2fs (attempt %d): %s",
                    call.method, call.path, elapsed, attempt + 1,
                    self._redact(_describe(outcome)),
                )
            else:  # pragma: no cover - a driver bug
                raise RuntimeError("the driver sent no outcome")

            retry_after: float | None = None
            if error is None and status is not None and (status == 429 or status >= 500):
                retry_after = parse_retry_after(headers.get("retry-after"), now=_wall_now(headers))
            delay = retry_delay(attempt, retry_after, self._rng)
            if error is None and status == 429:
                # Slow every caller sharing this key, not only this one.
                self._throttle.block(self._clock() + delay)
            if attempt < self._max_retries and should_retry(call.method, status, error):
                log.info(
                    "%s %s: %s; retrying in %.1fs (retry %d of %d)",
                    call.method, call.path,
                    self._redact(_describe(error)) if error is not None else f"status {status}",
                    delay, attempt + 1, self._max_retries,
                )
                attempt += 1
                if status != 429 or error is not None:
                    yield Sleep(delay)  # after a 429 the throttle block does the waiting
                continue
            raise self._failure(call, outcome, status, error, attempt + 1)

    def _failure(
        self,
        call: Call,
        outcome: Outcome,
        status: int | None,
        error: Exception | None,
        attempts: int,
    ) -> APIError:
        """The exception for an attempt that will not be retried."""
        where = f"{call.method} {call.path}"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if error is not None:
            reason = self._redact(_describe(error))
            if is_ambiguous(call.method, status, error):
                return AmbiguousRequestError(
                    f"{where} was sent but its answer was lost ({reason}). It may have been "
                    "billed, so lead_finder did not resend it; check your Sixtyfour usage before "
                    "trying again."
                )
            host = httpx.URL(self._base_url).host
            if is_connect_phase(error) or isinstance(
                error, (httpx.ProxyError, httpx.UnsupportedProtocol)
            ):
                return TransportError(
                    f"Could not reach the API at {host}{tries} ({reason}). Nothing was sent or "
                    "billed; check the network connection and base_url."
                )
            return APIError(f"{where} got no usable answer{tries} ({reason}). Try again later.")

        assert isinstance(outcome, Reply) and status is not None
        text, detail = proto.error_detail(outcome.body)
        text, detail = self._redact(text), self._redact_value(detail)
        if is_ambiguous(call.method, status, None):
            said = f": {text}" if text else ""
            return AmbiguousRequestError(
                f"The API failed on {where} ({status}){said}. The lookup may have been billed, "
                "so lead_finder did not resend it; check your Sixtyfour usage before trying again."
            )
        message = proto.status_error_message(status, call.method, call.path, text)
        if attempts > 1 and (status == 429 or status >= 500):
            message = message.rstrip(".") + f" ({attempts} attempts)."
        exc = status_error_class(status)(message, status_code=status, detail=detail)
        if status == 401 or status == 402:
            self._latched = exc
        return exc

    # -- operations, as flows -------------------------------------------------------------------

    def _find_email(
        self,
        lead: LeadInput,
        mode: Mode | str,
        verify_emails: bool,
        providers: Sequence[str] | None,
    ) -> Flow[Result]:
        body = proto.build_find_email_body(
            lead, mode=mode, verify_emails=verify_emails, providers=providers
        )
        parsed_mode = Mode.parse(mode)
        sent = {k: v for k, v in body["lead"].items() if k != REF_FIELD}

        def parse(data: Any) -> Result:
            result = proto.parse_result(data, mode=parsed_mode)
            # The user's text as sent wins; fields the API added to its echo are kept.
            return replace(result, lead={**result.lead, **sent})

        return self._request(Call("POST", "/find-email", json=body, billable=True), parse)

    def _find_email_async(
        self,
        lead: LeadInput,
        mode: Mode | str,
        verify_emails: bool,
        providers: Sequence[str] | None,
        webhook_url: str | None,
    ) -> Flow[Job]:
        body = proto.build_find_email_body(
            lead, mode=mode, verify_emails=verify_emails, providers=providers,
            webhook_url=webhook_url,
        )
        call = Call("POST", "/find-email-async", json=body, billable=True)
        return self._request(call, proto.parse_submitted)

    def _find_email_bulk(
        self,
        leads: Sequence[LeadInput],
        mode: Mode | str,
        verify_emails: bool,
        providers: Sequence[str] | None,
    ) -> Flow[list[Result]]:
        proto.check_lead_list(leads)
        parsed_mode = Mode.parse(mode)
        refs = proto.default_refs(len(leads))
        chunks = proto.chunk_ranges(len(leads))
        # Build (and so validate) every chunk before sending the first one.
        bodies = [
            proto.build_bulk_body(
                [leads[i] for i in chunk], [refs[i] for i in chunk],
                mode=parsed_mode, verify_emails=verify_emails, providers=providers,
            )
            for chunk in chunks
        ]
        return self._bulk_chunks(bodies, chunks, refs, parsed_mode)

    def _bulk_chunks(
        self,
        bodies: list[dict[str, Any]],
        chunks: list[range],
        refs: list[str],
        mode: Mode,
    ) -> Flow[list[Result]]:
        results: list[Result | None] = [None] * len(refs)
        first_error: APIError | None = None
        answered = False
        for body, chunk in zip(bodies, chunks, strict=True):
            sent = [{k: v for k, v in lead.items() if k != REF_FIELD} for lead in body["leads"]]
            call = Call("POST", "/find-email-bulk", json=body, billable=True)
            try:
                found = yield from self._request(
                    call, lambda data: proto.parse_bulk(data, mode=mode)
                )
            except APIError as exc:
                # Keep the chunks already paid for; the leads of this one say what went wrong.
                log.warning("bulk chunk of %d leads failed: %s", len(chunk), type(exc).__name__)
                first_error = first_error or exc
                extra = {"error_type": type(exc).__name__,
                         "ambiguous": isinstance(exc, AmbiguousRequestError)}
                for i, lead in zip(chunk, sent, strict=True):
                    results[i] = replace(
                        Result.failed(lead, _short_reason(exc), mode=mode), extra=extra
                    )
                continue
            answered = True
            chunk_refs = [refs[i] for i in chunk]
            matched = proto.match_by_ref(chunk_refs, found)
            unmatched = len(found) - sum(m is not None for m in matched)
            if unmatched > 0:
                log.warning("the bulk answer held %d results that match no lead", unmatched)
            for i, lead, ref, result in zip(chunk, sent, chunk_refs, matched, strict=True):
                if result is None:
                    results[i] = Result.failed(lead, "the API sent no answer for this lead",
                                               mode=mode)
                else:
                    results[i] = replace(result, lead={**result.lead, **lead}, ref=ref)
        if not answered and first_error is not None:
            raise first_error
        return [r for r in results if r is not None]

    def _find_email_bulk_async(
        self,
        leads: Sequence[LeadInput],
        refs: Sequence[str] | None,
        mode: Mode | str,
        verify_emails: bool,
        providers: Sequence[str] | None,
        webhook_url: str | None,
    ) -> Flow[Job]:
        proto.check_lead_list(leads)
        body = proto.build_bulk_body(
            leads, proto.default_refs(len(leads)) if refs is None else refs,
            mode=mode, verify_emails=verify_emails, providers=providers, webhook_url=webhook_url,
        )
        call = Call("POST", "/find-email-bulk-async", json=body, billable=True)
        return self._request(call, proto.parse_submitted)

    def _job_status(self, task_id: str, cost_units: str, mode: Mode | str | None) -> Flow[Job]:
        if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > 256:
            raise InvalidLeadError("task_id", "task_id must be the id returned by a submit")
        if not task_id.isprintable():
            raise InvalidLeadError("task_id", "task_id contains control characters")
        if cost_units not in _COST_UNITS:
            raise InvalidLeadError("cost_units", "cost_units must be 'cents' or 'credits'")
        parsed_mode = None if mode is None else Mode.parse(mode)
        task_id = task_id.strip()
        call = Call(
            "GET", f"/job-status/{quote(task_id, safe='')}", params={"cost_units": cost_units}
        )
        return self._request(
            call, lambda data: proto.parse_job(data, task_id=task_id, mode=parsed_mode)
        )

    def _wait(
        self,
        task_id: str,
        timeout: float | None,
        on_poll: Callable[[Job], None] | None,
        mode: Mode | str | None,
    ) -> Flow[Job]:
        if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
            raise InvalidLeadError("timeout", "timeout must be a number of seconds or None")
        first = self._job_status(task_id, "cents", mode)  # validates before any request
        return self._poll(task_id, first, timeout, on_poll, mode)

    def _poll(
        self,
        task_id: str,
        first: Flow[Job],
        timeout: float | None,
        on_poll: Callable[[Job], None] | None,
        mode: Mode | str | None,
    ) -> Flow[Job]:
        deadline = None if timeout is None else self._clock() + timeout
        interval = self._poll_interval
        status_flow = first
        while True:
            job = yield from status_flow
            if on_poll is not None:
                on_poll(job)
            if job.state is JobState.COMPLETED:
                if not job.results:
                    log.warning("job %s completed without results", job.task_id)
                return job
            if job.state is JobState.FAILED:
                why = f": {self._redact(job.error)}" if job.error else ""
                raise JobError(
                    f"Job {job.task_id} ended with status {job.status!r}{why}. lead_finder does "
                    "not resubmit it; submit the leads again if you want to pay for another try.",
                    task_id=job.task_id,
                    status=job.status,
                )
            now = self._clock()
            if deadline is not None and now >= deadline:
                raise JobTimeoutError(
                    f"Stopped waiting for job {job.task_id} after {timeout:g} s; it is still "
                    f"{job.status!r} on the server and may finish later. Call wait() or "
                    "job_status() again to collect it (it is not resubmitted).",
                    task_id=job.task_id,
                    status=job.status,
                )
            pause = interval if deadline is None else min(interval, deadline - now)
            yield Sleep(pause)
            interval = min(interval * POLL_BACKOFF, self._poll_max_interval)
            status_flow = self._job_status(task_id, "cents", mode)

    def _check_balance(self) -> Flow[float]:
        return self._request(Call("GET", "/check-balance"), proto.parse_balance)
