"""When to try a request again, how long to wait, and how to share a key's rate limit.

Everything here is a pure decision (plus one small lock-protected throttle), so the whole retry
policy can be tested as a table without sockets or clocks. The policy, from SIXTYFOUR_API.md:

| What happened                                                  | GET   | POST             |
|----------------------------------------------------------------|-------|------------------|
| ConnectError / ConnectTimeout / PoolTimeout (nothing was sent) | retry | retry            |
| 429 (not processed)                                            | retry | retry            |
| 5xx                                                            | retry | never: ambiguous |
| answer lost: read timeout, dropped connection, truncated body, | retry | never: ambiguous |
|   200 with HTML or bad JSON, our own total deadline            |       |                  |
| any other status (3xx, 400, 401, 402, 403, 404, 422, ...)      | no    | no               |

The find-email endpoints have no idempotency key, so a POST that may have reached the server is
never resent on our own: that could bill the same lead twice.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import math
import re
import threading
from collections.abc import Callable, Hashable

import httpx

__all__ = [
    "INITIAL_RETRY_DELAY",
    "JITTER",
    "MAX_BACKOFF_DELAY",
    "MAX_RETRY_AFTER",
    "SAFE_METHODS",
    "KeyThrottle",
    "is_ambiguous",
    "is_connect_phase",
    "key_fingerprint",
    "parse_retry_after",
    "retry_delay",
    "should_retry",
    "throttle_for",
]

#: First backoff delay in seconds when the server gave no Retry-After; doubles per attempt.
INITIAL_RETRY_DELAY = 0.5
#: Ceiling of the exponential backoff, in seconds.
MAX_BACKOFF_DELAY = 8.0
#: Longest Retry-After we honour, in seconds: a larger (or absurd) value is capped to this.
MAX_RETRY_AFTER = 60.0
#: Backoff delays are drawn from [(1 - JITTER) * delay, delay] so callers do not retry in lockstep.
JITTER = 0.25
#: Methods that are safe to send again whatever happened to the first try (they bill nothing).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Errors raised before the request left this machine: the server cannot have seen it.
_CONNECT_PHASE: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
_DELAY_SECONDS = re.compile(r"\d{1,12}(?:\.\d{1,6})?")


def is_connect_phase(error: BaseException) -> bool:
    """True for errors raised before anything was sent (connect error/timeout, pool timeout)."""
    return isinstance(error, _CONNECT_PHASE)


def should_retry(method: str, status_code: int | None, error: BaseException | None) -> bool:
    """Whether an attempt that ended this way may be sent again (attempt budget aside).

    `error` is the exception that ended the attempt (an httpx transport error, our own deadline, a
    body that is not the JSON we expected) or None when a complete answer with `status_code` came
    back. See the module docstring for the table.
    """
    safe = method.upper() in SAFE_METHODS
    if error is not None:
        return is_connect_phase(error) or safe
    if status_code is None:
        return False
    if status_code == 429:
        return True
    if status_code >= 500:
        return safe
    return False


def is_ambiguous(method: str, status_code: int | None, error: BaseException | None) -> bool:
    """Whether a request may have been processed (and billed) although we got no usable answer.

    Only unsafe methods (POST) can be ambiguous: after a connect-phase error nothing was sent,
    after a 429 nothing was processed, and any other 4xx is a definite refusal.
    """
    if method.upper() in SAFE_METHODS:
        return False
    if error is not None:
        return not is_connect_phase(error)
    return status_code is not None and status_code >= 500


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header value, or None when absent or unreadable.

    Accepts delay-seconds (`"7"`) and an HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`), read
    against `now` (Unix seconds; the response's Date header when it has one). A date in the past
    means "now" (0). Negative numbers and garbage are None, so the caller backs off on its own.
    Capping huge values is `retry_delay`'s job.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    if text[0] in "+-" or text[0].isdigit():
        return None  # "-5", "1e9", "12abc": not a delay and not a date
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None instead of raising
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown local zone (RFC 5322)
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def retry_delay(attempt: int, retry_after: float | None, rng: Callable[[], float]) -> float:
    """Seconds to wait before retry number `attempt + 1` (`attempt` counts from 0).

    A server-given Retry-After wins, capped at MAX_RETRY_AFTER. Otherwise exponential backoff
    from INITIAL_RETRY_DELAY up to MAX_BACKOFF_DELAY, scaled by a jitter factor in
    [1 - JITTER, 1] drawn from `rng` (a `random.random`-like callable returning [0, 1)).
    """
    if retry_after is not None and retry_after >= 0:  # NaN compares False: falls through
        return min(retry_after, MAX_RETRY_AFTER)
    base = min(INITIAL_RETRY_DELAY * 2.0 ** min(attempt, 32), MAX_BACKOFF_DELAY)
    return base * (1.0 - JITTER * rng())


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible name for an API key (sha256 prefix), safe to show and to log."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]


class KeyThrottle:
    """The request pace shared by every client in this process that uses one API key.

    Two things slow requests down: proactive pacing (request starts at least `interval` apart, so
    500 requests/minute is never exceeded by this process), and a block after a 429 that holds back
    every caller until the server's Retry-After (or our backoff) has passed. Times are readings of
    the clock the throttle was made for; methods are thread-safe and never sleep themselves.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_slot = -math.inf
        self._blocked_until = -math.inf

    def reserve(self, now: float, interval: float) -> float:
        """Claim the next send slot; returns the clock time at which the caller may send."""
        with self._lock:
            start = max(now, self._next_slot, self._blocked_until)
            self._next_slot = start + interval
            return start

    def block(self, until: float) -> None:
        """Hold every caller back until the clock reads `until` (after a 429)."""
        with self._lock:
            if until > self._blocked_until:
                self._blocked_until = until

    @property
    def blocked_until(self) -> float:
        """The clock time before which nobody may send (-inf when not blocked)."""
        with self._lock:
            return self._blocked_until


# Kept for the life of the process: a 429 must still hold back a client created after the one
# that received it was closed. There is one entry per key (and clock), so this stays tiny.
_THROTTLES: dict[tuple[str, Hashable], KeyThrottle] = {}
_THROTTLES_LOCK = threading.Lock()


def throttle_for(api_key: str, clock: Callable[[], float]) -> KeyThrottle:
    """The process-wide throttle for `api_key`, keyed by a hash of the key (never the key itself).

    Clients that read different clocks get different throttles: their times cannot be compared.
    In production every client uses `time.monotonic`, so all callers sharing a key share one.
    """
    ident: Hashable
    try:
        hash(clock)
        ident = clock
    except TypeError:
        ident = id(clock)
    key = (key_fingerprint(api_key), ident)
    with _THROTTLES_LOCK:
        throttle = _THROTTLES.get(key)
        if throttle is None:
            throttle = KeyThrottle()
            _THROTTLES[key] = throttle
        return throttle
