"""Unit tests of the engine's flows without sockets: reply parsing, RCPT classification, the SMTP
session and domain probe driven by a scripted server, DNS interpretation, and `decide`.

The flows are the real code; the script only plays the other side of the conversation, the way
the drivers would hand it replies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lead_finder.engine import decide
from lead_finder.engine.flow import (
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
from lead_finder.engine.mx import MailDomain, mail_domain_flow
from lead_finder.engine.smtp import (
    Plan,
    ProbeResult,
    ProbeSettings,
    Session,
    Verdict,
    classify_rcpt,
    probe_flow,
    session_flow,
)

READY = Reply(220, ("ready",))
HELLO = Reply(250, ("hello",))
SENDER_OK = Reply(250, ("ok",))
SETTINGS = ProbeSettings(helo_name="probe.example", max_rcpt=8, greylist_retry_delay=5.0)


def drive(flow: Flow[Any], respond: Callable[[Any], Any]) -> tuple[Any, list[Any]]:
    """Run a flow against `respond` (action -> outcome; an exception instance is thrown into
    the flow). Returns the flow's result and the actions it took."""
    actions: list[Any] = []
    outcome: Any = None
    throw: BaseException | None = None
    while True:
        try:
            action = flow.throw(throw) if throw is not None else flow.send(outcome)
        except StopIteration as stop:
            return stop.value, actions
        actions.append(action)
        outcome, throw = None, None
        result = respond(action)
        if isinstance(result, BaseException):
            throw = result
        else:
            outcome = result


