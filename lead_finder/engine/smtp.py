"""The polite SMTP probe: one session per domain, a catch-all test first, never DATA.

A session greets, says EHLO (HELO if refused), gives `MAIL FROM`, then asks `RCPT TO` for a random
local part nobody has: if the server accepts it, it accepts anything (a catch-all) and no
candidate is asked about. Otherwise the candidates of every lead at the domain are asked about,
best first and a lead at a time, at most `max_rcpt` RCPT commands in all (the random one
included); once a candidate is accepted, its pattern is asked first for the other leads. The
session ends with QUIT: no message is ever sent.

Greylisting (a 4xx to the random address) is answered with one retry after a pause, with the same
random address and the same candidates, whose first attempts registered them with the greylister.
A server that cannot be reached, answers 4xx/5xx to the greeting or stays silent is left for the
next mail host (at most `mx.MAX_TARGETS`).

Everything here is a flow (see flow.py): no sockets, no clocks.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .flow import Close, Connect, ConnectFailed, Flow, Reply, SessionBroken, Sleep, exchange
from .mx import MailDomain, mail_targets_flow

__all__ = [
    "Plan",
    "ProbeResult",
    "ProbeSettings",
    "Session",
    "Verdict",
    "classify_rcpt",
    "probe_flow",
    "session_flow",
]


class Verdict(enum.StrEnum):
    """What a server's reply to RCPT TO says about the address."""

    ACCEPTED = "accepted"  # 2xx
    REJECTED = "rejected"  # 5xx about the mailbox: it does not exist
    TEMPORARY = "temporary"  # 4xx: greylisting, a full queue, try later
    POLICY = "policy"  # 5xx about us: block lists, relaying, reputation
    TOO_MANY = "too_many"  # 452 4.5.3: too many recipients in this session
    PROTOCOL = "protocol"  # 500-504: the server did not understand us


# Words that mark a 5xx as a verdict on the sender (our IP, our HELO, relaying) rather than on
# the mailbox.
_POLICY_WORDS = re.compile(
    r"block|blacklist|black list|denylist|spamhaus|spamcop|barracuda|\brbl\b|dnsbl|reputation|"
    r"policy|relay|not permitted|access denied|prohibited|banned|rejected due to|"
    r"\bspam\b|abuse|client host|your ip|reverse dns|ptr record|helo",
    re.IGNORECASE,
)
_TOO_MANY_WORDS = re.compile(r"too many recipients|recipient limit|too many rcpt", re.IGNORECASE)


def classify_rcpt(reply: Reply) -> Verdict:
    """Classify a reply to RCPT TO (RFC 5321 codes, RFC 3463 enhanced codes, then wording)."""
    code = reply.code
    enhanced = reply.enhanced or ""
    if 200 <= code < 300:
        return Verdict.ACCEPTED
    if code == 452 and (enhanced == "4.5.3" or _TOO_MANY_WORDS.search(reply.text)):
        return Verdict.TOO_MANY
    if 400 <= code < 500:
        return Verdict.TEMPORARY
    if code in (500, 501, 502, 503, 504) and not enhanced.startswith(("5.1.", "5.7.")):
        return Verdict.PROTOCOL
    if enhanced.startswith("5.7."):
        return Verdict.POLICY
    if enhanced.startswith(("5.1.", "5.2.")):
        return Verdict.REJECTED  # bad mailbox, disabled mailbox, mailbox full: not deliverable
    if _POLICY_WORDS.search(reply.text) or (code == 554 and not enhanced):
        return Verdict.POLICY
    return Verdict.REJECTED


def _failure_reason(reply: Reply) -> str:
    """Reason code for a refused greeting, HELO or MAIL FROM."""
    return "temp_error" if 400 <= reply.code < 500 else "policy_block"


