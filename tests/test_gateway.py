"""`lead-finder serve --backend hosted`: the team gateway. Reps talk to our server with their own
keys; only the server holds the upstream key, and the team shares one cache and ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers import live_server

from lead_finder import LeadFinder, Status
from lead_finder.server import FinderBackend

pytestmark = pytest.mark.integration


def test_gateway_buys_each_lead_once_for_the_whole_team(tmp_path: Path) -> None:
    with live_server() as upstream:

        def make(verify: bool) -> LeadFinder:
            return LeadFinder(upstream.api_key, base_url=upstream.base_url, verify=verify,
                              cache_path=tmp_path / "gateway.sqlite3", poll_interval=0.02,
                              requests_per_minute=float("inf"), use_keyring=False)

        backend = FinderBackend(make)
        with live_server(backend=backend, api_key="sk64_CANARY_rep_alice") as gateway:
            reps = [LeadFinder(gateway.api_key, base_url=gateway.base_url, poll_interval=0.02,
                               cache_path=tmp_path / f"rep{i}.sqlite3", use_keyring=False)
                    for i in range(2)]
            first = reps[0].find_many([("Jane Doe", "Acme Inc."), ("Hank Scorpio", "Globex")])
            second = reps[1].find_many([("doe, jane", "ACME"), ("Peter Gibbons", "Initech")])
            with gateway.client() as http:
                single = http.post("/find-email",
                                   json={"lead": {"name": "Jane Doe", "company": "Acme"}})
            for rep in reps:
                rep.close()
        backend.close()
        # three different people reached the upstream API, each bought once
        assert len(upstream.stats.charges) == 3 and upstream.stats.duplicate_charges == 0
        assert upstream.stats.requests["/find-email-bulk-async"] == 2
    assert [r.email for r in first + second] == [
        "jane.doe@acme-inc.com", "hank@globex-corp.com", "jane.doe@acme-inc.com",
        "peter.gibbons@initech-software.com"]
    assert all(r.status is Status.OK for r in first + second)
    assert single.status_code == 200 and single.json()["email"][0][0] == "jane.doe@acme-inc.com"
    # the upstream key never reached the reps' side: not in their caches
    for i in range(2):
        assert upstream.api_key.encode() not in (tmp_path / f"rep{i}.sqlite3").read_bytes()


def test_gateway_says_why_when_it_cannot_buy(tmp_path: Path) -> None:
    with live_server() as upstream:

        def make(verify: bool) -> LeadFinder:
            return LeadFinder(upstream.api_key, base_url=upstream.base_url, budget="0",
                              verify=verify, cache_path=tmp_path / "gateway.sqlite3",
                              use_keyring=False)

        backend = FinderBackend(make)
        with live_server(backend=backend) as gateway:
            with gateway.client() as http:
                answer = http.post("/find-email",
                                   json={"lead": {"name": "Jane Doe", "company": "Acme"}})
        backend.close()
        assert sum(upstream.stats.requests.values()) == 0
    assert answer.status_code == 502
    assert "budget reached" in answer.json()["detail"]