class ScriptedServer:
    """Plays an SMTP server: `rcpt` decides the reply for each RCPT address."""

    def __init__(self, rcpt: Callable[[str], Reply | BaseException],
                 greeting: Reply | BaseException = READY,
                 ehlo: Reply = HELLO,
                 mail: Reply = SENDER_OK) -> None:
        self.rcpt, self.greeting, self.ehlo, self.mail = rcpt, greeting, ehlo, mail
        self.commands: list[str] = []

    def __call__(self, action: Any) -> Any:
        assert isinstance(action, Exchange)
        if action.line is None:
            return self.greeting
        self.commands.append(action.line)
        verb = action.line.split(" ", 1)[0].split(":", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            return self.ehlo if verb == "EHLO" else Reply(250, ("hi",))
        if verb == "MAIL":
            return self.mail
        if verb == "RCPT":
            return self.rcpt(action.line.split("<", 1)[1].rstrip(">"))
        if verb == "QUIT":
            return Reply(221, ("bye",))
        return Reply(502, ("5.5.2 unknown command",))

    @property
    def rcpts(self) -> list[str]:
        return [c.split("<", 1)[1].rstrip(">") for c in self.commands if c.startswith("RCPT")]


def mailboxes(*existing: str) -> Callable[[str], Reply]:
    def answer(address: str) -> Reply:
        if address in existing:
            return Reply(250, ("2.1.5 ok",))
        return Reply(550, ("5.1.1 user unknown",))

    return answer


def plan(*leads: list[str], domain: str = "acme.com") -> Plan:
    """A plan with a fixed random local part; every candidate has a pattern of its own."""
    return Plan(domain, "zq0random0test",
                tuple(tuple((a, f"pattern-of-{a}") for a in lead) for lead in leads))


# -- replies ------------------------------------------------------------------------------------


def test_reply_reader_joins_multiline_replies_fed_byte_by_byte() -> None:
    reader = ReplyReader()
    data = b"250-mx.acme.com hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    replies = [r for r in (reader.feed(data[i:i + 1]) for i in range(len(data))) if r]
    assert replies == [Reply(250, ("mx.acme.com hello", "PIPELINING", "8BITMIME"))]
    assert not reader.pending


def test_reply_reader_accepts_bare_lf_and_a_code_alone() -> None:
    assert ReplyReader().feed(b"220\n") == Reply(220, ("",))


@pytest.mark.parametrize("data", [b"HTTP/1.1 400 Bad Request\r\n", b"250-a\r\n251 b\r\n",
                                  b"x" * 5000])
def test_reply_reader_refuses_what_is_not_smtp(data: bytes) -> None:
    with pytest.raises(SessionBroken) as caught:
        ReplyReader().feed(data)
    assert caught.value.kind == "protocol"


def test_enhanced_status_code() -> None:
    assert Reply(550, ("5.1.1 <x@y.com>: user unknown",)).enhanced == "5.1.1"
    assert Reply(550, ("No such user",)).enhanced is None


@pytest.mark.parametrize(
    ("code", "text", "verdict"),
    [
        (250, "2.1.5 Ok", Verdict.ACCEPTED),
        (251, "User not local; will forward", Verdict.ACCEPTED),
        (550, "5.1.1 <x@acme.com>: Recipient address rejected: User unknown", Verdict.REJECTED),
        (550, "No such user here", Verdict.REJECTED),
        (553, "5.1.3 Bad recipient address syntax", Verdict.REJECTED),
        (550, "5.2.1 Mailbox disabled", Verdict.REJECTED),
        (552, "5.2.2 Mailbox full", Verdict.REJECTED),
        (554, "5.7.1 <x@acme.com>: Relay access denied", Verdict.POLICY),
        (550, "Client host [1.2.3.4] blocked using zen.spamhaus.org", Verdict.POLICY),
        (554, "Transaction failed", Verdict.POLICY),
        (550, "5.7.606 Access denied, banned sending IP", Verdict.POLICY),
        (451, "4.7.1 Greylisted, try again later", Verdict.TEMPORARY),
        (450, "4.2.1 Mailbox busy", Verdict.TEMPORARY),
        (452, "4.2.2 Mailbox full", Verdict.TEMPORARY),
        (452, "4.5.3 Too many recipients", Verdict.TOO_MANY),
        (452, "Too many recipients received this hour", Verdict.TOO_MANY),
        (503, "5.5.1 Error: need MAIL command", Verdict.PROTOCOL),
        (501, "Syntax error", Verdict.PROTOCOL),
    ],
)
def test_rcpt_replies_are_classified(code: int, text: str, verdict: Verdict) -> None:
    assert classify_rcpt(Reply(code, (text,))) is verdict


# -- one session ----------------------------------------------------------------------------------


def test_session_asks_random_first_then_candidates_and_quits_without_data() -> None:
    server = ScriptedServer(mailboxes("jdoe@acme.com"))
    session, _ = drive(session_flow(plan(["jane.doe@acme.com", "jdoe@acme.com", "jane@acme.com"]),
                                    SETTINGS, "mx.acme.com", "192.0.2.1"), server)
    assert server.commands[:2] == ["EHLO probe.example", "MAIL FROM:<>"]
    assert server.rcpts == ["zq0random0test@acme.com", "jane.doe@acme.com", "jdoe@acme.com"]
    assert server.commands[-1] == "QUIT"
    assert not any(c.startswith(("DATA", "VRFY", "EXPN")) for c in server.commands)
    assert session.random is Verdict.REJECTED
    assert session.verdicts == {"jane.doe@acme.com": Verdict.REJECTED,
                                "jdoe@acme.com": Verdict.ACCEPTED}
    assert session.failure is None and session.stopped is None


def test_catch_all_stops_after_the_random_address() -> None:
    server = ScriptedServer(lambda address: Reply(250, ("ok",)))
    session, _ = drive(session_flow(plan(["jane.doe@acme.com"]), SETTINGS, "mx", "ip"), server)
    assert server.rcpts == ["zq0random0test@acme.com"]
    assert session.random is Verdict.ACCEPTED
    assert not session.verdicts


def test_ehlo_refused_falls_back_to_helo() -> None:
    server = ScriptedServer(mailboxes(), ehlo=Reply(502, ("5.5.2 EHLO not supported",)))
    drive(session_flow(plan(["a.b@acme.com"]), SETTINGS, "mx", "ip"), server)
    assert server.commands[:2] == ["EHLO probe.example", "HELO probe.example"]


def test_mail_from_is_configurable() -> None:
    settings = ProbeSettings(helo_name="probe.example", mail_from="verify@probe.example")
    server = ScriptedServer(mailboxes())
    drive(session_flow(plan(["a.b@acme.com"]), settings, "mx", "ip"), server)
    assert "MAIL FROM:<verify@probe.example>" in server.commands


def test_rcpt_budget_counts_the_random_address() -> None:
    settings = ProbeSettings(helo_name="p", max_rcpt=4)
    many = [f"c{i}@acme.com" for i in range(10)]
    server = ScriptedServer(mailboxes())
    session, _ = drive(session_flow(plan(many), settings, "mx", "ip"), server)
    assert len(server.rcpts) == 4
    assert session.stopped == "rcpt_limit"


def test_leads_take_turns_and_an_accepted_pattern_goes_first_for_colleagues() -> None:
    server = ScriptedServer(mailboxes("jdoe@acme.com", "asmith@acme.com"))
    two_leads = Plan("acme.com", "zq0random0test", (
        (("jane.doe@acme.com", "{first}.{last}"), ("jdoe@acme.com", "{f}{last}")),
        (("alan.smith@acme.com", "{first}.{last}"), ("alansmith@acme.com", "{first}{last}"),
         ("asmith@acme.com", "{f}{last}")),
    ))
    session, _ = drive(session_flow(two_leads, SETTINGS, "mx", "ip"), server)
    # jane.doe (no), alan.smith (no), jdoe (yes: {f}{last}) -> asmith jumps ahead of alansmith.
    assert server.rcpts[1:] == ["jane.doe@acme.com", "alan.smith@acme.com", "jdoe@acme.com",
                                "asmith@acme.com"]
    assert session.verdicts["asmith@acme.com"] is Verdict.ACCEPTED


def test_the_same_address_is_asked_once() -> None:
    server = ScriptedServer(mailboxes("jane.doe@acme.com"))
    drive(session_flow(plan(["jane.doe@acme.com"], ["jane.doe@acme.com"]), SETTINGS, "mx", "ip"),
          server)
    assert server.rcpts.count("jane.doe@acme.com") == 1


def test_too_many_recipients_stops_the_session() -> None:
    def answer(address: str) -> Reply:
        if address.startswith("c2"):
            return Reply(452, ("4.5.3 Too many recipients",))
        return Reply(550, ("5.1.1 unknown",))

    server = ScriptedServer(answer)
    session, _ = drive(session_flow(plan([f"c{i}@acme.com" for i in range(6)]), SETTINGS,
                                    "mx", "ip"), server)
    assert server.rcpts[-1] == "c2@acme.com"
    assert session.stopped == "rcpt_limit"


def test_421_during_rcpt_ends_the_session_without_quit() -> None:
    def answer(address: str) -> Reply:
        if address.startswith("c1"):
            return Reply(421, ("4.7.0 too many errors, closing",))
        return Reply(550, ("5.1.1 unknown",))

    server = ScriptedServer(answer)
    session, _ = drive(session_flow(plan([f"c{i}@acme.com" for i in range(4)]), SETTINGS,
                                    "mx", "ip"), server)
    assert session.stopped == "temp_error"
    assert "QUIT" not in server.commands


@pytest.mark.parametrize(
    ("greeting", "failure"),
    [(Reply(421, ("4.3.2 busy",)), "temp_error"), (Reply(554, ("5.7.1 no service",)),
                                                    "policy_block"),
     (SessionBroken("timeout"), "timeout"), (SessionBroken("closed"), "temp_error")],
)
def test_greeting_failures_leave_the_host(greeting: Reply | SessionBroken, failure: str) -> None:
    server = ScriptedServer(mailboxes(), greeting=greeting)
    session, _ = drive(session_flow(plan(["a.b@acme.com"]), SETTINGS, "mx", "ip"), server)
    assert (session.failure, session.at_greeting) == (failure, True)
    assert not server.rcpts


def test_refused_sender_is_a_policy_block() -> None:
    server = ScriptedServer(mailboxes(), mail=Reply(550, ("5.7.1 blocked using spamhaus",)))
    session, _ = drive(session_flow(plan(["a.b@acme.com"]), SETTINGS, "mx", "ip"), server)
    assert session.failure == "policy_block"
    assert not server.rcpts


def test_timeout_during_candidates_keeps_what_was_learned() -> None:
    def answer(address: str) -> Reply | BaseException:
        if address.startswith("c1"):
            return SessionBroken("timeout")
        return Reply(550, ("5.1.1 unknown",))

    session, _ = drive(session_flow(plan([f"c{i}@acme.com" for i in range(4)]), SETTINGS,
                                    "mx", "ip"), ScriptedServer(answer))
    assert session.random is Verdict.REJECTED
    assert session.verdicts == {"c0@acme.com": Verdict.REJECTED}
    assert session.stopped == "timeout"


# -- the domain probe -----------------------------------------------------------------------------


def world(hosts: dict[str, list[str]], behaviour: Callable[[str], Any]) -> Callable[[Any], Any]:
    """DNS from `hosts`; Connect/Exchange by `behaviour(ip)` -> ConnectFailed or a server."""
    servers: dict[str, Any] = {}
    current: list[Any] = []

    def respond(action: Any) -> Any:
        if isinstance(action, DnsQuery):
            name = action.name.rstrip(".")
            if action.rdtype == "A" and name in hosts:
                return DnsAnswer("ok", addresses=tuple(hosts[name]))
            return DnsAnswer("noanswer")
        if isinstance(action, Connect):
            made = behaviour(action.ip)
            if isinstance(made, BaseException):
                return made
            servers.setdefault(action.ip, made)
            current[:] = [made]
            return None
        if isinstance(action, Exchange):
            return current[0](action)
        if isinstance(action, (Close, Sleep)):
            return None
        raise AssertionError(action)

    return respond


MAIL = MailDomain("acme.com", "mx", ("mx1.acme.com", "mx2.acme.com"))


def test_probe_moves_to_the_backup_mx_when_the_first_refuses() -> None:
    server = ScriptedServer(mailboxes("jane.doe@acme.com"))
    respond = world({"mx1.acme.com": ["192.0.2.1"], "mx2.acme.com": ["192.0.2.2"]},
                    lambda ip: ConnectFailed("refused") if ip == "192.0.2.1" else server)
    result, actions = drive(probe_flow(MAIL, plan(["jane.doe@acme.com"]), SETTINGS), respond)
    assert result.session.host == "mx2.acme.com"
    assert result.session.verdicts["jane.doe@acme.com"] is Verdict.ACCEPTED
    assert [a.ip for a in actions if isinstance(a, Connect)] == ["192.0.2.1", "192.0.2.2"]


def test_probe_reports_unreachable_when_no_host_connects() -> None:
    respond = world({"mx1.acme.com": ["192.0.2.1"], "mx2.acme.com": ["192.0.2.2"]},
                    lambda ip: ConnectFailed("timeout"))
    result, _ = drive(probe_flow(MAIL, plan(["jane.doe@acme.com"]), SETTINGS), respond)
    assert (result.failure, result.unreachable, result.session) == ("smtp_unreachable", True, None)


def test_greylisting_retries_once_after_a_pause_with_the_same_random_address() -> None:
    seen: set[str] = set()

    def greylist(address: str) -> Reply:
        if address not in seen:
            seen.add(address)
            return Reply(451, ("4.7.1 greylisted",))
        return mailboxes("jane.doe@acme.com")(address)

    server = ScriptedServer(greylist)
    respond = world({"mx1.acme.com": ["192.0.2.1"]}, lambda ip: server)
    mail = MailDomain("acme.com", "mx", ("mx1.acme.com",))
    result, actions = drive(probe_flow(mail, plan(["jane.doe@acme.com", "jdoe@acme.com"]),
                                       SETTINGS), respond)
    sleeps = [a for a in actions if isinstance(a, Sleep)]
    assert sleeps == [Sleep(5.0)]
    assert result.retried and result.sessions == 2
    randoms = [r for r in server.rcpts if r.startswith("zq0random0test")]
    assert randoms == ["zq0random0test@acme.com"] * 2
    assert result.session.verdicts["jane.doe@acme.com"] is Verdict.ACCEPTED


def test_greylisting_retry_can_be_switched_off() -> None:
    server = ScriptedServer(lambda address: Reply(451, ("4.7.1 greylisted",)))
    respond = world({"mx1.acme.com": ["192.0.2.1"]}, lambda ip: server)
    mail = MailDomain("acme.com", "mx", ("mx1.acme.com",))
    settings = ProbeSettings(helo_name="p", greylist_retry_delay=None)
    result, actions = drive(probe_flow(mail, plan(["jane.doe@acme.com"]), settings), respond)
    assert not any(isinstance(a, Sleep) for a in actions)
    assert decide(["jane.doe@acme.com"], result).reason == "greylisted"


# -- DNS interpretation ---------------------------------------------------------------------------


def dns_world(answers: dict[tuple[str, str], DnsAnswer]) -> Callable[[Any], Any]:
    def respond(action: Any) -> Any:
        assert isinstance(action, DnsQuery)
        return answers.get((action.name, action.rdtype), DnsAnswer("noanswer"))

    return respond


def test_mx_records_sorted_by_preference() -> None:
    mail, _ = drive(mail_domain_flow("acme.com"), dns_world({
        ("acme.com.", "MX"): DnsAnswer("ok", mx=((20, "b.acme.com"), (10, "A.acme.com."))),
    }))
    assert (mail.status, mail.hosts) == ("mx", ("a.acme.com", "b.acme.com"))


def test_null_mx_and_a_null_mx_mixed_with_real_ones() -> None:
    null, _ = drive(mail_domain_flow("acme.com"), dns_world({
        ("acme.com.", "MX"): DnsAnswer("ok", mx=((0, ""),))}))
    assert null.status == "null_mx" and not null.accepts_mail
    mixed, _ = drive(mail_domain_flow("acme.com"), dns_world({
        ("acme.com.", "MX"): DnsAnswer("ok", mx=((0, ""), (10, "mx.acme.com")))}))
    assert mixed.hosts == ("mx.acme.com",)


def test_no_mx_falls_back_to_the_address_then_to_no_mx() -> None:
    implicit, actions = drive(mail_domain_flow("acme.com"), dns_world({
        ("acme.com.", "AAAA"): DnsAnswer("ok", addresses=("2001:db8::1",))}))
    assert (implicit.status, implicit.hosts) == ("implicit", ("acme.com",))
    assert [a.rdtype for a in actions] == ["MX", "A", "AAAA"]
    none, _ = drive(mail_domain_flow("acme.com"), dns_world({}))
    assert none.status == "no_mx"
    evidence_only, actions = drive(mail_domain_flow("acme.com", implicit=False), dns_world({
        ("acme.com.", "A"): DnsAnswer("ok", addresses=("192.0.2.1",))}))
    assert evidence_only.status == "no_mx" and len(actions) == 1


@pytest.mark.parametrize(("answer", "status"), [(DnsAnswer("nxdomain"), "nxdomain"),
                                                (DnsAnswer("error", error="timed out"),
                                                 "dns_error")])
def test_dns_failures_become_statuses(answer: DnsAnswer, status: str) -> None:
    mail, _ = drive(mail_domain_flow("acme.com"), dns_world({("acme.com.", "MX"): answer}))
    assert mail.status == status


# -- decide ---------------------------------------------------------------------------------------


def session(**kwargs: Any) -> ProbeResult:
    s = Session("mx.acme.com", "192.0.2.1", **kwargs)
    return ProbeResult(s, s.failure, "detail", 1)


ADDRESSES = ["jane.doe@acme.com", "jdoe@acme.com", "jane@acme.com"]
R, A, T = Verdict.REJECTED, Verdict.ACCEPTED, Verdict.TEMPORARY


@pytest.mark.parametrize(
    ("probe", "status", "address", "reason"),
    [
        (session(random=R, verdicts={ADDRESSES[0]: R, ADDRESSES[1]: A}), "OK", ADDRESSES[1],
         "verified"),
        (session(random=A), "UNKNOWN", ADDRESSES[0], "catch_all"),
        (session(random=T, verdicts={ADDRESSES[0]: T}), "UNKNOWN", ADDRESSES[0], "greylisted"),
        (session(random=R, verdicts={a: R for a in ADDRESSES}), "NOT_FOUND", "", "rejected"),
        (session(random=R, verdicts={ADDRESSES[0]: R}), "UNKNOWN", ADDRESSES[1], "rcpt_limit"),
        (session(random=R, verdicts={ADDRESSES[0]: R}, stopped="timeout"), "UNKNOWN",
         ADDRESSES[1], "timeout"),
        (session(random=R, verdicts={ADDRESSES[0]: T}), "UNKNOWN", ADDRESSES[0], "temp_error"),
        (session(failure="policy_block"), "UNKNOWN", ADDRESSES[0], "policy_block"),
        (ProbeResult(None, "smtp_unreachable", "no", unreachable=True), "UNKNOWN", ADDRESSES[0],
         "smtp_unreachable"),
    ],
)
def test_decide(probe: ProbeResult, status: str, address: str, reason: str) -> None:
    decision = decide(ADDRESSES, probe)
    assert (decision.status, decision.address, decision.reason) == (status, address, reason)


def test_ok_needs_the_random_address_rejected_in_the_same_session() -> None:
    # The candidate was accepted, but so was the random address: that proves nothing.
    probe = session(random=A, verdicts={ADDRESSES[0]: A})
    assert decide(ADDRESSES, probe).status == "UNKNOWN"
