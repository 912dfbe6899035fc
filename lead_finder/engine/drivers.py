"""The two drivers that perform a flow's actions: blocking (`run_sync`) and asyncio (`run_async`).

They are the only code here that touches the network. DNS goes through the dnspython resolver
the engine was given (its async twin for `run_async`); SMTP connects to the IP address that
resolver returned, on the configured port, with a connect timeout and a per-reply deadline
(a server trickling one byte at a time does not reset it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from .flow import (
    Close,
    Connect,
    ConnectFailed,
    DnsAnswer,
    DnsQuery,
    Exchange,
    Flow,
    Reply,
    ReplyReader,
    SessionBroken,
    Sleep,
)

__all__ = [
    "AsyncHostSlots",
    "AsyncIO",
    "DnsHealth",
    "HostSlots",
    "SyncIO",
    "async_resolver",
    "run_async",
    "run_sync",
]

T = TypeVar("T")

_READ_SIZE = 4096


# -- DNS ----------------------------------------------------------------------------------------


def _dns_failure(exc: BaseException) -> DnsAnswer:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DnsAnswer("nxdomain")
    if isinstance(exc, dns.resolver.NoAnswer):
        return DnsAnswer("noanswer")
    if isinstance(exc, dns.resolver.NoNameservers):
        return DnsAnswer("error", error="no DNS server gave an answer (SERVFAIL or refused)")
    if isinstance(exc, dns.exception.Timeout):
        return DnsAnswer("error", error="the DNS lookup timed out (no network?)")
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return DnsAnswer("error", error="no DNS servers are configured on this machine")
    if isinstance(exc, OSError):
        return DnsAnswer("error", error=f"network error ({exc.strerror or type(exc).__name__})")
    return DnsAnswer("error", error=f"{type(exc).__name__}: {str(exc)[:100]}")


def _dns_answer(query: DnsQuery, answer: dns.resolver.Answer) -> DnsAnswer:
    if answer.rrset is None or len(answer.rrset) == 0:
        return DnsAnswer("noanswer")
    if query.rdtype == "MX":
        records = []
        for rdata in answer.rrset:
            exchange = rdata.exchange
            host = "" if exchange == dns.name.root else exchange.to_text(omit_final_dot=True)
            records.append((int(rdata.preference), host))
        return DnsAnswer("ok", mx=tuple(records))
    return DnsAnswer("ok", addresses=tuple(str(rdata.address) for rdata in answer.rrset))


def async_resolver(resolver: dns.resolver.Resolver) -> dns.asyncresolver.Resolver:
    """An async resolver asking the same servers, on the same port, with the same limits."""
    twin = dns.asyncresolver.Resolver(configure=False)
    twin.port = resolver.port
    twin.nameserver_ports = dict(resolver.nameserver_ports)
    twin.nameservers = list(resolver.nameservers)
    twin.timeout = resolver.timeout
    twin.lifetime = resolver.lifetime
    return twin


class DnsHealth:
    """Stops asking DNS for a while after `limit` failed lookups in a row.

    On a machine with no network every lookup waits for the resolver's full lifetime; after a few
    such failures the answer is known, so the next lookups fail at once (saying why) until
    `cooldown` seconds have passed, when one lookup is tried again. Thread-safe.
    """

    def __init__(
        self, *, limit: int = 4, cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._paused_until = 0.0

    def blocked(self) -> DnsAnswer | None:
        """An error answer to give without asking, or None to ask."""
        with self._lock:
            if self._failures >= self.limit and self._clock() < self._paused_until:
                return DnsAnswer(
                    "error",
                    error=f"DNS is not answering ({self._failures} lookups in a row failed)",
                )
        return None

    def record(self, answer: DnsAnswer) -> None:
        with self._lock:
            if answer.status == "error":
                self._failures += 1
                if self._failures >= self.limit:
                    self._paused_until = self._clock() + self.cooldown
            else:
                self._failures = 0


class HostSlots:
    """One SMTP session at a time per mail server IP, across threads.

    Many company domains share a mail provider (Google, Microsoft, ...): probing eight of them
    at once would open eight parallel sessions to the same servers, which is how a prober gets
    itself blocked. Domains are still probed in parallel when their servers differ.
    """

    def __init__(self) -> None:
        self._busy: set[str] = set()
        self._free = threading.Condition()

    def acquire(self, ip: str) -> None:
        with self._free:
            while ip in self._busy:
                self._free.wait()
            self._busy.add(ip)

    def release(self, ip: str) -> None:
        with self._free:
            self._busy.discard(ip)
            self._free.notify_all()


class AsyncHostSlots:
    """`HostSlots` for one event loop."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, ip: str) -> None:
        await self._locks.setdefault(ip, asyncio.Lock()).acquire()

    def release(self, ip: str) -> None:
        lock = self._locks.get(ip)
        if lock is not None and lock.locked():
            lock.release()