_BROKEN_REASON = {"timeout": "timeout", "closed": "temp_error", "protocol": "protocol_error"}


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """How the probe talks: names it gives, how much it asks, how it waits."""

    helo_name: str
    mail_from: str = ""
    max_rcpt: int = 8
    greylist_retry_delay: float | None = 75.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What to ask one domain: the random local part and each lead's (address, pattern) pairs,
    best first."""

    domain: str
    random_local: str
    leads: tuple[tuple[tuple[str, str], ...], ...]

    @property
    def random_address(self) -> str:
        return f"{self.random_local}@{self.domain}"


@dataclass(slots=True)
class Session:
    """What one SMTP session found.

    `failure` is set (a reason code) when the session ended before the random address got a
    verdict; `at_greeting` when that happened before our EHLO, so another mail host may do better.
    `stopped` says why the candidates stopped early (timeout, rcpt_limit, policy_block, ...).
    """

    host: str
    ip: str
    failure: str | None = None
    at_greeting: bool = False
    random: Verdict | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    stopped: str | None = None
    rcpts: int = 0
    detail: str = ""


class _Planner:
    """Which candidate to ask about next: the lead asked least so far, and within a lead the
    candidate whose pattern was just accepted for a colleague, else its best-ranked one."""

    def __init__(self, leads: Sequence[Sequence[tuple[str, str]]]) -> None:
        self._queues = [list(lead) for lead in leads]
        self._asked = [0] * len(leads)
        self._done = [False] * len(leads)
        self._known: dict[str, Verdict] = {}
        self._good: list[str] = []

    def next(self) -> tuple[int, str, str] | None:
        while True:
            open_leads = [i for i, q in enumerate(self._queues) if q and not self._done[i]]
            if not open_leads:
                return None
            index = min(open_leads, key=lambda i: (self._asked[i], i))
            queue = self._queues[index]
            position = 0
            for pattern in self._good:
                hit = next((n for n, (_, p) in enumerate(queue) if p == pattern), None)
                if hit is not None:
                    position = hit
                    break
            address, pattern = queue.pop(position)
            if address in self._known:  # the same person twice: asked already
                self._settle(index, pattern, self._known[address])
                continue
            self._asked[index] += 1
            return index, address, pattern

    def record(self, index: int, address: str, pattern: str, verdict: Verdict) -> None:
        self._known[address] = verdict
        self._settle(index, pattern, verdict)

    def _settle(self, index: int, pattern: str, verdict: Verdict) -> None:
        if verdict is Verdict.ACCEPTED:
            self._done[index] = True
            if pattern in self._good:
                self._good.remove(pattern)
            self._good.insert(0, pattern)


def _quit() -> Flow[None]:
    """QUIT, politely; a server that hangs up first is fine."""
    try:
        yield from exchange("QUIT")
    except SessionBroken:
        pass


def session_flow(plan: Plan, settings: ProbeSettings, host: str, ip: str) -> Flow[Session]:
    """One SMTP session on an open connection (see the module docstring)."""
    session = Session(host, ip)
    greeted = False
    try:
        greeting = yield from exchange(None)
        if greeting.code != 220:
            session.failure, session.at_greeting = _failure_reason(greeting), True
            session.detail = f"{host} greeted with {greeting.brief()}"
            if greeting.code != 421:  # 421 means the server is closing the connection itself
                yield from _quit()
            return session
        greeted = True
        hello = yield from exchange(f"EHLO {settings.helo_name}")
        if hello.code != 250:
            hello = yield from exchange(f"HELO {settings.helo_name}")
        if hello.code != 250:
            session.failure = _failure_reason(hello)
            session.detail = f"{host} refused our HELO: {hello.brief()}"
            yield from _quit()
            return session
        sender = yield from exchange(f"MAIL FROM:<{settings.mail_from}>")
        if not 200 <= sender.code < 300:
            session.failure = _failure_reason(sender)
            session.detail = f"{host} refused MAIL FROM: {sender.brief()}"
            yield from _quit()
            return session
        reply = yield from exchange(f"RCPT TO:<{plan.random_address}>")
        session.rcpts = 1
        session.random = classify_rcpt(reply)
        session.detail = f"{host} answered {reply.brief()} for a random address"
        if reply.code == 421:
            session.failure = "temp_error"
            return session
        if session.random is Verdict.ACCEPTED:
            yield from _quit()  # a catch-all: nothing to learn from the candidates
            return session
        if session.random in (Verdict.POLICY, Verdict.PROTOCOL, Verdict.TOO_MANY):
            session.failure = {
                Verdict.POLICY: "policy_block",
                Verdict.PROTOCOL: "protocol_error",
                Verdict.TOO_MANY: "temp_error",
            }[session.random]
            yield from _quit()
            return session
        # REJECTED: a real test. TEMPORARY (greylisting): ask anyway, so that the candidates'
        # first attempts are registered too and the retry can get answers for them.
        planner = _Planner(plan.leads)
        while session.rcpts < settings.max_rcpt:
            pick = planner.next()
            if pick is None:
                break
            index, address, pattern = pick
            reply = yield from exchange(f"RCPT TO:<{address}>")
            session.rcpts += 1
            verdict = classify_rcpt(reply)
            session.verdicts[address] = verdict
            planner.record(index, address, pattern, verdict)
            if reply.code == 421:
                session.stopped = "temp_error"
                session.detail = f"{host} closed the session: {reply.brief()}"
                return session
            if verdict in (Verdict.TOO_MANY, Verdict.POLICY, Verdict.PROTOCOL):
                session.stopped = {
                    Verdict.TOO_MANY: "rcpt_limit",
                    Verdict.POLICY: "policy_block",
                    Verdict.PROTOCOL: "protocol_error",
                }[verdict]
                session.detail = f"{host} answered {reply.brief()}"
                break
        else:
            if planner.next() is not None:
                session.stopped = "rcpt_limit"
        yield from _quit()
    except SessionBroken as broken:
        reason = _BROKEN_REASON.get(broken.kind, "temp_error")
        what = {"timeout": "stopped answering", "closed": "closed the connection",
                "protocol": "sent something that is not SMTP"}.get(broken.kind, broken.kind)
        if session.random is None:
            session.failure = reason
            session.at_greeting = not greeted
            session.detail = f"{host} {what}" + ("" if greeted else " before greeting us")
        else:
            session.stopped = reason
            session.detail = f"{host} {what} during the RCPT checks"
    return session


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What probing one domain found.

    `session` is the session that decided (None when no server could be reached); `failure` a
    reason code when nothing usable came back; `unreachable` is True when no connection to any
    mail host could be opened (the sign of a blocked port 25).
    """

    session: Session | None
    failure: str | None
    detail: str
    sessions: int = 0
    retried: bool = False
    unreachable: bool = False


