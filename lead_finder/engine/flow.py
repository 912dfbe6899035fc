"""The engine's I/O as data: flows yield actions, drivers perform them.

Every network conversation the engine has (DNS lookups, an SMTP session, a greylisting pause) is
written once, as a generator that yields an action and receives its outcome. `drivers.run_sync`
performs the actions with blocking sockets and dnspython's resolver; `drivers.run_async` with
asyncio streams and dnspython's async resolver. The decisions therefore live in one place and are
the same on both paths (the same idea as httpx's auth flows).

A driver sends back:

- `DnsQuery` -> a `DnsAnswer` (never raises: failures are answers with `status="error"`),
- `Connect` -> None, or throws `ConnectFailed` into the flow,
- `Exchange` -> a `Reply`, or throws `SessionBroken`,
- `Close`, `Sleep` -> None.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

__all__ = [
    "Action",
    "Close",
    "Connect",
    "ConnectFailed",
    "DnsAnswer",
    "DnsQuery",
    "Exchange",
    "Flow",
    "Reply",
    "ReplyReader",
    "SessionBroken",
    "Sleep",
    "dns",
    "exchange",
]


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """Look up `rdtype` ("MX", "A" or "AAAA") records of the absolute name `name`."""

    name: str
    rdtype: str


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """What a lookup gave. `status` is ok (records found), noanswer (the name exists without such
    records), nxdomain (the name does not exist) or error (no answer: timeout, SERVFAIL, no
    network, no resolver configuration; `error` says which)."""

    status: Literal["ok", "noanswer", "nxdomain", "error"]
    mx: tuple[tuple[int, str], ...] = ()
    addresses: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a TCP connection to `ip` on the configured SMTP port (`host` is for messages)."""

    host: str
    ip: str


@dataclass(frozen=True, slots=True)
class Exchange:
    """Send `line` (None: send nothing, read the greeting) and read one full reply."""

    line: str | None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the current connection (a no-op when there is none)."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait `seconds` (the greylisting pause)."""

    seconds: float


Action = DnsQuery | Connect | Exchange | Close | Sleep


class _NetworkFailure(Exception):
    """A failure a driver throws into a flow: a `kind` to branch on and a `detail` for people."""

    _what = ""

    def __init__(self, kind: str, detail: str = "") -> None:
        message = f"{self._what} {kind}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.kind = kind
        self.detail = detail


class ConnectFailed(_NetworkFailure):
    """A TCP connection could not be opened. `kind`: refused, timeout or unreachable."""

    _what = "connect"


class SessionBroken(_NetworkFailure):
    """An open session stopped answering. `kind`: timeout, closed or protocol."""

    _what = "session"


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: its code and the text of each line (without the code)."""

    code: int
    lines: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines).strip()

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code ("5.1.1") at the start of the text, if any."""
        match = _ENHANCED.match(self.lines[0] if self.lines else "")
        return match.group(1) if match else None

    def brief(self, limit: int = 120) -> str:
        """The reply in one short line, for messages."""
        text = f"{self.code} {self.text}".strip()
        return text if len(text) <= limit else text[: limit - 1] + "…"


_ENHANCED = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")
_REPLY_LINE = re.compile(rb"([2-5]\d\d)([ -]?)(.*)")

#: Longest reply line accepted (RFC 5321 allows 512 octets; servers often send more).
MAX_LINE = 4096
#: Most lines accepted in one multi-line reply.
MAX_LINES = 100


class ReplyReader:
    """Parse SMTP replies from bytes as they arrive: `feed` returns a Reply once one is complete.

    Raises SessionBroken("protocol") on a line that is not a reply or on an endless reply.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._lines: list[str] = []
        self._code: int | None = None

    def feed(self, data: bytes) -> Reply | None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise SessionBroken("protocol", "reply line too long")
                return None
            raw, self._buffer = self._buffer[:end].rstrip(b"\r"), self._buffer[end + 1 :]
            match = _REPLY_LINE.fullmatch(raw)
            if match is None:
                raise SessionBroken("protocol", f"not an SMTP reply: {raw[:60]!r}")
            code = int(match.group(1))
            if self._code is not None and code != self._code:
                raise SessionBroken("protocol", "reply code changed inside a multi-line reply")
            self._code = code
            self._lines.append(match.group(3).decode("utf-8", "replace"))
            if len(self._lines) > MAX_LINES:
                raise SessionBroken("protocol", "reply too long")
            if match.group(2) != b"-":
                reply = Reply(code, tuple(self._lines))
                self._lines, self._code = [], None
                return reply

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished reply are buffered."""
        return bool(self._buffer or self._lines)


T = TypeVar("T")

#: A flow: yields actions, is sent their outcomes, returns its result.
Flow: TypeAlias = Generator[Action, object, T]


def dns(name: str, rdtype: str) -> Flow[DnsAnswer]:
    """Sub-flow: one DNS lookup."""
    answer = yield DnsQuery(name, rdtype)
    if not isinstance(answer, DnsAnswer):
        raise TypeError(f"a driver answered a DnsQuery with {type(answer).__name__}")
    return answer


def exchange(line: str | None) -> Flow[Reply]:
    """Sub-flow: send one SMTP command (or read the greeting) and get the reply."""
    reply = yield Exchange(line)
    if not isinstance(reply, Reply):
        raise TypeError(f"a driver answered an Exchange with {type(reply).__name__}")
    return reply
