"""What happens to a request before it reaches a route: counting, the API key, the rate limit and
the test-only fault switches.

This is pure ASGI middleware rather than FastAPI dependencies because a few faults (`truncate`,
`slow`, `hang`) have to take the response apart after the route has built it, and because the key
and the rate limit must be checked before the body is parsed (a bad key is a 401, never a 422).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ENDPOINTS",
    "FAULTS",
    "FaultPlan",
    "Gateway",
    "KeyRing",
    "SlidingWindowLimiter",
    "Stats",
]

log = logging.getLogger("lead_finder.server")

#: The six Sixtyfour endpoints, by (method, first path segment), as counted in `Stats.requests`.
ENDPOINTS: Mapping[tuple[str, str], str] = {
    ("POST", "find-email"): "/find-email",
    ("POST", "find-email-async"): "/find-email-async",
    ("POST", "find-email-bulk"): "/find-email-bulk",
    ("POST", "find-email-bulk-async"): "/find-email-bulk-async",
    ("GET", "job-status"): "/job-status",
    ("GET", "check-balance"): "/check-balance",
}

#: Paths that need no key: the schema only (it holds nothing secret).
_OPEN_PATHS = frozenset({"/openapi.json"})

#: Test-only faults, chosen with the `x-lf-fault` header or with seeded rates.
FAULTS = (
    "429",  # 429 without Retry-After; nothing done
    "429-retry-after",  # 429 with Retry-After (seconds from `x-lf-retry-after`, default 1)
    "500",  # the work is done and billed, then a JSON 500 (the dangerous case for a POST)
    "503",  # a JSON 503 before any work; nothing billed
    "html200",  # work done and billed, then 200 with an HTML page
    "badjson",  # work done and billed, then 200 with the JSON document cut in half
    "truncate",  # work done and billed; the full Content-Length is declared, half is sent, the
    # connection is dropped
    "slow",  # work done and billed; the body trickles out one byte per `slow_interval` seconds
    "hang",  # work done and billed; no answer ever (until the client goes away)
    "redirect",  # 302 to another host before any work (a client that follows leaks its key)
    "shuffle",  # bulk results in random order, some entries cut to [address, status]
    "jobfail",  # async only: the job ends `failed` with an error and no charge
)


@dataclass
class Stats:
    """What the server did, for tests and benchmarks to assert on.

    `charges` counts billed lookups per normalised lead key (`Lead.key(mode)`), so a count above 1
    is a duplicate charge; `lookups` counts backend lookups per key whether billed or not;
    `requests` counts calls per endpoint (`"/find-email-bulk"`, `"/job-status"`, ...), including
    the ones answered 401, 429 or with a fault; `total_cents` is the sum charged.
    """

    charges: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    lookups: Counter[str] = field(default_factory=Counter)
    webhook_attempts: Counter[str] = field(default_factory=Counter)
    total_cents: int = 0
    _lock: Lock = field(default_factory=Lock, repr=False, compare=False)

    def charge(self, key: str, cents: int) -> None:
        """Record one lookup for `key`, billed `cents` (0 is a lookup that was not billed)."""
        with self._lock:
            self.lookups[key] += 1
            if cents > 0:
                self.charges[key] += 1
                self.total_cents += cents

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def count_webhook(self, outcome: str) -> None:
        with self._lock:
            self.webhook_attempts[outcome] += 1

    @property
    def duplicate_charges(self) -> int:
        """How many charges repeated a key already charged."""
        with self._lock:
            return sum(n - 1 for n in self.charges.values() if n > 1)

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self.charges.clear()
            self.requests.clear()
            self.lookups.clear()
            self.webhook_attempts.clear()
            self.total_cents = 0

    def to_json(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (served at GET /_lf/stats)."""
        duplicates = self.duplicate_charges
        with self._lock:
            return {
                "charges": dict(self.charges),
                "requests": dict(self.requests),
                "lookups": dict(self.lookups),
                "webhook_attempts": dict(self.webhook_attempts),
                "total_cents": self.total_cents,
                "duplicate_charges": duplicates,
            }