# -- SMTP ---------------------------------------------------------------------------------------


def _connect_failure(exc: OSError) -> ConnectFailed:
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed("refused")
    if isinstance(exc, TimeoutError):
        return ConnectFailed("timeout")
    return ConnectFailed("unreachable", exc.strerror or type(exc).__name__)


def _command(line: str) -> bytes:
    return (line + "\r\n").encode("ascii")


class _SyncConnection:
    def __init__(self, sock: socket.socket, ip: str) -> None:
        self._sock = sock
        self.ip = ip
        self._reader = ReplyReader()

    def exchange(self, line: str | None, timeout: float) -> Reply:
        deadline = time.monotonic() + timeout
        try:
            if line is not None:
                self._sock.settimeout(timeout)
                self._sock.sendall(_command(line))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SessionBroken("timeout")
                self._sock.settimeout(remaining)
                data = self._sock.recv(_READ_SIZE)
                if not data:
                    raise SessionBroken("closed")
                reply = self._reader.feed(data)
                if reply is not None:
                    return reply
        except TimeoutError:
            raise SessionBroken("timeout") from None
        except OSError as exc:
            raise SessionBroken("closed", exc.strerror or type(exc).__name__) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


@dataclass
class SyncIO:
    """What `run_sync` needs: the resolver (None when none could be configured, with the reason
    in `resolver_error`), the SMTP port and the timeouts."""

    resolver: dns.resolver.Resolver | None
    port: int = 25
    connect_timeout: float = 10.0
    command_timeout: float = 15.0
    resolver_error: str = "no DNS resolver"
    health: DnsHealth = field(default_factory=DnsHealth)
    slots: HostSlots = field(default_factory=HostSlots)
    sleep: Callable[[float], None] = field(default=time.sleep)

    def query(self, query: DnsQuery) -> DnsAnswer:
        if self.resolver is None:
            return DnsAnswer("error", error=self.resolver_error)
        blocked = self.health.blocked()
        if blocked is not None:
            return blocked
        try:
            result = _dns_answer(query, self.resolver.resolve(
                query.name, query.rdtype, search=False, raise_on_no_answer=False
            ))
        except (dns.exception.DNSException, OSError) as exc:
            result = _dns_failure(exc)
        self.health.record(result)
        return result

    def connect(self, action: Connect) -> _SyncConnection:
        """Open a connection, holding the IP's slot until `close`."""
        self.slots.acquire(action.ip)
        try:
            sock = socket.create_connection((action.ip, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            self.slots.release(action.ip)
            raise _connect_failure(exc) from None
        return _SyncConnection(sock, action.ip)

    def close(self, connection: _SyncConnection) -> None:
        connection.close()
        self.slots.release(connection.ip)


def run_sync(flow: Flow[T], io: SyncIO) -> T:
    """Run `flow` to completion with blocking I/O and return its result."""
    connection: _SyncConnection | None = None
    outcome: object = None
    failure: Exception | None = None
    try:
        while True:
            try:
                action = flow.throw(failure) if failure is not None else flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)
            outcome, failure = None, None
            if isinstance(action, DnsQuery):
                outcome = io.query(action)
            elif isinstance(action, Connect):
                if connection is not None:
                    io.close(connection)
                    connection = None
                try:
                    connection = io.connect(action)
                except ConnectFailed as exc:
                    failure = exc
            elif isinstance(action, Exchange):
                if connection is None:
                    failure = SessionBroken("closed", "no open connection")
                else:
                    try:
                        outcome = connection.exchange(action.line, io.command_timeout)
                    except SessionBroken as exc:
                        failure = exc
            elif isinstance(action, Close):
                if connection is not None:
                    io.close(connection)
                    connection = None
            elif isinstance(action, Sleep):
                io.sleep(action.seconds)
            else:  # pragma: no cover - the Action union is closed
                raise TypeError(f"unknown action {action!r}")
    finally:
        if connection is not None:
            io.close(connection)
        flow.close()


class _AsyncConnection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        self.ip = ip
        self._reader = reader
        self._writer = writer
        self._replies = ReplyReader()

    async def exchange(self, line: str | None, timeout: float) -> Reply:
        try:
            async with asyncio.timeout(timeout):
                if line is not None:
                    self._writer.write(_command(line))
                    await self._writer.drain()
                while True:
                    data = await self._reader.read(_READ_SIZE)
                    if not data:
                        raise SessionBroken("closed")
                    reply = self._replies.feed(data)
                    if reply is not None:
                        return reply
        except TimeoutError:
            raise SessionBroken("timeout") from None
        except OSError as exc:
            raise SessionBroken("closed", exc.strerror or type(exc).__name__) from None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()


@dataclass
class AsyncIO:
    """What `run_async` needs: like `SyncIO`, with dnspython's async resolver."""

    resolver: dns.asyncresolver.Resolver | None
    port: int = 25
    connect_timeout: float = 10.0
    command_timeout: float = 15.0
    resolver_error: str = "no DNS resolver"
    health: DnsHealth = field(default_factory=DnsHealth)
    slots: AsyncHostSlots = field(default_factory=AsyncHostSlots)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    async def query(self, query: DnsQuery) -> DnsAnswer:
        if self.resolver is None:
            return DnsAnswer("error", error=self.resolver_error)
        blocked = self.health.blocked()
        if blocked is not None:
            return blocked
        try:
            result = _dns_answer(query, await self.resolver.resolve(
                query.name, query.rdtype, search=False, raise_on_no_answer=False
            ))
        except (dns.exception.DNSException, OSError) as exc:
            result = _dns_failure(exc)
        self.health.record(result)
        return result

    async def connect(self, action: Connect) -> _AsyncConnection:
        """Open a connection, holding the IP's slot until `close`."""
        await self.slots.acquire(action.ip)
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(action.ip, self.port)
        except OSError as exc:  # TimeoutError is an OSError
            self.slots.release(action.ip)
            raise _connect_failure(exc) from None
        except BaseException:
            self.slots.release(action.ip)
            raise
        return _AsyncConnection(reader, writer, action.ip)

    async def close(self, connection: _AsyncConnection) -> None:
        try:
            await connection.close()
        finally:
            self.slots.release(connection.ip)


async def run_async(flow: Flow[T], io: AsyncIO) -> T:
    """Run `flow` to completion with asyncio and return its result."""
    connection: _AsyncConnection | None = None
    outcome: object = None
    failure: Exception | None = None
    try:
        while True:
            try:
                action = flow.throw(failure) if failure is not None else flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)
            outcome, failure = None, None
            if isinstance(action, DnsQuery):
                outcome = await io.query(action)
            elif isinstance(action, Connect):
                if connection is not None:
                    await io.close(connection)
                    connection = None
                try:
                    connection = await io.connect(action)
                except ConnectFailed as exc:
                    failure = exc
            elif isinstance(action, Exchange):
                if connection is None:
                    failure = SessionBroken("closed", "no open connection")
                else:
                    try:
                        outcome = await connection.exchange(action.line, io.command_timeout)
                    except SessionBroken as exc:
                        failure = exc
            elif isinstance(action, Close):
                if connection is not None:
                    await io.close(connection)
                    connection = None
            elif isinstance(action, Sleep):
                await io.sleep(action.seconds)
            else:  # pragma: no cover - the Action union is closed
                raise TypeError(f"unknown action {action!r}")
    finally:
        if connection is not None:
            await io.close(connection)
        flow.close()
