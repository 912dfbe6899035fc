"""LeadFinder without an API key: the built-in engine answers, over the loopback mail world."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.resolver
import pytest
from mailworld import MailWorld

from lead_finder import LeadFinder, Source, Status
from lead_finder.engine import Engine

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def clean_world(world: MailWorld) -> None:
    world.reset()


def keyless(tmp_path: Path, world: MailWorld, **engine: Any) -> LeadFinder:
    options: dict[str, Any] = {"resolver": world.resolver(), "smtp_port": world.smtp_port,
                               "connect_timeout": 1.0, "command_timeout": 0.6,
                               "greylist_retry_delay": 0.3, "smtp_probe": True}
    options.update(engine)
    return LeadFinder(cache_path=tmp_path / "c.sqlite3", use_keyring=False,
                      engine=Engine(**options))


def test_no_key_uses_the_engine_and_caches_apart(tmp_path: Path, world: MailWorld) -> None:
    with keyless(tmp_path, world) as finder:
        assert finder.local and finder.estimate([("Jane Doe", "x")]).cost_cents == 0
        first = finder.find("Jane Doe", domain="verified.com")
        sessions = len(world.sessions())
        again = finder.find("doe, jane", domain="https://www.verified.com/team")
        assert len(world.sessions()) == sessions  # the second answer is the cache
    assert first.status is Status.OK and first.email == "jane.doe@verified.com"
    assert first.source is Source.ENGINE and first.extra["reason"] == "verified"
    assert first.key and first.key.startswith("engine:")
    assert again.source is Source.CACHE and again.email == first.email


def test_without_opt_in_no_smtp_and_an_honest_unknown(tmp_path: Path, world: MailWorld) -> None:
    with keyless(tmp_path, world, smtp_probe=False) as finder:
        results = finder.find_many([{"name": "Jane Doe", "domain": "verified.com"},
                                    {"name": "Jane Doe", "domain": "nxdomain.com"},
                                    {"name": "Jane Doe", "company": "Acme"}],
                                   mode="PROFESSIONAL")
        personal = finder.find("Jane Doe", domain="verified.com", mode="PERSONAL")
    assert world.sessions() == []
    assert [r.status for r in results] == [Status.UNKNOWN, Status.NOT_FOUND, Status.NOT_FOUND]
    assert results[0].extra["reason"] == "unverified"
    assert results[1].extra["reason"] == "nxdomain"
    assert personal.status is Status.NOT_FOUND
    assert personal.extra["reason"] == "personal_not_supported"


def test_dns_failure_is_reported_not_cached(tmp_path: Path) -> None:
    dead = dns.resolver.Resolver(configure=False)
    dead.nameservers = ["127.0.0.1"]
    dead.port = 9  # discard: nothing answers
    dead.lifetime = 0.5
    finder = LeadFinder(cache_path=tmp_path / "c.sqlite3", use_keyring=False,
                        engine=Engine(resolver=dead, smtp_probe=False))
    with finder:
        result = finder.find("Jane Doe", domain="verified.com")
        assert finder.cached({"name": "Jane Doe", "domain": "verified.com"}) is None
        hit = finder.find("Jane Doe", domain="verified.com")
    assert result.status is Status.UNKNOWN and result.extra["reason"] == "dns_error"
    assert hit.source is Source.ENGINE  # asked again, not answered from the cache


def test_server_local_backend_serves_the_engine(tmp_path: Path, world: MailWorld) -> None:
    from servers import live_server

    from lead_finder.server import FinderBackend

    def make(verify: bool) -> LeadFinder:
        return keyless(tmp_path, world) if verify else keyless(tmp_path, world, smtp_probe=False)

    backend = FinderBackend(make)
    with live_server(backend=backend) as srv, LeadFinder(
        srv.api_key, base_url=srv.base_url, cache_path=tmp_path / "client.sqlite3",
        poll_interval=0.02, use_keyring=False,
    ) as client:
        found = client.find_many([{"name": "Jane Doe", "domain": "verified.com"},
                                  {"name": "John Smith", "domain": "verified.com"}])
    backend.close()
    assert [r.email for r in found] == ["jane.doe@verified.com", "john.smith@verified.com"]
    assert all(r.status is Status.OK and r.source is Source.API for r in found)
    assert len(world.sessions_for("verified.com")) == 1  # one SMTP session for the batch


def test_readme_main_command_without_a_key(tmp_path: Path, world: MailWorld) -> None:
    """`lead-finder enrich examples/leads.csv -o out.csv` with no key: every row gets an honest
    status and reason, with DNS answered by the mail world (or by nobody, like an offline
    machine) and no SMTP, since probing was not switched on."""
    import csv
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "leads.csv"
    source.write_text(
        (root / "examples" / "leads.csv").read_text(encoding="utf-8")
        + "Jane Doe,Verified Inc.,verified.com,,\nJohn Smith,Null Ltd,nullmx.com,,\n",
        encoding="utf-8",
    )
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("SIXTYFOUR_", "LEAD_FINDER_"))}
    for dns_server, name in ((f"127.0.0.1:{world.dns_port}", "world"), ("127.0.0.1:9", "offline")):
        env = dict(base_env, LEAD_FINDER_DNS=dns_server,
                   LEAD_FINDER_CACHE=str(tmp_path / f"{name}.sqlite3"))
        out = tmp_path / f"{name}.csv"
        done = subprocess.run(
            [sys.executable, "-m", "lead_finder", "enrich", str(source), "-o", str(out),
             "--no-progress"], env=env, capture_output=True, text=True, timeout=120, cwd=root,
        )
        assert done.returncode == 0, done.stderr
        assert "billable ≈ $0.00" in done.stderr
        with out.open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 30
        for row in rows:
            assert row["email_status"] in ("OK", "UNKNOWN", "NOT_FOUND", "ERROR")
            assert row["email_reason"] or row["lookup_error"], row
        if name == "world":
            assert rows[0]["email_reason"] == "no_domain"  # "Acme Inc.": no domain to be found
            verified = rows[-2]
            assert verified["email"] == "jane.doe@verified.com"
            assert (verified["email_status"], verified["email_reason"]) == ("UNKNOWN", "unverified")
            assert rows[-1]["email_reason"] == "null_mx"
        else:
            assert rows[-2]["email_reason"] == "dns_error"
    assert world.sessions() == []


@pytest.mark.parametrize(("setting", "servers"), [
    ("127.0.0.1:5353,[::1]:53, 10.0.0.1", [("127.0.0.1", 5353), ("::1", 53), ("10.0.0.1", 53)]),
    ("::1", [("::1", 53)]),
])
def test_lead_finder_dns_names_the_servers(monkeypatch: pytest.MonkeyPatch, setting: str,
                                           servers: list[tuple[str, int]]) -> None:
    from lead_finder.engine.core import _default_resolver

    monkeypatch.setenv("LEAD_FINDER_DNS", setting)
    resolver, problem = _default_resolver()
    assert problem == "" and resolver is not None
    assert [(n.address, n.port) for n in resolver.nameservers] == servers  # type: ignore[attr-defined]


def test_a_bad_lead_finder_dns_is_reported_per_lead(monkeypatch: pytest.MonkeyPatch) -> None:
    from lead_finder.leads import Lead

    monkeypatch.setenv("LEAD_FINDER_DNS", "dns.example.com")
    result = Engine(smtp_probe=False).find(Lead.parse("Jane Doe", domain="verified.com"))
    assert result.extra["reason"] == "dns_error"
    assert "LEAD_FINDER_DNS must list IP addresses" in result.extra["detail"]


def test_smtp_preflight_needs_consent(world: MailWorld) -> None:
    engine = Engine(resolver=world.resolver(), smtp_port=world.smtp_port, smtp_probe=False)
    reachable, detail = engine.smtp_preflight("verified.com")
    assert not reachable and "enable-smtp-probe" in detail
    assert world.sessions() == []
