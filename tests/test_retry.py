"""The retry policy as tables: which outcomes are retried, how long we wait, who shares a key."""

from __future__ import annotations

import email.utils
import math

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lead_finder.sixtyfour import _retry
from lead_finder.sixtyfour._protocol import ResponseFormatError
from lead_finder.sixtyfour._retry import (
    INITIAL_RETRY_DELAY,
    JITTER,
    MAX_BACKOFF_DELAY,
    MAX_RETRY_AFTER,
    KeyThrottle,
    is_ambiguous,
    parse_retry_after,
    retry_delay,
    should_retry,
    throttle_for,
)

NOW = 1_700_000_000.0

# The documented table (SIXTYFOUR_API.md "Errors"), by status range: (statuses, GET?, POST?).
STATUS_TABLE = [
    (range(100, 200), False, False),  # informational: never a final answer worth retrying
    (range(200, 300), False, False),  # success
    (range(300, 400), False, False),  # redirects are errors, never followed or retried
    (range(400, 429), False, False),  # 400, 401, 402, 403, 404, 408, 422, ...: a definite refusal
    (range(429, 430), True, True),  # 429: not processed, so safe for POST too
    (range(430, 500), False, False),
    (range(500, 600), True, False),  # 5xx: GET retried; a POST may have been billed
]


def test_status_table_covers_100_to_599_once() -> None:
    covered = [s for statuses, _, _ in STATUS_TABLE for s in statuses]
    assert covered == list(range(100, 600))


@pytest.mark.parametrize(("statuses", "get", "post"), STATUS_TABLE)
def test_should_retry_by_status(statuses: range, get: bool, post: bool) -> None:
    for status in statuses:
        assert should_retry("GET", status, None) is get, status
        assert should_retry("POST", status, None) is post, status
        assert should_retry("post", status, None) is post, status  # method case does not matter


@pytest.mark.parametrize(("statuses", "get", "post"), STATUS_TABLE)
def test_ambiguous_by_status(statuses: range, get: bool, post: bool) -> None:
    for status in statuses:
        assert is_ambiguous("GET", status, None) is False
        assert is_ambiguous("POST", status, None) is (status >= 500), status


REQUEST = httpx.Request("POST", "https://api.sixtyfour.ai/find-email")
CONNECT_PHASE = [
    httpx.ConnectError("refused", request=REQUEST),
    httpx.ConnectTimeout("connect timed out", request=REQUEST),
    httpx.PoolTimeout("no free connection", request=REQUEST),
]
ANSWER_LOST = [
    httpx.ReadTimeout("read timed out", request=REQUEST),
    httpx.WriteTimeout("write timed out", request=REQUEST),
    httpx.RemoteProtocolError("peer closed connection", request=REQUEST),
    httpx.ReadError("connection reset", request=REQUEST),
    httpx.WriteError("broken pipe", request=REQUEST),
    ResponseFormatError("the answer is not valid JSON"),  # 200 with HTML or cut JSON
]


@pytest.mark.parametrize("error", CONNECT_PHASE, ids=lambda e: type(e).__name__)
def test_connect_phase_errors_are_retried_for_every_method(error: Exception) -> None:
    assert should_retry("GET", None, error)
    assert should_retry("POST", None, error)
    assert not is_ambiguous("POST", None, error)


@pytest.mark.parametrize("error", ANSWER_LOST, ids=lambda e: type(e).__name__)
def test_lost_answers_are_retried_for_get_and_ambiguous_for_post(error: Exception) -> None:
    assert should_retry("GET", None, error)
    assert not should_retry("POST", None, error)
    assert is_ambiguous("POST", None, error)
    assert not is_ambiguous("GET", None, error)
    # A 200 whose body is bad is the same case.
    assert not should_retry("POST", 200, error)
    assert is_ambiguous("POST", 200, error)


def test_no_status_and_no_error_is_not_retried() -> None:
    assert not should_retry("GET", None, None)
    assert not is_ambiguous("POST", None, None)


# -- Retry-After -----------------------------------------------------------------------------


def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("99999999", 99999999.0),  # huge: parsed as is, capped by retry_delay
        (_http_date(NOW + 30), 30.0),
        (_http_date(NOW - 30), 0.0),  # a date in the past means "now"
        ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("-5", None),  # negative: garbage, back off on our own
        ("+5", None),
        ("1e3", None),
        ("5 seconds", None),
        ("soon", None),
        ("Mon, 99 Foo 2024 99:99:99 GMT", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    parsed = parse_retry_after(value, now=NOW)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(expected)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(0.0, 0.0), (7.0, 7.0), (MAX_RETRY_AFTER, MAX_RETRY_AFTER), (99999999.0, MAX_RETRY_AFTER),
     (math.inf, MAX_RETRY_AFTER)],
)
def test_retry_after_is_honoured_and_capped(retry_after: float, expected: float) -> None:
    assert retry_delay(0, retry_after, lambda: 0.9) == expected
    assert retry_delay(5, retry_after, lambda: 0.1) == expected


def test_negative_or_nan_retry_after_falls_back_to_backoff() -> None:
    assert retry_delay(0, -3.0, lambda: 0.0) == INITIAL_RETRY_DELAY
    assert retry_delay(0, math.nan, lambda: 0.0) == INITIAL_RETRY_DELAY


def test_backoff_doubles_up_to_the_ceiling_without_jitter() -> None:
    delays = [retry_delay(attempt, None, lambda: 0.0) for attempt in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert retry_delay(10_000, None, lambda: 0.0) == MAX_BACKOFF_DELAY


@given(attempt=st.integers(0, 200), draw=st.floats(0.0, 1.0, exclude_max=True))
def test_jitter_stays_in_band(attempt: int, draw: float) -> None:
    base = min(INITIAL_RETRY_DELAY * 2**attempt, MAX_BACKOFF_DELAY)
    delay = retry_delay(attempt, None, lambda: draw)
    assert (1 - JITTER) * base <= delay <= base


def test_jitter_spreads_callers() -> None:
    low = retry_delay(2, None, lambda: 0.999)
    high = retry_delay(2, None, lambda: 0.0)
    assert high == 2.0
    assert low == pytest.approx(2.0 * (1 - JITTER * 0.999))


# -- the per-key throttle ----------------------------------------------------------------------


def test_throttle_spaces_request_starts() -> None:
    throttle = KeyThrottle()
    starts = [throttle.reserve(100.0, 0.5) for _ in range(4)]
    assert starts == [100.0, 100.5, 101.0, 101.5]
    assert throttle.reserve(200.0, 0.5) == 200.0  # idle time is not banked as a burst


def test_throttle_block_holds_back_later_reservations() -> None:
    throttle = KeyThrottle()
    throttle.block(130.0)
    throttle.block(120.0)  # an earlier end never shortens a block
    assert throttle.blocked_until == 130.0
    assert throttle.reserve(100.0, 0.1) == 130.0
    assert throttle.reserve(100.0, 0.1) == pytest.approx(130.1)


class _Clock:
    def __call__(self) -> float:
        return 0.0


def test_throttles_are_shared_per_key_and_clock() -> None:
    clock, other_clock = _Clock(), _Clock()
    key = "sk64_CANARY_0123456789"
    first = throttle_for(key, clock)
    assert throttle_for(key, clock) is first
    assert throttle_for(key + "x", clock) is not first
    assert throttle_for(key, other_clock) is not first
    registry_keys = [name for name, _ in _retry._THROTTLES.keys()]
    assert key not in registry_keys  # indexed by a hash of the key, never the key
    assert _retry.key_fingerprint(key) in registry_keys