def _digest(key: str) -> bytes:
    # surrogatepass: a header decoded as latin-1 is always encodable; so is any configured key
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def key_owner(key: str) -> str:
    """A stable, non-reversible name for an API key: jobs and rate windows are kept per owner,
    so the key itself never has to be stored."""
    return _digest(key).hex()[:32]


class KeyRing:
    """The server's accepted API keys, held only as digests."""

    def __init__(self, keys: Collection[str]) -> None:
        digests = [_digest(k) for k in keys if k]
        if not digests:
            raise ValueError("the server needs at least one API key")
        self._digests = digests

    def accepts(self, key: str) -> bool:
        """True when `key` is one of the server's keys (compared in constant time)."""
        digest = _digest(key)
        found = False
        for known in self._digests:
            # no early exit: every key is compared, so timing says nothing about which matched
            found |= hmac.compare_digest(digest, known)
        return found


class SlidingWindowLimiter:
    """At most `per_minute` accepted requests per owner in any 60 s window (a sliding log).

    Rejected requests do not enter the window, so a client that backs off gets through again as
    soon as its oldest request is a minute old.
    """

    WINDOW = 60.0

    def __init__(
        self, per_minute: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute is not None and per_minute < 0:
            raise ValueError("rate_limit_per_minute must be positive (0 or None: no limit)")
        unlimited = per_minute is None or per_minute == 0 or math.isinf(per_minute)
        self.capacity: int | None = None if unlimited else max(1, int(per_minute or 0))
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = Lock()

    def check(self, owner: str) -> float | None:
        """Admit one request: None when allowed, else the seconds until one would be."""
        if self.capacity is None:
            return None
        now = self._clock()
        with self._lock:
            seen = self._seen.setdefault(owner, deque())
            while seen and seen[0] <= now - self.WINDOW:
                seen.popleft()
            if len(seen) >= self.capacity:
                return max(0.0, seen[0] + self.WINDOW - now)
            seen.append(now)
            return None


class FaultPlan:
    """Which fault, if any, a request gets: the `x-lf-fault` header wins, then seeded rates.

    Rates are drawn from one `random.Random(seed)` in arrival order, so a sequential test sees
    the same faults on every run.
    """

    def __init__(self, rates: Mapping[str, float] | None = None, seed: int | None = None) -> None:
        rates = dict(rates or {})
        unknown = set(rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if any(r < 0 for r in rates.values()) or sum(rates.values()) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        self.rates = rates
        self.random = random.Random(seed)
        self._lock = Lock()

    def choose(self, header: str | None) -> str | None:
        """The fault for a request; raises ValueError for an unknown header value."""
        if header:
            name = header.strip().lower()
            if name not in FAULTS:
                raise ValueError(f"unknown fault {header[:30]!r}; known: {', '.join(FAULTS)}")
            return name
        if not self.rates:
            return None
        with self._lock:
            draw = self.random.random()
        edge = 0.0
        for name, rate in self.rates.items():
            edge += rate
            if draw < edge:
                return name
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    headers: Mapping[str, str] | None = None,
) -> None:
    """Send a whole response: `body` with its type, its length and any extra `headers`."""
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(
    send: Send, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    await _send_bytes(send, status, json.dumps(body).encode(), headers=headers)


@dataclass
class _Captured:
    """A response the route produced but the fault has not let out yet."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


async def _wait_disconnect(receive: Receive) -> None:
    """Return when the client has gone (the route has already read the request body)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class Gateway:
    """ASGI middleware: count, authenticate, rate-limit, then apply a fault (if enabled)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        stats: Stats,
        keys: KeyRing,
        limiter: SlidingWindowLimiter,
        faults: FaultPlan | None,
        slow_interval: float = 0.5,
        redirect_url: str | None = None,
    ) -> None:
        self.app = app
        self.stats = stats
        self.keys = keys
        self.limiter = limiter
        self.faults = faults
        self.slow_interval = slow_interval
        self.redirect_url = redirect_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        segment = path.strip("/").split("/", 1)[0]
        endpoint = ENDPOINTS.get((scope["method"], segment))
        if endpoint is not None:
            self.stats.count_request(endpoint)

        key = _header(scope, b"x-api-key")
        if not key:
            await _send_json(send, 401, {"detail": "Missing API key: send it in x-api-key"})
            return
        if not self.keys.accepts(key):
            await _send_json(send, 401, {"detail": "Invalid API key"})
            return
        owner = key_owner(key)
        state = scope.setdefault("state", {})
        state["lf_owner"] = owner
        state["lf_fault"] = None
        if endpoint is None:  # /_lf/stats and unknown paths: no limit, no faults
            await self.app(scope, receive, send)
            return

        wait = self.limiter.check(owner)
        if wait is not None:
            await _send_json(
                send,
                429,
                {"detail": "Rate limit exceeded: too many requests for this API key"},
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
            return

        fault: str | None = None
        if self.faults is not None:
            try:
                fault = self.faults.choose(_header(scope, b"x-lf-fault"))
            except ValueError as exc:
                await _send_json(send, 400, {"detail": str(exc)})
                return
        if fault is None:
            await self.app(scope, receive, send)
            return
        log.info("fault %s on %s", fault, endpoint)
        state["lf_fault"] = fault
        await self._fault(fault, scope, receive, send)

    async def _fault(self, fault: str, scope: Scope, receive: Receive, send: Send) -> None:
        if fault == "429":
            await _send_json(send, 429, {"detail": "Too many requests"})
            return
        if fault == "429-retry-after":
            after = _header(scope, b"x-lf-retry-after") or "1"
            await _send_json(send, 429, {"detail": "Too many requests"}, {"Retry-After": after})
            return
        if fault == "503":
            await _send_json(send, 503, {"detail": "Service temporarily unavailable"})
            return
        if fault == "redirect":
            await self._redirect(scope, send)
            return
        if fault in ("shuffle", "jobfail"):  # the routes read these from request.state
            await self.app(scope, receive, send)
            return

        # Every other fault lets the route do (and bill) the work first.
        captured = _Captured()
        await self.app(scope, receive, captured.send)
        body = bytes(captured.body)
        if fault == "500":
            await _send_json(send, 500, {"detail": "Internal server error"})
        elif fault == "html200":
            page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
            await _send_bytes(send, 200, page, b"text/html; charset=utf-8")
        elif fault == "badjson":
            await _send_bytes(send, 200, body[: max(1, len(body) // 2)])
        elif fault == "truncate":
            await self._start_full_length(send, captured, body)
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            # Returning with the response incomplete makes uvicorn close the connection (it
            # logs "ASGI callable returned without completing response"): the client sees the
            # declared length but only half the bytes.
        elif fault == "slow":
            await self._trickle(send, receive, captured, body)
        elif fault == "hang":
            await _wait_disconnect(receive)
        else:  # pragma: no cover - FAULTS and this dispatch are kept in step
            raise AssertionError(fault)

    async def _redirect(self, scope: Scope, send: Send) -> None:
        if self.redirect_url:
            target = self.redirect_url.rstrip("/") + scope["path"]
        else:
            # Another host on loopback: a client that follows it does not reach us.
            server = scope.get("server") or ("127.0.0.1", 80)
            target = f"http://127.0.0.2:{server[1]}{scope['path']}"
        await _send_json(send, 302, {"detail": "Moved"}, {"location": target})

    @staticmethod
    async def _start_full_length(send: Send, captured: _Captured, body: bytes) -> None:
        headers = [(k, v) for k, v in captured.headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": captured.status, "headers": headers})

    async def _trickle(
        self, send: Send, receive: Receive, captured: _Captured, body: bytes
    ) -> None:
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await self._start_full_length(send, captured, body)
            for i in range(len(body)):
                last = i == len(body) - 1
                await send(
                    {"type": "http.response.body", "body": body[i : i + 1], "more_body": not last}
                )
                if last:
                    break
                await asyncio.wait({gone}, timeout=self.slow_interval)
                if gone.done():  # the client gave up: stop trickling
                    return
        finally:
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
