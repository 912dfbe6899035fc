"""A loopback mail world for the discovery engine: real DNS and real SMTP on 127.0.0.x.

- DNS: a dnslib server on 127.0.0.1:<free port>, answering from a dict of records through our
  own `RecordResolver` (dnslib's zone resolver answers wrongly for a name that exists without the
  asked type, which would break the "no MX -> A" path). Names not in the dict are NXDOMAIN;
  names in `servfail` get SERVFAIL. Every query is recorded.
- SMTP: aiosmtpd servers (and two raw asyncio ones: a 421 greeting and a silent server), each on
  its own 127.0.0.x address, all on one port (the engine takes a single SMTP port from its
  configuration). They share one event loop in a background thread. Every connection is a
  `SessionLog` with the commands the server received, so tests can assert what the engine did:
  no DATA, at most N RCPT, one session per domain, the same random address on a greylist retry.

    world = MailWorld.start()
    engine = Engine(resolver=world.resolver(), smtp_port=world.smtp_port, ...)
    ...
    world.stop()
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dns.resolver
from aiosmtpd.smtp import SMTP, Envelope, Session
from dnslib import AAAA, MX, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

__all__ = ["MailWorld", "RecordResolver", "SessionLog", "WORLD_IPS", "mail_world_records"]

# One address per behaviour.
WORLD_IPS = {
    "accept": "127.0.0.2",  # accept list (many domains)
    "catch_all": "127.0.0.3",
    "greylist": "127.0.0.4",
    "implicit": "127.0.0.5",  # the A record of a domain without MX, accept list
    "banner421": "127.0.0.6",
    "silent": "127.0.0.7",
    "slow": "127.0.0.8",  # answers RCPT after a short delay (within the engine's timeout)
    "refused": "127.0.0.9",  # nothing listens here
    "tooslow": "127.0.0.10",  # answers RCPT after the engine's timeout
    "blocked": "127.0.0.11",  # refuses MAIL FROM: our "IP" is on a block list
}

#: Mailboxes that exist, by server.
MAILBOXES = {
    "accept": {
        "jane.doe@verified.com", "john.smith@verified.com", "jdoe@flast.com",
        "asmith@flast.com", "bjones@flast.com", "jane.doe@backup.com",
        "jane.doe@globex.com", "juergen.mueller@umlaut.de",
    },
    "greylist": {"jane.doe@greylist.com"},
    "implicit": {"jane.doe@amx.com"},
    "slow": {"jane.doe@slow.com"},
    "tooslow": {"jane.doe@tooslow.com"},
}

Records = dict[str, dict[str, list[Any]]]


def mail_world_records() -> Records:
    """The DNS of the mail world: name -> {type: values}. MX values are (preference, host)."""
    ip = WORLD_IPS

    def mx_to(host: str, address: str) -> dict[str, Records]:
        return {host: {"A": [address]}}

    records: Records = {
        "verified.com": {"MX": [(10, "mx.verified.test")]},
        "flast.com": {"MX": [(10, "mx.verified.test")]},
        "umlaut.de": {"MX": [(10, "mx.verified.test")]},
        "catchall.com": {"MX": [(10, "mx.catchall.test")]},
        "greylist.com": {"MX": [(10, "mx.greylist.test")]},
        "backup.com": {"MX": [(10, "mx1.backup.test"), (20, "mx2.backup.test")]},
        "amx.com": {"A": [ip["implicit"]]},
        "nullmx.com": {"MX": [(0, ".")]},
        "banner421.com": {"MX": [(10, "mx.banner421.test")]},
        "silent.com": {"MX": [(10, "mx.silent.test")]},
        "slow.com": {"MX": [(10, "mx.slow.test")]},
        "tooslow.com": {"MX": [(10, "mx.tooslow.test")]},
        "refused.com": {"MX": [(10, "mx.refused.test")]},
        "refused2.com": {"MX": [(10, "mx.refused.test")]},
        "refused3.com": {"MX": [(10, "mx.refused.test")]},
        "blocked.com": {"MX": [(10, "mx.blocked.test")]},
        "noaddr.com": {"TXT": ["v=spf1 -all"]},  # exists, but neither MX nor A
        "globex.com": {"MX": [(10, "mx.verified.test")]},  # found from "Globex Corporation"
        "parked.com": {"A": [ip["accept"]]},  # has an address but no MX: no evidence
    }
    for host, address in [
        ("mx.verified.test", ip["accept"]),
        ("mx.catchall.test", ip["catch_all"]),
        ("mx.greylist.test", ip["greylist"]),
        ("mx1.backup.test", ip["refused"]),
        ("mx2.backup.test", ip["accept"]),
        ("mx.banner421.test", ip["banner421"]),
        ("mx.silent.test", ip["silent"]),
        ("mx.slow.test", ip["slow"]),
        ("mx.tooslow.test", ip["tooslow"]),
        ("mx.refused.test", ip["refused"]),
        ("mx.blocked.test", ip["blocked"]),
    ]:
        records.update(mx_to(host, address))
    return records


# -- DNS ----------------------------------------------------------------------------------------


class RecordResolver(BaseResolver):  # type: ignore[misc]
    """Answers from a dict of records; records every (name, type) asked."""

    def __init__(self, records: Mapping[str, Mapping[str, Sequence[Any]]],
                 servfail: Iterable[str] = ()) -> None:
        self.records = {k.lower(): v for k, v in records.items()}
        self.servfail = {s.lower() for s in servfail}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries.append((qname, qtype))
        if qname in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        entry = self.records.get(qname)
        if entry is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in entry.get(qtype, ()):
            if qtype == "MX":
                preference, host = value
                rdata: Any = MX(host if host != "." else ".", preference)
            elif qtype == "A":
                rdata = A(value)
            elif qtype == "AAAA":
                rdata = AAAA(value)
            else:
                continue
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, qtype), rdata=rdata, ttl=60))
        return reply  # a name that exists without this type: NOERROR, no answer


class _QuietLogger:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


# -- SMTP ---------------------------------------------------------------------------------------


@dataclass
class SessionLog:
    """One connection to one test server and the commands it received."""

    server: str
    ip: str
    commands: list[str] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)
    last_command: float | None = None  # when the last command arrived

    @property
    def verbs(self) -> list[str]:
        return [c.split(" ", 1)[0].upper() for c in self.commands]

    @property
    def rcpts(self) -> list[str]:
        out = []
        for command in self.commands:
            if command.upper().startswith("RCPT "):
                out.append(command.split(":", 1)[1].strip().strip("<>").lower())
        return out

    @property
    def domains(self) -> set[str]:
        return {r.rpartition("@")[2] for r in self.rcpts}


class _Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sessions: list[SessionLog] = []

    def open(self, server: str, ip: str) -> SessionLog:
        log = SessionLog(server, ip)
        with self._lock:
            self.sessions.append(log)
        return log

    def snapshot(self) -> list[SessionLog]:
        with self._lock:
            return [SessionLog(s.server, s.ip, list(s.commands), s.opened, s.last_command)
                    for s in self.sessions]

    def clear(self) -> None:
        with self._lock:
            self.sessions.clear()


class MailboxHandler:
    """aiosmtpd handler: an accept list (or everything), optional greylisting and delays."""

    def __init__(
        self,
        mailboxes: set[str] | None,
        *,
        greylist_delay: float | None = None,
        rcpt_delay: float = 0.0,
        refuse_sender: str | None = None,
    ) -> None:
        self.mailboxes = mailboxes  # None: a catch-all
        self.greylist_delay = greylist_delay
        self.rcpt_delay = rcpt_delay
        self.refuse_sender = refuse_sender
        self.first_seen: dict[tuple[str, str], float] = {}

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        if self.refuse_sender is not None:
            return self.refuse_sender
        # aiosmtpd treats an empty envelope sender as "no MAIL yet" and then answers RCPT with
        # 503; real servers accept the null sender, so store a placeholder.
        envelope.mail_from = address or "<>"
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        address = address.lower()
        if self.greylist_delay is not None:
            triplet = (str(envelope.mail_from), address)
            first = self.first_seen.setdefault(triplet, time.monotonic())
            if time.monotonic() - first < self.greylist_delay:
                return "451 4.7.1 Greylisted, please try again later"
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        if self.mailboxes is None or address in self.mailboxes:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


class _RecordingSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd's SMTP protocol, recording every command it receives."""

    def __init__(self, handler: Any, *, name: str, ip: str, recorder: _Recorder,
                 connections: set[asyncio.BaseTransport], **kwargs: Any) -> None:
        super().__init__(handler, hostname=f"{name}.mailworld.test", ident="mailworld", **kwargs)
        self._name, self._ip, self._recorder = name, ip, recorder
        self._connections = connections
        self._log: SessionLog | None = None
        self._smtp_methods = {verb: self._recorded(verb, method)
                              for verb, method in self._smtp_methods.items()}

    def _recorded(self, verb: str, method: Callable[[str | None], Any]) -> Callable[..., Any]:
        async def run(arg: str | None) -> Any:
            if self._log is not None:
                self._log.commands.append(verb if arg is None else f"{verb} {arg}")
                self._log.last_command = time.monotonic()
            return await method(arg)

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._log = self._recorder.open(self._name, self._ip)
        self._connections.add(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self.transport)
        super().connection_lost(error)


