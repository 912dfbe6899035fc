"""The one error tree of lead_finder.

Every error the package raises on purpose derives from `LeadFinderError`. Messages are written for
the person using the plugin: what happened, and what to do about it. None of them ever contains the
API key.

    LeadFinderError
    ├── InvalidLeadError            a lead or option is malformed; nothing was sent
    ├── ConfigurationError          no key, a bad base URL, an unreadable config file
    ├── StoreError                  the local cache/ledger cannot be used
    ├── WebhookVerificationError    a webhook signature did not verify
    └── APIError                    talking to the Find Email API went wrong
        ├── TransportError          the request never reached the server (safe to retry)
        ├── AmbiguousRequestError   a POST went out but its answer was lost: it may be billed
        ├── JobError                an async job failed, was cancelled, or outlived our deadline
        │   └── JobTimeoutError
        └── APIStatusError          the server answered with an error status
            ├── BadRequestError         400
            ├── AuthenticationError     401
            ├── InsufficientCreditsError 402
            ├── PermissionDeniedError   403
            ├── NotFoundError           404
            ├── UnprocessableEntityError 422
            ├── RateLimitError          429
            └── ServerError             5xx
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "APIStatusError",
    "AmbiguousRequestError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "InsufficientCreditsError",
    "InvalidLeadError",
    "JobError",
    "JobTimeoutError",
    "LeadFinderError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "StoreError",
    "TransportError",
    "UnprocessableEntityError",
    "WebhookVerificationError",
    "status_error_class",
    "user_message",
]


class LeadFinderError(Exception):
    """Root of every error lead_finder raises on purpose."""


class InvalidLeadError(LeadFinderError, ValueError):
    """A lead field or option is malformed. Nothing was sent and nothing was charged.

    `field` names the input ("name", "company", "mode", ...); `reason` is a short phrase fit for a
    spreadsheet cell ("name is empty").
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(reason)


class ConfigurationError(LeadFinderError):
    """The settings do not allow a lookup (no key, bad base URL, unsafe config file)."""


class StoreError(LeadFinderError):
    """The local cache and ledger file cannot be used (for example it is on a network share)."""


class WebhookVerificationError(LeadFinderError):
    """A webhook delivery's signature is missing, malformed, stale or does not match."""


class APIError(LeadFinderError):
    """Talking to the Find Email API went wrong."""


class TransportError(APIError):
    """The request could not be sent (connection refused, DNS, connect timeout).

    Nothing reached the server, so nothing was billed.
    """


class AmbiguousRequestError(APIError):
    """A billable POST went out but its answer was lost (timeout, dropped connection, bad body).

    The server may already have charged for it. lead_finder never resends such a request on its own.
    """


class JobError(APIError):
    """An async job ended without a result (failed, cancelled, terminated, timed out)."""

    def __init__(self, message: str, *, task_id: str | None = None, status: str | None = None):
        self.task_id = task_id
        self.status = status
        super().__init__(message)


class JobTimeoutError(JobError):
    """We stopped waiting for a job at our own deadline. It may still finish: poll it later."""


class APIStatusError(APIError):
    """The API answered with an error status code."""

    status_code: int = 0

    def __init__(self, message: str, *, status_code: int, detail: Any = None) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(message)


class BadRequestError(APIStatusError):
    """400: the request body was rejected."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class InsufficientCreditsError(APIStatusError):
    """402: not enough credits, or no subscription."""


class PermissionDeniedError(APIStatusError):
    """403: the plan does not include this feature."""


class NotFoundError(APIStatusError):
    """404: the job is unknown or has expired."""


class UnprocessableEntityError(APIStatusError):
    """422: a field failed validation."""


class RateLimitError(APIStatusError):
    """429: too many requests for this key."""


class ServerError(APIStatusError):
    """5xx: the API failed on its side."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, APIStatusError)


def user_message(exc: BaseException) -> str:
    """A one-line reason fit for a cell or a row: never a traceback, never the key."""
    if isinstance(exc, InvalidLeadError):
        return exc.reason
    if isinstance(exc, AuthenticationError):
        return "API key rejected: check SIXTYFOUR_API_KEY"
    if isinstance(exc, InsufficientCreditsError):
        return "no credits left on the API account"
    if isinstance(exc, LeadFinderError):
        return str(exc) or type(exc).__name__
    return "unexpected error: " + type(exc).__name__
