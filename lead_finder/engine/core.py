"""The built-in discovery engine: candidates, DNS, and (with the user's consent) SMTP.

`Engine.find_many` works in two rounds. First the companies known only by name get a domain
(with MX evidence, see domains.py); then the leads are grouped by domain and each domain is
handled once: its mail hosts are looked up, its leads' candidates ranked, and, when probing is on,
one SMTP session asks about all of them. Results come back in input order, every one with a
machine-readable reason in `Result.extra["reason"]` (see `REASONS`).

Status rules: OK only when a candidate was accepted and a random address rejected in the same
session. UNKNOWN, with the best-ranked address, whenever the answer could not be checked
(probing off, catch-all, greylisting, temporary errors, policy blocks, timeouts, port 25
unreachable, DNS failures). NOT_FOUND when there is provably nothing to find (no such domain, no
mail server, every candidate rejected) or nothing to look for (no name, no domain, PERSONAL).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any, TypeVar

import dns.nameserver
import dns.resolver

from ..leads import Lead, company_key
from ..models import Mode, Result, Source
from .candidates import Candidate, NameParts, PatternBook, candidates, name_parts
from .consent import smtp_probe_enabled
from .domains import DomainGuess, guess_domain_flow, is_free_mail, lead_domain
from .drivers import AsyncIO, DnsHealth, HostSlots, SyncIO, async_resolver, run_async, run_sync
from .flow import Close, Connect, ConnectFailed, Flow, SessionBroken, exchange
from .mx import MailDomain, mail_domain_flow, mail_targets_flow
from .smtp import Plan, ProbeResult, ProbeSettings, Verdict, probe_flow
from .verdicts import (
    REASONS,
    SMTP_UNREACHABLE_HINT,
    UNVERIFIED_HINT,
    Decision,
    answer,
    decide,
    given_address,
    no_domain_result,
    personal_result,
)

__all__ = ["Engine"]

log = logging.getLogger("lead_finder.engine")

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
V = TypeVar("V")

#: Consecutive domains whose mail hosts could not be reached at all before the engine stops
#: trying port 25 for `_UNREACHABLE_COOLDOWN` seconds (a blocked port makes every try time out).
_UNREACHABLE_LIMIT = 3
_UNREACHABLE_COOLDOWN = 600.0
#: How long a catch-all verdict is remembered: a catch-all is not probed again meanwhile.
_CATCH_ALL_TTL = 3600.0
_GIVEN = "given"


@dataclass(slots=True)
class _Job:
    """One lead that needs a domain-level lookup."""

    index: int
    lead: Lead
    parts: NameParts | None
    domain: str | None
    guessed: bool = False
    guess_detail: str = ""
    free_mail: str | None = None


@dataclass(slots=True)
class _Batch:
    mode: Mode
    results: list[Result | None]
    probe: bool
    jobs: list[_Job] = field(default_factory=list)
    to_guess: dict[str, str] = field(default_factory=dict)  # company key -> company text


#: Name servers to use instead of the system's: "10.0.0.53" or "127.0.0.1:5353,10.0.0.53".
DNS_ENV = "LEAD_FINDER_DNS"


def _default_resolver() -> tuple[dns.resolver.Resolver | None, str]:
    servers = [part.strip() for part in os.environ.get(DNS_ENV, "").split(",") if part.strip()]
    try:
        resolver = dns.resolver.Resolver(configure=not servers)
        if servers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*_host_port(server)) for server in servers
            ]
    except (dns.resolver.NoResolverConfiguration, OSError) as exc:
        return None, f"no DNS servers are configured on this machine ({type(exc).__name__})"
    except ValueError:
        return None, f"{DNS_ENV} must list IP addresses, such as 10.0.0.53 or 127.0.0.1:5353"
    resolver.lifetime = 5.0
    return resolver, ""


def _host_port(server: str) -> tuple[str, int]:
    """"10.0.0.53", "10.0.0.53:5353", "::1" or "[::1]:5353" -> (address, port); ValueError
    for anything that is not an IP address."""
    host, port = server, 53
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    else:
        head, sep, tail = server.rpartition(":")
        if sep and tail.isdigit() and ":" not in head:
            host, port = head, int(tail)
    return str(ipaddress.ip_address(host)), port


def _random_local() -> str:
    """A local part no person has: a letter then 13 random letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(alphabet) for _ in range(13)
    )