class MailWorld:
    """The running mail world. Use `start()`; `stop()` shuts everything down."""

    def __init__(self) -> None:
        self.records = mail_world_records()
        self.dns_resolver = RecordResolver(self.records, servfail={"servfail.com"})
        self.recorder = _Recorder()
        self.smtp_port = 0
        self.dns_port = 0
        self._dns: DNSServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="mailworld")
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[asyncio.BaseTransport] = set()
        self.handlers: dict[str, MailboxHandler] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def start(cls) -> MailWorld:
        world = cls()
        try:
            world._start_dns()
            world._thread.start()
            world._start_smtp()
        except BaseException:
            world.stop()
            raise
        return world

    def _start_dns(self) -> None:
        server = DNSServer(self.dns_resolver, address="127.0.0.1", port=0, logger=_QuietLogger())
        self.dns_port = server.server.server_address[1]
        server.start_thread()
        self._dns = server

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _start_smtp(self) -> None:
        for _ in range(20):
            self.smtp_port = _free_port(WORLD_IPS["accept"])
            if _port_refused(WORLD_IPS["refused"], self.smtp_port):
                try:
                    self._call(self._create_servers())
                    return
                except OSError:
                    self._call(self._close_servers())
        raise RuntimeError("no port free on every 127.0.0.x address of the mail world")

    async def _create_servers(self) -> None:
        ips = WORLD_IPS
        self.handlers = {
            "accept": MailboxHandler(MAILBOXES["accept"]),
            "catch_all": MailboxHandler(None),
            "greylist": MailboxHandler(MAILBOXES["greylist"], greylist_delay=0.2),
            "implicit": MailboxHandler(MAILBOXES["implicit"]),
            "slow": MailboxHandler(MAILBOXES["slow"], rcpt_delay=0.1),
            "tooslow": MailboxHandler(MAILBOXES["tooslow"], rcpt_delay=1.5),
            "blocked": MailboxHandler(
                None, refuse_sender="554 5.7.1 Service unavailable; client host blocked "
                                    "using zen.spamhaus.org"),
        }
        loop = asyncio.get_running_loop()
        for name, handler in self.handlers.items():
            def factory(handler: MailboxHandler = handler, name: str = name) -> SMTP:
                return _RecordingSMTP(handler, name=name, ip=ips[name], recorder=self.recorder,
                                      connections=self._connections, loop=loop)

            self._servers.append(await loop.create_server(factory, ips[name], self.smtp_port))
        self._servers.append(await asyncio.start_server(
            self._banner421, ips["banner421"], self.smtp_port))
        self._servers.append(await asyncio.start_server(
            self._silent, ips["silent"], self.smtp_port))

    async def _banner421(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.recorder.open("banner421", WORLD_IPS["banner421"])
        writer.write(b"421 4.3.2 Service not available, closing transmission channel\r\n")
        await writer.drain()
        writer.close()

    async def _silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        log = self.recorder.open("silent", WORLD_IPS["silent"])
        try:
            while line := await reader.readline():  # never says a word; notes what it hears
                log.commands.append(line.decode("ascii", "replace").strip())
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        for transport in list(self._connections):
            transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._close_servers())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed():
            self._loop.close()
        if self._dns is not None:
            self._dns.stop()
            self._dns.server.server_close()
            self._dns = None

    # -- what tests use ---------------------------------------------------------------------------

    def resolver(self, *, lifetime: float = 2.0) -> dns.resolver.Resolver:
        """A dnspython resolver that asks only this world's DNS server."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.port = self.dns_port
        resolver.nameservers = ["127.0.0.1"]
        resolver.timeout = lifetime
        resolver.lifetime = lifetime
        return resolver

    def sessions(self, server: str | None = None) -> list[SessionLog]:
        """Sessions so far (all servers, or one behaviour's)."""
        logs = self.recorder.snapshot()
        return [s for s in logs if server is None or s.server == server]

    def sessions_for(self, domain: str) -> list[SessionLog]:
        """Sessions that asked about an address at `domain`."""
        return [s for s in self.sessions() if domain in s.domains]

    def reset(self) -> None:
        """Forget transcripts, DNS queries and greylisting state (between tests)."""
        self.recorder.clear()
        with self.dns_resolver._lock:
            self.dns_resolver.queries.clear()
        for handler in self.handlers.values():
            handler.first_seen.clear()


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_refused(ip: str, port: int) -> bool:
    """True when nothing listens on ip:port (the 'refused' address must stay that way)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((ip, port)) != 0


@contextmanager
def smtp_connections(port: int) -> Iterator[list[tuple[str, int]]]:
    """Record every socket connect to `port` made by this process while the block runs
    (an audit hook: it sees connections to closed ports too)."""
    seen: list[tuple[str, int]] = []
    _WATCHERS.append((port, seen))
    try:
        yield seen
    finally:
        _WATCHERS.remove((port, seen))


_WATCHERS: list[tuple[int, list[tuple[str, int]]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or not _WATCHERS:
        return
    address = args[1]
    if isinstance(address, tuple) and len(address) >= 2:
        for port, seen in list(_WATCHERS):
            if address[1] == port:
                seen.append((str(address[0]), int(address[1])))


sys.addaudithook(_audit)
