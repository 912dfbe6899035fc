"""LeadFinder against our Sixtyfour-compatible server on 127.0.0.1: the server's charge counter and
request counts are the oracle for "never pay twice"."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from servers import live_server, lost_answer_client
from synthetic import synthetic_people, thousand_leads, write_directory

from lead_finder import Mode, Status
from lead_finder.errors import ConfigurationError
from lead_finder.finder import LeadFinder, Progress
from lead_finder.server import DirectoryBackend

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_directory(tmp_path_factory.mktemp("directory") / "people.csv")


def test_thousand_leads_each_charged_once_in_full_bulk_requests(
    directory: Path, make_finder: Callable[..., LeadFinder], tmp_path: Path
) -> None:
    leads, expected = thousand_leads()
    seen: list[Progress] = []
    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        finder = make_finder(srv)
        results = finder.find_many(leads, progress=seen.append)

        assert [r.email for r in results] == expected  # input order, right person
        assert all(r.status is Status.OK for r in results)
        assert len(srv.stats.charges) == 800
        assert srv.stats.duplicate_charges == 0
        assert srv.stats.requests["/find-email-bulk-async"] == math.ceil(800 / 100)
        assert seen[-1].done == seen[-1].total == 1000
        assert seen[-1].counts[Status.OK] == 1000

        srv.stats.reset()
        again = make_finder(srv).find_many(leads)  # a second run, a fresh finder, same cache
        assert [r.email for r in again] == expected
        assert sum(srv.stats.requests.values()) == 0


def test_invalid_leads_cost_nothing_and_say_why(make_finder: Callable[..., LeadFinder]) -> None:
    bad = [("", "Acme"), (None, "Acme"), (42, "Acme"), ("=HYPERLINK()", "Acme"), ("N/A", "Acme"),
           ("#REF!", "Acme"), ("Jane Doe", "#N/A"), ("x" * 300, "Acme"), (True, "Acme"),
           ("Jane Doe", "")]
    with live_server() as srv:
        finder = make_finder(srv)
        results = finder.find_many(bad)
        single = finder.find("Jane Doe", "Acme", mode="PERSONNAL")
        assert sum(srv.stats.requests.values()) == 0
    assert all(r.status is Status.ERROR and r.error for r in results)
    reasons = [r.error for r in results]
    assert reasons[0] == "name is empty"
    assert "formula" in (reasons[3] or "")
    assert "PERSONAL" in (single.error or "") and "PROFESSIONAL" in (single.error or "")
    assert not any("Traceback" in (r or "") for r in reasons)


def test_estimate_subtracts_duplicates_cache_and_invalid(
    make_finder: Callable[..., LeadFinder],
) -> None:
    leads = [("Jane Doe", "Acme Inc."), ("doe, jane", "ACME"), ("John Smith", "Acme Inc."),
             ("", "Acme"), ("Hank Scorpio", "Globex Corporation")]
    with live_server() as srv:
        finder = make_finder(srv)
        finder.find("Jane Doe", "Acme Inc.")
        srv.stats.reset()
        estimate = finder.estimate(leads)
        personal = finder.estimate(leads, mode="personal")
        assert sum(srv.stats.requests.values()) == 0
    assert (estimate.rows, estimate.invalid, estimate.unique, estimate.cached) == (5, 1, 3, 1)
    assert (estimate.billable, estimate.cost_cents) == (2, 10)
    assert personal.mode is Mode.PERSONAL and personal.billable == 3 and personal.cost_cents == 60
    assert estimate.describe() == "5 rows · 1 invalid · 3 unique · 1 cached · 2 billable ≈ $0.10"


def test_budget_stops_after_exactly_twenty_lookups(
    directory: Path, make_finder: Callable[..., LeadFinder]
) -> None:
    people = synthetic_people()[:30]
    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        finder = make_finder(srv, budget="1.00")
        results = finder.find_many([(p["name"], p["company"]) for p in people])
        later = finder.find(people[-1]["name"], people[-1]["company"])
        paid_again = finder.find(people[0]["name"], people[0]["company"])  # cached: still free
        assert srv.stats.total_cents == 100
        assert len(srv.stats.charges) == 20
    found = [r for r in results if r.status is Status.OK]
    stopped = [r for r in results if r.status is Status.ERROR]
    assert len(found) == 20 and len(stopped) == 10
    assert all("budget reached" in (r.error or "") for r in stopped)
    assert "budget reached" in (later.error or "")
    assert paid_again.status is Status.OK
    assert finder.budget_left_cents() == 0


def test_without_a_usable_key_the_cache_still_answers(tmp_path: Path) -> None:
    with live_server() as srv:
        with LeadFinder(srv.api_key, base_url=srv.base_url, cache_path=tmp_path / "c.sqlite3",
                        poll_interval=0.02, use_keyring=False) as paid:
            paid.find("Jane Doe", "Acme Inc.")
    with LeadFinder(cache_path=tmp_path / "c.sqlite3", backend="sixtyfour",
                    use_keyring=False) as keyless:
        assert keyless.find("Doe, Jane", "ACME").email == "jane.doe@acme-inc.com"
        with pytest.raises(ConfigurationError, match="SIXTYFOUR_API_KEY"):
            keyless.find_many([("John Smith", "Acme Inc.")])
        cell = keyless.find("John Smith", "Acme Inc.")
    assert cell.status is Status.ERROR and "SIXTYFOUR_API_KEY" in (cell.error or "")
    with LeadFinder(cache_path=tmp_path / "c.sqlite3", use_keyring=False) as engine_only:
        assert engine_only.local
        paid = engine_only.find("Jane Doe", "Acme Inc.")  # the paid answer beats a free guess
        assert paid.email == "jane.doe@acme-inc.com" and paid.source.value == "cache"
        assert engine_only.estimate([("Jane Doe", "Acme")]).cached == 1


def test_single_finds_from_many_threads_are_coalesced(
    make_finder: Callable[..., LeadFinder],
) -> None:
    names = [("Jane Doe", "Acme Inc."), ("John Smith", "Acme Inc."), ("Hank Scorpio", "Globex"),
             ("Peter Gibbons", "Initech"), ("Monica Hall", "Raviga Capital")]
    answers: list[Any] = []
    with live_server() as srv:
        finder = make_finder(srv, quiet=0.2)
        barrier = threading.Barrier(20)

        def ask(i: int) -> None:
            barrier.wait()
            answers.append(finder.find(*names[i % len(names)]))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert srv.stats.requests["/find-email-bulk-async"] == 1
        assert len(srv.stats.charges) == 5 and srv.stats.duplicate_charges == 0
    assert all(a.status is Status.OK for a in answers)


def test_faults_at_realistic_rates_lose_nothing_and_charge_nothing_twice(
    directory: Path, make_finder: Callable[..., LeadFinder], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lead_finder.server.gateway import FaultPlan

    injected: Counter[str] = Counter()
    choose = FaultPlan.choose

    def counting(self: FaultPlan, header: str | None) -> str | None:
        fault = choose(self, header)
        injected[fault or "none"] += 1
        return fault

    monkeypatch.setattr(FaultPlan, "choose", counting)
    people = synthetic_people()[:300]
    leads = [(p["name"], p["company"]) for p in people]
    expected = {p["name"]: p["email"] for p in people}
    rates = {"429": 0.1, "500": 0.05, "slow": 0.05, "truncate": 0.05}
    with live_server(backend=DirectoryBackend.from_csv(directory), enable_faults=True,
                     fault_rates=rates, seed=5, slow_interval=0.05) as srv:
        finder = make_finder(srv, timeout=1.0)
        first = [r for start in range(0, 300, 20)
                 for r in finder.find_many(leads[start:start + 20])]
        second = make_finder(srv, timeout=1.0).find_many(leads)
        charged = set(srv.stats.charges)
        assert srv.stats.duplicate_charges == 0
        ambiguous_jobs = finder.store.jobs({"ambiguous"})

    assert all(injected[f] > 0 for f in rates), injected  # every fault really happened
    ambiguous_keys = {k for job in ambiguous_jobs for k in job.keys}
    for results in (first, second):
        for lead, result in zip(leads, results, strict=True):
            if result.status is Status.OK:
                assert result.email == expected[lead[0]]
            else:  # not silently lost: it is in an ambiguous job the user can see
                assert result.key in ambiguous_keys, result.error
                assert "may have been charged" in (result.error or "")
    # what the server billed either came back or is listed as ambiguous, and nothing else
    answered = {r.key for r in second if r.status is Status.OK}
    assert answered | ambiguous_keys == charged
    assert len(answered) + len(ambiguous_keys) == 300


async def test_async_twins_share_the_batcher(make_finder: Callable[..., LeadFinder]) -> None:
    import asyncio

    with live_server() as srv:
        finder = make_finder(srv, quiet=0.2)
        singles = await asyncio.gather(
            finder.afind("Jane Doe", "Acme Inc."), finder.afind("doe, jane", "ACME"),
            finder.afind("Hank Scorpio", "Globex Corporation"),
        )
        many = await finder.afind_many([("Jane Doe", "Acme"), ("Peter Gibbons", "Initech")])
        assert srv.stats.requests["/find-email-bulk-async"] == 2
        assert srv.stats.duplicate_charges == 0
    assert [r.email for r in singles] == ["jane.doe@acme-inc.com", "jane.doe@acme-inc.com",
                                          "hank@globex-corp.com"]
    assert many[0].source.value == "cache" and many[1].email == "peter.gibbons@initech-software.com"


def test_what_ambiguous_jobs_may_have_cost_counts_against_the_budget(
    make_finder: Callable[..., LeadFinder],
) -> None:
    with live_server(enable_faults=True) as srv:
        finder = make_finder(srv, budget="0.10", daily_budget="0.20",
                             client=lost_answer_client(srv))
        lost = finder.find_many([("Jane Doe", "Acme Inc."), ("John Smith", "Acme Inc.")])
        assert all("may have been charged" in (r.error or "") for r in lost)
        assert finder.budget_left_cents() == 0  # 2 x $0.05 may be spent: the run's cap is hit
        stopped = finder.find("Hank Scorpio", "Globex Corporation")
        assert "budget reached" in (stopped.error or "")
        assert srv.stats.requests["/find-email-bulk-async"] == 1


def test_with_key_keeps_the_cache_and_the_tuning(tmp_path: Path) -> None:
    from lead_finder.config import Secret

    with live_server() as srv:
        keyless = LeadFinder(cache_path=tmp_path / "c.sqlite3", base_url=srv.base_url,
                             quiet=0.3, poll_interval=0.02, requests_per_minute=float("inf"),
                             verify=False, use_keyring=False)
        assert keyless.local
        keyed = keyless.with_key(Secret(srv.api_key))
        result = keyed.find("Jane Doe", "Acme Inc.")
        keyless.close()
        keyed.close()
    assert not keyed.local and keyed.store.path == tmp_path / "c.sqlite3"
    assert keyed.verify is False and keyed.settings.sources["api_key"] == "this session"
    assert result.email == "jane.doe@acme-inc.com"
    assert srv.api_key not in repr(keyed)