def _is_ascii_word(value: str) -> bool:
    """Safe inside an SMTP command: ASCII, no spaces, no angle brackets."""
    return value.isascii() and not any(ch.isspace() or ch in "<>" for ch in value)


def _host_name() -> str:
    """This machine's name for HELO; "localhost" when it is not a usable ASCII name."""
    name = socket.gethostname()
    return name if name and _is_ascii_word(name) else "localhost"


def _check_ascii_word(value: str, what: str) -> str:
    if not _is_ascii_word(value):
        raise ValueError(f"{what} must be ASCII without spaces or angle brackets")
    return value


class Engine:
    """The built-in backend: proposes, ranks and (after opt-in) verifies work addresses.

    `resolver` is the dnspython resolver for every lookup, SMTP hosts included (default: the
    system's configuration, 5 s lifetime). `smtp_probe` None means "as the user chose"
    (`smtp_probe_enabled()`). SMTP goes to `smtp_port` of the IP the resolver returned.
    `known_emails` are addresses the user already has ("jane.doe@acme.com" or
    "Jane Doe <jane.doe@acme.com>"): they teach the engine each domain's pattern, as does
    `learn`. `greylist_retry_delay` None turns the greylisting retry off.

    Safe to use from several threads; keep one engine for a whole run (it remembers patterns,
    catch-all domains, DNS answers and a blocked port 25). `find_many` runs up to
    `max_parallel_domains` domains at once, never two sessions to one mail server IP at a
    time; `afind_many` does the same on the running event loop. `smtp_preflight(domain)` checks
    that port 25 is reachable without asking about any address.
    """

    def __init__(
        self,
        *,
        resolver: dns.resolver.Resolver | None = None,
        smtp_probe: bool | None = None,
        smtp_port: int = 25,
        helo_name: str | None = None,
        mail_from: str = "",
        connect_timeout: float = 10.0,
        command_timeout: float = 15.0,
        max_rcpt: int = 8,
        greylist_retry_delay: float | None = 75.0,
        known_emails: Iterable[str] = (),
        max_candidates: int = 12,
        max_parallel_domains: int = 8,
        cache_ttl: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= smtp_port <= 65535:
            raise ValueError("smtp_port must be between 1 and 65535")
        if connect_timeout <= 0 or command_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_rcpt < 2:
            raise ValueError("max_rcpt must be at least 2 (a random address and a candidate)")
        if greylist_retry_delay is not None and greylist_retry_delay < 0:
            raise ValueError("greylist_retry_delay must be zero or more seconds, or None")
        if max_candidates < 1 or max_parallel_domains < 1:
            raise ValueError("max_candidates and max_parallel_domains must be at least 1")
        if resolver is None:
            self._resolver, self._resolver_error = _default_resolver()
        else:
            self._resolver, self._resolver_error = resolver, ""
        self.smtp_probe = smtp_probe_enabled() if smtp_probe is None else bool(smtp_probe)
        self.smtp_port = smtp_port
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = float(command_timeout)
        self.max_candidates = max_candidates
        self.max_parallel_domains = max_parallel_domains
        self.cache_ttl = cache_ttl
        self.settings = ProbeSettings(
            helo_name=_check_ascii_word(helo_name or _host_name(), "helo_name"),
            mail_from=_check_ascii_word(mail_from, "mail_from"),
            max_rcpt=max_rcpt,
            greylist_retry_delay=greylist_retry_delay,
        )
        self._clock = clock
        self._book = PatternBook()
        self._lock = threading.Lock()
        self._dns_health = DnsHealth(clock=clock)
        self._slots = HostSlots()
        self._mail_cache: dict[str, tuple[float, MailDomain]] = {}
        self._guess_cache: dict[str, tuple[float, DomainGuess]] = {}
        self._catch_all: dict[str, float] = {}
        self._unreachable_streak = 0
        self._unreachable_until = 0.0
        self.learn(parseaddr(entry) for entry in known_emails)

    def __repr__(self) -> str:
        return (
            f"Engine(smtp_probe={self.smtp_probe}, smtp_port={self.smtp_port}, "
            f"learned_domains={self._book.known_domains()})"
        )

    # -- learning --------------------------------------------------------------------------------

    def learn(self, emails_with_names: Iterable[tuple[str, str]]) -> int:
        """Learn per-domain patterns from (full name, address) pairs the user already has.

        Returns how many pairs matched a known pattern (the others are ignored).
        """
        learned = 0
        for name, address in emails_with_names:
            if address and not is_free_mail(address.rpartition("@")[2].strip(" >")):
                learned += self._book.learn(name or None, address)
        return learned

    def rank(self, name: str, domain: str) -> list[Candidate]:
        """The ranked candidate local parts for `name` at `domain` (no network)."""
        parts = name_parts(name)
        if parts is None:
            return []
        return candidates(parts, domain, book=self._book, limit=self.max_candidates)

    # -- public lookups --------------------------------------------------------------------------

    def find(
        self, lead: Lead, mode: Mode | str = Mode.PROFESSIONAL, *, verify: bool = True
    ) -> Result:
        """Find the work address of one lead (see `find_many`)."""
        return self.find_many([lead], mode, verify=verify)[0]

    def find_many(
        self, leads: Sequence[Lead], mode: Mode | str = Mode.PROFESSIONAL, *, verify: bool = True
    ) -> list[Result]:
        """Find work addresses for many leads, in input order.

        One SMTP session per domain covers all its leads, when probing is on (the user opted in)
        and `verify` is true; otherwise nothing but DNS is asked.
        """
        batch = self._prepare(leads, Mode.parse(mode), probe=self.smtp_probe and verify)
        io = self._sync_io()
        guesses = self._run_sync_all(
            {key: self._guess_flow(key, text) for key, text in batch.to_guess.items()}, io
        )
        self._apply_guesses(batch, guesses)
        groups = self._groups(batch)
        answers = self._run_sync_all(
            {d: self._domain_flow(d, jobs, batch) for d, jobs in groups.items()}, io
        )
        return self._collect(batch, groups, answers)

    async def afind(
        self, lead: Lead, mode: Mode | str = Mode.PROFESSIONAL, *, verify: bool = True
    ) -> Result:
        """Async `find`."""
        return (await self.afind_many([lead], mode, verify=verify))[0]

    async def afind_many(
        self, leads: Sequence[Lead], mode: Mode | str = Mode.PROFESSIONAL, *, verify: bool = True
    ) -> list[Result]:
        """Async `find_many`: the same flows, driven by asyncio."""
        batch = self._prepare(leads, Mode.parse(mode), probe=self.smtp_probe and verify)
        io = self._async_io()
        guesses = await self._run_async_all(
            {key: self._guess_flow(key, text) for key, text in batch.to_guess.items()}, io
        )
        self._apply_guesses(batch, guesses)
        groups = self._groups(batch)
        answers = await self._run_async_all(
            {d: self._domain_flow(d, jobs, batch) for d, jobs in groups.items()}, io
        )
        return self._collect(batch, groups, answers)

    def smtp_preflight(self, domain: str) -> tuple[bool, str]:
        """Can this machine hold an SMTP session with `domain`'s mail servers on the configured
        port? Connects, reads the greeting and says QUIT: no address is asked about. For
        `lead-finder doctor` and for users deciding whether to enable probing. Even this
        connects to a mail server, so it too needs the user's consent (`smtp_probe`)."""
        if not self.smtp_probe:
            return False, "SMTP probing is off: run `lead-finder config enable-smtp-probe` first"
        return run_sync(_preflight_flow(domain), self._sync_io())

    # -- drivers ---------------------------------------------------------------------------------

    def _sync_io(self) -> SyncIO:
        return SyncIO(
            self._resolver, self.smtp_port, self.connect_timeout, self.command_timeout,
            resolver_error=self._resolver_error, health=self._dns_health, slots=self._slots,
        )

    def _async_io(self) -> AsyncIO:
        twin = async_resolver(self._resolver) if self._resolver is not None else None
        return AsyncIO(
            twin, self.smtp_port, self.connect_timeout, self.command_timeout,
            resolver_error=self._resolver_error, health=self._dns_health,
        )

    def _run_sync_all(self, flows: dict[K, Flow[T]], io: SyncIO) -> dict[K, T | BaseException]:
        def run(flow: Flow[T]) -> T | BaseException:
            try:
                return run_sync(flow, io)
            except Exception as exc:  # one broken domain must not sink the whole batch
                log.exception("engine flow failed")
                return exc

        if len(flows) <= 1:
            return {key: run(flow) for key, flow in flows.items()}
        workers = min(len(flows), self.max_parallel_domains)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lf-engine") as pool:
            futures = {key: pool.submit(run, flow) for key, flow in flows.items()}
            return {key: future.result() for key, future in futures.items()}

    async def _run_async_all(
        self, flows: dict[K, Flow[T]], io: AsyncIO
    ) -> dict[K, T | BaseException]:
        limit = asyncio.Semaphore(self.max_parallel_domains)

        async def run(flow: Flow[T]) -> T | BaseException:
            async with limit:
                try:
                    return await run_async(flow, io)
                except Exception as exc:
                    log.exception("engine flow failed")
                    return exc

        keys = list(flows)
        values = await asyncio.gather(*(run(flows[k]) for k in keys))
        return dict(zip(keys, values, strict=True))

    # -- preparation (pure, no I/O) --------------------------------------------------------------

    def _prepare(self, leads: Sequence[Lead], mode: Mode, *, probe: bool) -> _Batch:
        batch = _Batch(mode, [None] * len(leads), probe)
        # Rows that came with a name and a work email teach their domain's pattern first.
        for lead in leads:
            if lead.name and lead.email:
                self.learn([(lead.name, lead.email)])
        for index, lead in enumerate(leads):
            if mode is Mode.PERSONAL:
                batch.results[index] = personal_result(lead)
                continue
            parts = name_parts(lead.name) if lead.name else None
            choice = lead_domain(lead)
            if parts is None and given_address(lead, choice.domain) is None:
                if choice.domain is None and choice.free_mail is not None:
                    batch.results[index] = no_domain_result(lead, mode, choice.free_mail)
                else:
                    batch.results[index] = answer(
                        lead, mode, Decision("NOT_FOUND", "", "no_name", REASONS["no_name"]),
                        domain=choice.domain,
                    )
                continue
            job = _Job(index, lead, parts, choice.domain, free_mail=choice.free_mail)
            if job.domain is None:
                company = lead.company or ""
                key = company_key(company) if company else ""
                if not key:
                    batch.results[index] = no_domain_result(lead, mode, choice.free_mail)
                    continue
                batch.to_guess.setdefault(key, company)
            batch.jobs.append(job)
        return batch

    def _apply_guesses(
        self, batch: _Batch, guesses: Mapping[str, DomainGuess | BaseException]
    ) -> None:
        for job in batch.jobs:
            if job.domain is not None or job.lead.company is None:
                continue
            guess = guesses.get(company_key(job.lead.company))
            if isinstance(guess, DomainGuess) and guess.domain is not None:
                job.domain, job.guessed, job.guess_detail = guess.domain, True, guess.detail
                continue
            if isinstance(guess, DomainGuess):
                reason, detail = guess.reason or "no_domain", guess.detail
            else:
                reason, detail = "engine_error", f"{type(guess).__name__}"
            if job.free_mail and reason == "no_domain":
                reason = "free_mail_domain"
                detail = f"{job.free_mail} is a free-mail provider; {detail}"
            batch.results[job.index] = answer(
                job.lead, batch.mode, Decision("NOT_FOUND", "", reason, detail)
            )

    @staticmethod
    def _groups(batch: _Batch) -> dict[str, list[_Job]]:
        groups: dict[str, list[_Job]] = {}
        for job in batch.jobs:
            if batch.results[job.index] is None and job.domain is not None:
                groups.setdefault(job.domain, []).append(job)
        return groups

    @staticmethod
    def _collect(
        batch: _Batch,
        groups: Mapping[str, list[_Job]],
        answers: Mapping[str, list[Result] | BaseException],
    ) -> list[Result]:
        for domain, jobs in groups.items():
            found = answers.get(domain)
            for position, job in enumerate(jobs):
                if isinstance(found, list):
                    batch.results[job.index] = found[position]
                else:
                    batch.results[job.index] = Result.failed(
                        job.lead.to_api(), f"engine error ({type(found).__name__})",
                        mode=batch.mode, key=job.lead.key(batch.mode),
                    ).with_source(Source.ENGINE)
        return [r for r in batch.results if r is not None]

    # -- flows -----------------------------------------------------------------------------------

    def _fresh(self, cache: dict[str, tuple[float, V]], key: str, now: float) -> V | None:
        """The cached value for `key` unless it has expired."""
        with self._lock:
            cached = cache.get(key)
        return cached[1] if cached is not None and cached[0] > now else None

    def _guess_flow(self, key: str, company: str) -> Flow[DomainGuess]:
        now = self._clock()
        cached = self._fresh(self._guess_cache, key, now)
        if cached is not None:
            return cached
        guess = yield from guess_domain_flow(company)
        if guess.reason != "dns_error":
            with self._lock:
                self._guess_cache[key] = (now + self.cache_ttl, guess)
                if guess.mail is not None and guess.domain is not None:
                    self._mail_cache[guess.domain] = (now + self.cache_ttl, guess.mail)
        return guess

    def _mail_flow(self, domain: str) -> Flow[MailDomain]:
        now = self._clock()
        cached = self._fresh(self._mail_cache, domain, now)
        if cached is not None:
            return cached
        mail = yield from mail_domain_flow(domain)
        if mail.status != "dns_error":
            with self._lock:
                self._mail_cache[domain] = (now + self.cache_ttl, mail)
        return mail

    def _ranked(self, job: _Job, domain: str) -> list[tuple[str, str]]:
        """(address, pattern) pairs for a lead, best first: its own address first, if any."""
        pairs: list[tuple[str, str]] = []
        given = given_address(job.lead, domain)
        if given is not None:
            pairs.append((given, _GIVEN))
        if job.parts is not None:
            for candidate in candidates(job.parts, domain, book=self._book,
                                        limit=self.max_candidates):
                address = candidate.address(domain)
                if all(address != a for a, _ in pairs):
                    pairs.append((address, candidate.pattern))
        return pairs

    def _domain_flow(self, domain: str, jobs: list[_Job], batch: _Batch) -> Flow[list[Result]]:
        mode = batch.mode
        mail = yield from self._mail_flow(domain)
        ranked = [self._ranked(job, domain) for job in jobs]
        common: dict[str, Any] = {"mail_hosts": list(mail.hosts), "smtp_checked": False}

        def each(decisions: Sequence[Decision], **extra: Any) -> list[Result]:
            return [
                answer(job.lead, mode, decision, domain=domain, guessed=job.guessed,
                        guess_detail=job.guess_detail, ranked=pairs, **{**common, **extra})
                for job, pairs, decision in zip(jobs, ranked, decisions, strict=True)
            ]

        def same(status: str, reason: str, detail: str, **extra: Any) -> list[Result]:
            decisions = [
                Decision(status, "" if status == "NOT_FOUND" else pairs[0][0], reason, detail)
                if pairs else Decision("NOT_FOUND", "", "no_name", REASONS["no_name"])
                for pairs in ranked
            ]
            return each(decisions, **extra)

        if mail.status in ("nxdomain", "null_mx", "no_mx"):
            return same("NOT_FOUND", mail.status, mail.detail)
        if mail.status == "dns_error":
            return same("UNKNOWN", "dns_error", mail.detail)
        if not batch.probe:
            hint = UNVERIFIED_HINT if not self.smtp_probe else "verification was not asked for"
            return same("UNKNOWN", "unverified", mail.detail, hint=hint)
        now = self._clock()
        with self._lock:
            catch_all_until = self._catch_all.get(domain, 0.0)
            blocked = now < self._unreachable_until
        if catch_all_until > now:
            return same("UNKNOWN", "catch_all",
                        f"{domain} accepted a made-up address in a recent probe")
        if blocked:
            return same(
                "UNKNOWN", "smtp_unreachable",
                f"not tried: port 25 could not be reached for the last {_UNREACHABLE_LIMIT} "
                "domains", hint=SMTP_UNREACHABLE_HINT,
            )
        plan = Plan(domain, _random_local(), tuple(tuple(pairs) for pairs in ranked))
        probe = yield from probe_flow(mail, plan, self.settings)
        self._after_probe(domain, probe)
        decisions = [decide([a for a, _ in pairs], probe) for pairs in ranked]
        for job, pairs, decision in zip(jobs, ranked, decisions, strict=True):
            if decision.status == "OK" and job.lead.name:
                pattern = dict(pairs).get(decision.address)
                if pattern != _GIVEN:  # a given address was learned already
                    self._book.learn(job.lead.name, decision.address)
        extra: dict[str, Any] = {"smtp_checked": probe.session is not None,
                                 "smtp_sessions": probe.sessions}
        if probe.session is not None:
            extra["mail_host"] = probe.session.host
            extra["rejected"] = frozenset(
                a for a, v in probe.session.verdicts.items() if v is Verdict.REJECTED
            )
        if probe.unreachable:
            extra["hint"] = SMTP_UNREACHABLE_HINT
        return each(decisions, **extra)

    def _after_probe(self, domain: str, probe: ProbeResult) -> None:
        now = self._clock()
        with self._lock:
            if probe.unreachable:
                self._unreachable_streak += 1
                if self._unreachable_streak >= _UNREACHABLE_LIMIT:
                    self._unreachable_until = now + _UNREACHABLE_COOLDOWN
                    # After the pause, one more unreachable domain trips it again.
                    self._unreachable_streak = _UNREACHABLE_LIMIT - 1
            elif probe.sessions:
                self._unreachable_streak = 0
            session = probe.session
            if session is not None and session.random is Verdict.ACCEPTED:
                self._catch_all[domain] = now + _CATCH_ALL_TTL


def _preflight_flow(domain: str) -> Flow[tuple[bool, str]]:
    mail = yield from mail_domain_flow(domain)
    if not mail.accepts_mail:
        return False, mail.detail
    found = yield from mail_targets_flow(mail)
    problems: list[str] = []
    for host, ip in found.targets:
        try:
            yield Connect(host, ip)
        except ConnectFailed as failed:
            problems.append(f"{host} ({ip}): connection {failed.kind}")
            continue
        try:
            greeting = yield from exchange(None)
        except SessionBroken as broken:
            yield Close()
            problems.append(f"{host} ({ip}): {broken.kind} before greeting")
            continue
        if greeting.code == 220:
            try:
                yield from exchange("QUIT")
            except SessionBroken:
                pass  # hanging up first is the server's right
            yield Close()
            return True, f"{host} ({ip}) greeted us: port 25 is reachable"
        yield Close()
        problems.append(f"{host} ({ip}) greeted with {greeting.brief()}")
    if not found.targets:
        return False, f"the mail hosts of {domain} have no address"
    return False, "; ".join(problems) + ". " + SMTP_UNREACHABLE_HINT