def _needs_retry(session: Session) -> bool:
    if session.failure is not None:
        return False
    if session.random is Verdict.TEMPORARY:
        return True
    return session.random is Verdict.REJECTED and any(
        v is Verdict.TEMPORARY for v in session.verdicts.values()
    )


def probe_flow(mail: MailDomain, plan: Plan, settings: ProbeSettings) -> Flow[ProbeResult]:
    """Probe one domain: try its mail hosts in order until one holds a session; retry once
    after a pause when greylisted."""
    found = yield from mail_targets_flow(mail)
    if not found.targets:
        if found.dns_failed:
            return ProbeResult(None, "dns_error",
                               f"the mail hosts of {mail.domain} could not be looked up")
        return ProbeResult(None, "no_mx", f"the mail hosts of {mail.domain} have no address")
    problems: list[str] = []
    last: Session | None = None
    chosen: Session | None = None
    sessions = 0
    for host, ip in found.targets:
        try:
            yield Connect(host, ip)
        except ConnectFailed as failed:
            problems.append(f"{host} ({ip}): connection {failed.kind}")
            continue
        sessions += 1
        last = yield from session_flow(plan, settings, host, ip)
        yield Close()
        if last.failure is not None and last.at_greeting:
            problems.append(last.detail)
            continue
        chosen = last
        break
    if chosen is None:
        if last is None:
            return ProbeResult(
                None, "smtp_unreachable",
                f"could not connect to port 25 of any mail host of {mail.domain}: "
                + "; ".join(problems),
                sessions, unreachable=True,
            )
        return ProbeResult(last, last.failure, "; ".join(problems), sessions)
    retried = False
    if settings.greylist_retry_delay is not None and _needs_retry(chosen):
        yield Sleep(settings.greylist_retry_delay)
        try:
            yield Connect(chosen.host, chosen.ip)
        except ConnectFailed:
            pass
        else:
            sessions += 1
            second = yield from session_flow(plan, settings, chosen.host, chosen.ip)
            yield Close()
            retried = True
            if second.failure is None:
                chosen = second
    return ProbeResult(chosen, chosen.failure, chosen.detail, sessions, retried)
