"""The engine against real DNS and SMTP servers on 127.0.0.x (see tests/mailworld.py).

Every probing test checks the server-side transcript too: no DATA, at most `max_rcpt` RCPT per
session, one session per domain (two only for a greylisting retry, with the same random address).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import dns.resolver
import pytest
from mailworld import WORLD_IPS, MailWorld, SessionLog, smtp_connections

from lead_finder.engine import Engine
from lead_finder.engine import core as engine_core
from lead_finder.leads import Lead
from lead_finder.models import Mode, Result, Source, Status

pytestmark = pytest.mark.integration

MAX_RCPT = 8


@pytest.fixture(autouse=True)
def clean_world(world: MailWorld) -> None:
    world.reset()


def make_engine(world: MailWorld, **overrides: Any) -> Engine:
    options: dict[str, Any] = {
        "resolver": world.resolver(),
        "smtp_probe": True,
        "smtp_port": world.smtp_port,
        "helo_name": "probe.lead-finder.example",
        "connect_timeout": 1.0,
        "command_timeout": 0.6,
        "greylist_retry_delay": 0.3,
        "max_rcpt": MAX_RCPT,
    }
    options.update(overrides)
    return Engine(**options)


def assert_polite(sessions: list[SessionLog], max_rcpt: int = MAX_RCPT) -> None:
    """No message is ever sent, no session asks too much, and each ends cleanly."""
    for log in sessions:
        assert "DATA" not in log.verbs and "VRFY" not in log.verbs and "EXPN" not in log.verbs
        assert len(log.rcpts) <= max_rcpt
        if log.commands:
            assert log.verbs[0] == "EHLO"


def random_part(log: SessionLog) -> str:
    return log.rcpts[0].split("@")[0]


def check(result: Result, status: Status, reason: str, email: str | None = None) -> None:
    assert (result.status, result.extra["reason"]) == (status, reason), result.extra
    assert result.source is Source.ENGINE
    assert result.extra["detail"]
    json.dumps(result.extra)  # results are cached and served as JSON
    if email is not None:
        assert result.email == email


# -- verification -------------------------------------------------------------------------------


def test_verified_address(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="verified.com"))
    check(result, Status.OK, "verified", "jane.doe@verified.com")
    assert result.extra["smtp_checked"] and result.extra["mail_host"] == "mx.verified.test"
    assert result.emails[0].type == "COMPANY"
    [log] = world.sessions_for("verified.com")
    assert log.ip == WORLD_IPS["accept"]
    assert log.verbs == ["EHLO", "MAIL", "RCPT", "RCPT", "QUIT"]
    assert log.commands[1] == "MAIL FROM:<>"
    random = random_part(log)
    assert len(random) == 14 and random not in {"jane.doe", "jdoe", "jane"}
    assert log.rcpts[1] == "jane.doe@verified.com"
    assert_polite([log])


def test_catch_all_is_unknown_and_remembered(world: MailWorld) -> None:
    engine = make_engine(world)
    result = engine.find(Lead("Jane Doe", domain="catchall.com"))
    check(result, Status.UNKNOWN, "catch_all", "jane.doe@catchall.com")
    assert result.extra["alternatives"] == ["jdoe@catchall.com", "jane@catchall.com"]
    [log] = world.sessions("catch_all")
    assert len(log.rcpts) == 1  # only the random address: candidates would prove nothing
    again = engine.find(Lead("John Smith", domain="catchall.com"))
    check(again, Status.UNKNOWN, "catch_all", "john.smith@catchall.com")
    assert len(world.sessions("catch_all")) == 1


def test_greylisting_is_retried_once_with_the_same_random_address(world: MailWorld) -> None:
    started = time.monotonic()
    result = make_engine(world).find(Lead("Jane Doe", domain="greylist.com"))
    assert time.monotonic() - started >= 0.3  # waited before retrying
    check(result, Status.OK, "verified", "jane.doe@greylist.com")
    assert result.extra["smtp_sessions"] == 2
    first, second = world.sessions("greylist")
    assert random_part(first) == random_part(second)
    # The first session registered the candidates with the greylister; the retry found her.
    assert "jane.doe@greylist.com" in first.rcpts
    assert second.rcpts[1] == "jane.doe@greylist.com"
    assert_polite([first, second])


def test_greylisted_without_retry_is_unknown(world: MailWorld) -> None:
    result = make_engine(world, greylist_retry_delay=None).find(
        Lead("Jane Doe", domain="greylist.com"))
    check(result, Status.UNKNOWN, "greylisted", "jane.doe@greylist.com")
    assert len(world.sessions("greylist")) == 1


def test_backup_mx_when_the_primary_refuses(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="backup.com"))
    check(result, Status.OK, "verified", "jane.doe@backup.com")
    assert result.extra["mail_hosts"] == ["mx1.backup.test", "mx2.backup.test"]
    assert result.extra["mail_host"] == "mx2.backup.test"
    [log] = world.sessions_for("backup.com")
    assert_polite([log])
    asked = world.dns_resolver.queries
    assert ("mx1.backup.test", "A") in asked and ("mx2.backup.test", "A") in asked


def test_no_mx_falls_back_to_the_domains_address(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="amx.com"))
    check(result, Status.OK, "verified", "jane.doe@amx.com")
    [log] = world.sessions("implicit")  # the server on amx.com's own A record
    assert_polite([log])


@pytest.mark.parametrize(
    ("domain", "reason"),
    [("nullmx.com", "null_mx"), ("missing.com", "nxdomain"), ("noaddr.com", "no_mx")],
)
def test_domains_without_mail_are_not_found(world: MailWorld, domain: str, reason: str) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain=domain))
    check(result, Status.NOT_FOUND, reason)
    assert result.email is None
    assert world.sessions() == []


def test_421_greeting_is_a_temporary_error(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="banner421.com"))
    check(result, Status.UNKNOWN, "temp_error", "jane.doe@banner421.com")
    [log] = world.sessions("banner421")
    assert log.commands == []


def test_silent_server_times_out(world: MailWorld) -> None:
    started = time.monotonic()
    result = make_engine(world).find(Lead("Jane Doe", domain="silent.com"))
    elapsed = time.monotonic() - started
    check(result, Status.UNKNOWN, "timeout", "jane.doe@silent.com")
    assert 0.5 <= elapsed < 3.0
    [log] = world.sessions("silent")
    assert log.commands == []  # we waited for its greeting and said nothing


def test_slow_server_within_the_timeout_is_verified(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="slow.com"))
    check(result, Status.OK, "verified", "jane.doe@slow.com")


def test_server_slower_than_the_timeout(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="tooslow.com"))
    check(result, Status.UNKNOWN, "timeout", "jane.doe@tooslow.com")
    [log] = world.sessions("tooslow")
    assert len(log.rcpts) == 1
    assert_polite([log])


def test_refused_connection_is_smtp_unreachable_with_a_hint(world: MailWorld) -> None:
    with smtp_connections(world.smtp_port) as connects:
        result = make_engine(world).find(Lead("Jane Doe", domain="refused.com"))
    check(result, Status.UNKNOWN, "smtp_unreachable", "jane.doe@refused.com")
    assert "SIXTYFOUR_API_KEY" in result.extra["hint"]
    assert connects == [(WORLD_IPS["refused"], world.smtp_port)]


def test_policy_block(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="blocked.com"))
    check(result, Status.UNKNOWN, "policy_block", "jane.doe@blocked.com")
    assert "spamhaus" in result.extra["detail"]
    [log] = world.sessions("blocked")
    assert log.rcpts == []


def test_dns_servfail_is_unknown_with_the_best_guess(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="servfail.com"))
    check(result, Status.UNKNOWN, "dns_error", "jane.doe@servfail.com")
    assert world.sessions() == []


# -- several leads --------------------------------------------------------------------------------


def test_one_session_per_domain_for_many_leads(world: MailWorld) -> None:
    leads = [
        Lead("Jane Doe", domain="flast.com"),
        Lead("Alan Smith", domain="flast.com"),
        Lead("Jane Doe", domain="verified.com"),
        Lead("John Smith", domain="verified.com"),
        Lead("Nobody Known", domain="flast.com"),
        Lead("Jane Doe", domain="catchall.com"),
    ]
    results = make_engine(world).find_many(leads)
    assert [r.lead["name"] for r in results] == [lead.name for lead in leads]  # input order
    check(results[0], Status.OK, "verified", "jdoe@flast.com")
    check(results[1], Status.OK, "verified", "asmith@flast.com")
    check(results[2], Status.OK, "verified", "jane.doe@verified.com")
    check(results[3], Status.OK, "verified", "john.smith@verified.com")
    assert results[4].status is Status.UNKNOWN
    assert results[4].extra["reason"] == "rcpt_limit"
    check(results[5], Status.UNKNOWN, "catch_all")
    sessions = world.sessions()
    for domain in ("flast.com", "verified.com", "catchall.com"):
        assert len(world.sessions_for(domain)) == 1, domain
    assert all(len(log.domains) == 1 for log in sessions)
    assert_polite(sessions)
    # verified.com and flast.com share a mail server: their sessions took turns (the second
    # connected only after the first had said QUIT).
    [first, second] = sorted(world.sessions("accept"), key=lambda log: log.opened)
    assert first.verbs[-1] == "QUIT"
    assert first.last_command is not None and first.last_command <= second.opened
    [flast] = world.sessions_for("flast.com")
    # The leads take turns; once jdoe was accepted, {f}{last} is asked first for the others.
    assert flast.rcpts[1:] == [
        "jane.doe@flast.com", "alan.smith@flast.com", "nobody.known@flast.com",
        "jdoe@flast.com", "asmith@flast.com", "nknown@flast.com", "nobody@flast.com",
    ]
    assert results[4].email == "nobodyknown@flast.com"
    assert not set(results[4].extra["alternatives"]) & set(flast.rcpts)


def test_rcpt_limit_is_respected(world: MailWorld) -> None:
    result = make_engine(world, max_rcpt=4).find(Lead("Nobody Known", domain="verified.com"))
    check(result, Status.UNKNOWN, "rcpt_limit")
    [log] = world.sessions_for("verified.com")
    assert len(log.rcpts) == 4
    assert_polite([log], max_rcpt=4)
    rejected = set(log.rcpts[1:])
    assert result.email not in rejected  # the best candidate not rejected
    assert result.email == "nobodyknown@verified.com"  # 4th-ranked after three rejections


def test_every_candidate_rejected_is_not_found(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Zed", domain="verified.com"))
    check(result, Status.NOT_FOUND, "rejected")
    [log] = world.sessions_for("verified.com")
    assert log.rcpts[1:] == ["zed@verified.com"]


def test_transliteration_at_a_german_domain(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jürgen Müller", domain="umlaut.de"))
    check(result, Status.OK, "verified", "juergen.mueller@umlaut.de")
    [log] = world.sessions_for("umlaut.de")
    assert log.rcpts[1] == "juergen.mueller@umlaut.de"  # expanded spelling asked first at .de


# -- learning ------------------------------------------------------------------------------------


def test_known_emails_teach_the_pattern_and_save_rcpts(world: MailWorld) -> None:
    engine = make_engine(world, known_emails=["Bob Jones <bjones@flast.com>"])
    result = engine.find(Lead("Jane Doe", domain="flast.com"))
    check(result, Status.OK, "verified", "jdoe@flast.com")
    assert result.extra["pattern"] == "{f}{last}"
    [log] = world.sessions_for("flast.com")
    assert log.rcpts[1:] == ["jdoe@flast.com"]


def test_rows_with_an_email_teach_their_colleagues(world: MailWorld) -> None:
    results = make_engine(world).find_many([
        Lead("Bob Jones", domain="flast.com", email="bjones@flast.com"),
        Lead("Alan Smith", domain="flast.com"),
    ])
    check(results[0], Status.OK, "verified", "bjones@flast.com")
    assert results[0].extra["pattern"] == "given"
    check(results[1], Status.OK, "verified", "asmith@flast.com")
    [log] = world.sessions_for("flast.com")
    assert log.rcpts[1:] == ["bjones@flast.com", "asmith@flast.com"]


def test_verified_results_teach_later_lookups(world: MailWorld) -> None:
    engine = make_engine(world)
    engine.find(Lead("Jane Doe", domain="flast.com"))
    world.reset()
    engine.find(Lead("Alan Smith", domain="flast.com"))
    [log] = world.sessions_for("flast.com")
    assert log.rcpts[1] == "asmith@flast.com"


def test_learn_api(world: MailWorld) -> None:
    engine = make_engine(world, smtp_probe=False)
    assert engine.learn([("Bob Jones", "bjones@flast.com"), ("Jane Doe", "sales@flast.com"),
                         ("Jane Doe", "jane@gmail.com")]) == 1
    assert engine.rank("Ann Lee", "flast.com")[0].local == "alee"


# -- domains from company names ------------------------------------------------------------------


def test_company_name_resolved_with_mx_evidence(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", "Globex Corporation"))
    check(result, Status.OK, "verified", "jane.doe@globex.com")
    assert result.extra["domain_guessed"] is True
    assert "guessed" in result.extra["domain_note"]


@pytest.mark.parametrize("company", ["Initech", "Parked"])
def test_company_without_evidence_is_not_guessed(world: MailWorld, company: str) -> None:
    # Initech: no such domains. Parked: parked.com has an address but no MX, so no evidence.
    result = make_engine(world).find(Lead("Jane Doe", company))
    check(result, Status.NOT_FOUND, "no_domain")
    assert world.sessions() == []


def test_free_mail_is_never_the_company_domain(world: MailWorld) -> None:
    engine = make_engine(world)
    result = engine.find(Lead("Jane Doe", email="jane.doe@gmail.com"))
    check(result, Status.NOT_FOUND, "free_mail_domain")
    with_company = engine.find(Lead("Jane Doe", "Globex Corporation", email="jd@gmail.com"))
    check(with_company, Status.OK, "verified", "jane.doe@globex.com")
    assert ("gmail.com", "MX") not in world.dns_resolver.queries


def test_personal_mode_is_not_supported(world: MailWorld) -> None:
    result = make_engine(world).find(Lead("Jane Doe", domain="verified.com"), Mode.PERSONAL)
    check(result, Status.NOT_FOUND, "personal_not_supported")
    assert result.mode is Mode.PERSONAL
    assert result.personal_emails[0].type == "PERSONAL"
    assert world.dns_resolver.queries == [] and world.sessions() == []


def test_lead_without_a_name(world: MailWorld) -> None:
    result = make_engine(world).find(Lead(linkedin="https://www.linkedin.com/in/janedoe"))
    check(result, Status.NOT_FOUND, "no_name")
    email_only = make_engine(world).find(Lead(email="john.smith@verified.com"))
    check(email_only, Status.OK, "verified", "john.smith@verified.com")
    free_mail_only = make_engine(world).find(Lead(email="jane.doe@gmail.com"))
    check(free_mail_only, Status.NOT_FOUND, "free_mail_domain")


# -- consent --------------------------------------------------------------------------------------


def test_without_opt_in_no_smtp_connection_is_made(world: MailWorld) -> None:
    domains = ["verified.com", "catchall.com", "greylist.com", "backup.com", "amx.com",
               "banner421.com", "silent.com", "slow.com", "tooslow.com", "refused.com",
               "blocked.com", "nullmx.com", "missing.com", "servfail.com"]
    leads = [Lead("Jane Doe", domain=d) for d in domains] + [Lead("Jane Doe", "Globex Corp")]
    with smtp_connections(world.smtp_port) as connects:
        results = make_engine(world, smtp_probe=False).find_many(leads)
        asyncio.run(make_engine(world, smtp_probe=False).afind_many(leads))
    assert connects == []
    assert world.sessions() == []
    by_domain = {r.extra["domain"]: r for r in results}
    for domain in ("verified.com", "catchall.com", "amx.com", "refused.com", "globex.com"):
        check(by_domain[domain], Status.UNKNOWN, "unverified", f"jane.doe@{domain}")
        assert "enable-smtp-probe" in by_domain[domain].extra["hint"]
    check(by_domain["nullmx.com"], Status.NOT_FOUND, "null_mx")
    check(by_domain["missing.com"], Status.NOT_FOUND, "nxdomain")
    check(by_domain["servfail.com"], Status.UNKNOWN, "dns_error")


def test_verify_false_asks_nothing_of_smtp(world: MailWorld) -> None:
    with smtp_connections(world.smtp_port) as connects:
        result = make_engine(world).find(Lead("Jane Doe", domain="verified.com"), verify=False)
    check(result, Status.UNKNOWN, "unverified", "jane.doe@verified.com")
    assert connects == []


def test_probing_follows_the_users_choice_by_default(
    world: MailWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("LEAD_FINDER_SMTP_PROBE", raising=False)
    assert make_engine(world, smtp_probe=None).smtp_probe is False
    monkeypatch.setenv("LEAD_FINDER_SMTP_PROBE", "1")
    assert make_engine(world, smtp_probe=None).smtp_probe is True


# -- a hostile network ----------------------------------------------------------------------------


def test_blocked_port_25_stops_probing_after_three_domains(world: MailWorld) -> None:
    engine = make_engine(world)
    for domain in ("refused.com", "refused2.com", "refused3.com"):
        check(engine.find(Lead("Jane Doe", domain=domain)), Status.UNKNOWN, "smtp_unreachable")
    with smtp_connections(world.smtp_port) as connects:
        result = engine.find(Lead("Jane Doe", domain="verified.com"))
    check(result, Status.UNKNOWN, "smtp_unreachable", "jane.doe@verified.com")
    assert "not tried" in result.extra["detail"]
    assert connects == [] and world.sessions() == []


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_no_dns_answers_gives_honest_results_quickly(world: MailWorld) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.port = closed_udp_port()
    resolver.nameservers = ["127.0.0.1"]
    resolver.timeout = resolver.lifetime = 0.2
    engine = make_engine(world, resolver=resolver, max_parallel_domains=2)
    leads = [Lead("Jane Doe", domain=f"company{i}.com") for i in range(12)]
    leads.append(Lead("Jane Doe", "Globex Corporation"))
    started = time.monotonic()
    results = engine.find_many(leads)
    assert time.monotonic() - started < 4.0  # DNS is given up on, not waited for 13 times
    for result in results[:-1]:
        check(result, Status.UNKNOWN, "dns_error")
        assert result.email and result.email.startswith("jane.doe@company")
    check(results[-1], Status.NOT_FOUND, "dns_error")
    assert world.sessions() == []


def test_no_dns_configuration_at_all(
    world: MailWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unconfigured(*args: Any, **kwargs: Any) -> dns.resolver.Resolver:
        raise dns.resolver.NoResolverConfiguration("no /etc/resolv.conf")

    monkeypatch.setattr(engine_core.dns.resolver, "Resolver", unconfigured)
    engine = Engine(smtp_probe=True)
    result = engine.find(Lead("Jane Doe", domain="verified.com"))
    check(result, Status.UNKNOWN, "dns_error", "jane.doe@verified.com")
    assert "configured" in result.extra["detail"]


# -- async -----------------------------------------------------------------------------------------


def test_async_gives_the_same_answers(world: MailWorld) -> None:
    leads = [Lead("Jane Doe", domain=d) for d in
             ("verified.com", "catchall.com", "greylist.com", "backup.com", "nullmx.com",
              "refused.com", "banner421.com")]
    leads.append(Lead("Alan Smith", domain="flast.com"))
    results = asyncio.run(make_engine(world).afind_many(leads))
    expected = [
        (Status.OK, "verified"), (Status.UNKNOWN, "catch_all"), (Status.OK, "verified"),
        (Status.OK, "verified"), (Status.NOT_FOUND, "null_mx"),
        (Status.UNKNOWN, "smtp_unreachable"), (Status.UNKNOWN, "temp_error"),
        (Status.OK, "verified"),
    ]
    assert [(r.status, r.extra["reason"]) for r in results] == expected
    greylist = world.sessions("greylist")
    assert len(greylist) == 2 and random_part(greylist[0]) == random_part(greylist[1])
    assert_polite(world.sessions())
    single = asyncio.run(make_engine(world).afind(Lead("John Smith", domain="verified.com")))
    check(single, Status.OK, "verified", "john.smith@verified.com")


# -- preflight ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "ok", "words"),
    [("verified.com", True, "reachable"), ("refused.com", False, "refused"),
     ("banner421.com", False, "421"), ("silent.com", False, "timeout"),
     ("nullmx.com", False, "null MX")],
)
def test_smtp_preflight(world: MailWorld, domain: str, ok: bool, words: str) -> None:
    reachable, detail = make_engine(world).smtp_preflight(domain)
    assert reachable is ok and words in detail
    for log in world.sessions():
        assert "RCPT" not in log.verbs and "MAIL" not in log.verbs
