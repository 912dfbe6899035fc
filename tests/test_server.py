"""The Sixtyfour-compatible server, over real HTTP on 127.0.0.1 (httpx and raw sockets, never our
own client): endpoints, auth, validation, documented behaviours, jobs and restarts, webhooks, the
rate limit, every fault switch, and the charge counters.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import LiveServer, WebhookReceiver, live_server, serve_subprocess

from lead_finder.models import Mode
from lead_finder.server import FAULTS, DirectoryBackend, Person, Stats, create_app
from lead_finder.server.gateway import FaultPlan, KeyRing, SlidingWindowLimiter

ServerFactory = Callable[..., LiveServer]

JANE = {"name": "Jane Doe", "company": "Acme Inc."}
NOBODY = {"name": "Nobody Atall", "company": "Acme Inc."}


@pytest.fixture
def client(sixtyfour_server: LiveServer) -> Iterator[httpx.Client]:
    with sixtyfour_server.client() as c:
        yield c


def wait_job(client: httpx.Client, task_id: str, timeout: float = 10.0, **params: str) -> Any:
    """Poll job-status until the job leaves `running`."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/job-status/{task_id}", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "running":
            return body
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.02)


def raw_request(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request bytes, written by hand so nothing is hidden by a client library."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             f"Content-Length: {len(body)}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --------------------------------------------------------------------------------- unit parts


def test_limiter_slides_over_one_minute() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(3, clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]
    assert limiter.check("a") == pytest.approx(60.0)
    assert limiter.check("b") is None  # per key
    now[0] += 30
    assert limiter.check("a") == pytest.approx(30.0)  # rejected calls do not extend the window
    now[0] += 30
    assert limiter.check("a") is None
    assert SlidingWindowLimiter(0).check("a") is None  # 0: unlimited
    with pytest.raises(ValueError):
        SlidingWindowLimiter(-1)


def test_fault_plan_header_rates_and_seed() -> None:
    assert FaultPlan().choose(None) is None
    assert FaultPlan().choose(" HTML200 ") == "html200"
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan().choose("explode")
    with pytest.raises(ValueError):
        FaultPlan({"explode": 0.1})
    with pytest.raises(ValueError):
        FaultPlan({"500": 0.7, "503": 0.7})
    draws = [FaultPlan({"500": 0.3, "429": 0.3}, seed=7) for _ in range(2)]
    sequences = [[plan.choose(None) for _ in range(200)] for plan in draws]
    assert sequences[0] == sequences[1]
    counts = {name: sequences[0].count(name) for name in ("500", "429", None)}
    assert all(30 < n < 110 for n in counts.values()), counts


def test_key_ring_and_stats() -> None:
    ring = KeyRing(["k1", "k2"])
    assert ring.accepts("k2") and not ring.accepts("k3") and not ring.accepts("")
    with pytest.raises(ValueError):
        KeyRing([])
    stats = Stats()
    stats.charge("a", 5)
    stats.charge("a", 5)
    stats.charge("b", 0)
    assert stats.charges == {"a": 2} and stats.lookups == {"a": 2, "b": 1}
    assert stats.total_cents == 10 and stats.duplicate_charges == 1
    assert json.loads(json.dumps(stats.to_json()))["duplicate_charges"] == 1
    stats.reset()
    assert stats.to_json()["total_cents"] == 0 and not stats.charges


def test_demo_directory_is_package_data_with_accents() -> None:
    demo = DirectoryBackend.demo()
    names = {p.name for p in demo.people}
    assert len(names) >= 40
    assert {"José Álvarez", "Zoë Müller"} <= names


async def test_directory_matches_by_normalised_name_and_company_or_domain() -> None:
    demo = DirectoryBackend.demo()
    by_company = await demo.find(
        {"name": "  zoë   MÜLLER ", "company": "Globex Corporation"}, Mode.PROFESSIONAL, True
    )
    assert by_company.email == [["zoe.mueller@globex-corp.com", "OK", "COMPANY"]]
    assert by_company.personal_email == []
    by_domain = await demo.find(
        {"name": "Zoë Müller", "domain": "https://www.globex-corp.com/about"}, Mode.PERSONAL, True
    )
    assert by_domain.personal_email == [["zoe.mueller@gmx.de", "OK", "PERSONAL"]]
    unknown = await demo.find({"name": "Zoë Müller", "company": "Initech"}, Mode.PERSONAL, True)
    assert unknown.email == [["", "NOT_FOUND", "COMPANY"]]
    assert unknown.personal_email == [["", "NOT_FOUND", "PERSONAL"]]
    unverified = await demo.find(JANE, Mode.PROFESSIONAL, False)
    assert unverified.email == [["jane.doe@acme-inc.com", "UNKNOWN", "COMPANY"]]
    # Known person without a company address: NOT_FOUND, typed.
    grimes = await demo.find({"name": "Frank Grimes", "company": "Globex"}, Mode.PROFESSIONAL, True)
    assert grimes.email == [["", "NOT_FOUND", "COMPANY"]]


async def test_directory_latency_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Name,Company,Email\nAda Lovelace,Analytical Engines,ada@engines.io\n")
    backend = DirectoryBackend.from_csv(path, latency=0.2)
    start = time.monotonic()
    answer = await backend.find(
        {"name": "Ada Lovelace", "company": "Analytical Engines"}, Mode.PROFESSIONAL, True
    )
    assert time.monotonic() - start >= 0.19
    assert answer.email == [["ada@engines.io", "OK", "COMPANY"]]
    (tmp_path / "bad.csv").write_text("who,company\nAda,X\n")
    with pytest.raises(ValueError, match="name"):
        DirectoryBackend.from_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError):
        DirectoryBackend([Person("A")], latency=-1)


def test_create_app_refuses_nonsense() -> None:
    backend = DirectoryBackend([])
    with pytest.raises(ValueError):
        create_app(api_keys=[], backend=backend)
    with pytest.raises(ValueError):
        create_app(api_keys=["k"], backend=backend, fault_rates={"500": 0.1})


def test_run_settings_come_from_arguments_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lead_finder.errors import ConfigurationError
    from lead_finder.server import build_backend
    from lead_finder.server.app import _server_keys

    monkeypatch.delenv("LEAD_FINDER_SERVER_KEYS", raising=False)
    with pytest.raises(ConfigurationError, match="LEAD_FINDER_SERVER_KEYS"):
        _server_keys(None)
    monkeypatch.setenv("LEAD_FINDER_SERVER_KEYS", " k1, ,k2 ")
    assert _server_keys(None) == ["k1", "k2"]
    assert _server_keys(["a"]) == ["a"]
    with pytest.raises(ConfigurationError):
        build_backend("oracle")
    assert isinstance(build_backend(), DirectoryBackend)


# ------------------------------------------------------------------------- endpoints over HTTP


@pytest.mark.integration
def test_find_email_echoes_lead_keys_and_costs(client: httpx.Client) -> None:
    lead = {**JANE, "lead_finder_ref": "r-1", "title": "CEO"}
    response = client.post("/find-email", json={"lead": lead})
    assert response.status_code == 200
    assert response.json() == {
        **lead,
        "email": [["jane.doe@acme-inc.com", "OK", "COMPANY"]],
        "cost_cents": 5,
    }
    personal = client.post("/find-email", json={"lead": lead, "mode": "PERSONAL"}).json()
    assert personal["personal_email"] == [["janedoe.personal@gmail.com", "OK", "PERSONAL"]]
    assert personal["email"] == [["jane.doe@acme-inc.com", "OK", "COMPANY"]]
    assert personal["cost_cents"] == 20 and personal["lead_finder_ref"] == "r-1"
    missing = client.post("/find-email", json={"lead": NOBODY}).json()
    assert missing["email"] == [["", "NOT_FOUND", "COMPANY"]] and missing["cost_cents"] == 5


@pytest.mark.integration
def test_bulk_sync_in_order_with_refs_and_limits(
    sixtyfour_server: LiveServer, client: httpx.Client
) -> None:
    leads = [{**JANE, "lead_finder_ref": "a"}, {**NOBODY, "lead_finder_ref": "b"}]
    response = client.post("/find-email-bulk", json={"leads": leads})
    assert response.status_code == 200
    body = response.json()
    assert [r["lead_finder_ref"] for r in body] == ["a", "b"]
    assert body[0]["email"][0][0] == "jane.doe@acme-inc.com"
    assert [r["cost_cents"] for r in body] == [5, 5]

    hundred = [{"name": f"Person {i}", "company": "Nowhere", "lead_finder_ref": i}
               for i in range(100)]
    assert len(client.post("/find-email-bulk", json={"leads": hundred}).json()) == 100
    before = sixtyfour_server.stats.total_cents
    too_many = client.post("/find-email-bulk", json={"leads": [*hundred, JANE]})
    assert too_many.status_code == 400
    assert "100" in too_many.json()["detail"]
    async_too_many = client.post("/find-email-bulk-async", json={"leads": [*hundred, JANE]})
    assert async_too_many.status_code == 400
    assert client.post("/find-email-bulk", json={"leads": []}).status_code == 400
    assert sixtyfour_server.stats.total_cents == before  # rejected calls are free


@pytest.mark.integration
def test_existing_email_comes_back_unchanged(client: httpx.Client) -> None:
    known = client.post(
        "/find-email", json={"lead": {**JANE, "email": "jane.doe@acme-inc.com"}}
    ).json()
    assert known["email"] == [["jane.doe@acme-inc.com", "OK", "COMPANY"]]
    odd = client.post(
        "/find-email", json={"lead": {**JANE, "email": "J.Doe@Acme-Inc.com"}}
    ).json()
    assert odd["email"] == [["J.Doe@Acme-Inc.com", "UNKNOWN", "COMPANY"]]  # not "corrected"
    assert odd["cost_cents"] == 5


@pytest.mark.integration
def test_personal_mode_with_free_mail_is_free_and_immediate(
    sixtyfour_server_factory: ServerFactory,
) -> None:
    # A slow backend shows "at once": the free answer never waits for it.
    srv = sixtyfour_server_factory(backend=DirectoryBackend.demo(latency=2.0))
    with srv.client() as client:
        start = time.monotonic()
        body = client.post(
            "/find-email",
            json={"lead": {**JANE, "email": "Jane.Doe@GMAIL.com"}, "mode": "PERSONAL"},
        ).json()
        assert time.monotonic() - start < 1.5
    assert body["personal_email"] == [["Jane.Doe@GMAIL.com", "UNKNOWN", "PERSONAL"]]
    assert body["cost_cents"] == 0
    assert srv.stats.total_cents == 0 and not srv.stats.charges
    assert sum(srv.stats.lookups.values()) == 1


@pytest.mark.integration
def test_auth(sixtyfour_server: LiveServer) -> None:
    base = sixtyfour_server.base_url
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/find-email", {"lead": JANE}),
        ("POST", "/find-email-async", {"lead": JANE}),
        ("POST", "/find-email-bulk", {"leads": [JANE]}),
        ("POST", "/find-email-bulk-async", {"leads": [JANE]}),
        ("GET", "/job-status/abc", None),
        ("GET", "/check-balance", None),
        ("GET", "/_lf/stats", None),
    ]
    with httpx.Client(base_url=base, trust_env=False) as anon:
        for method, path, body in calls:
            for headers in ({}, {"x-api-key": "sk64_wrong"}, {"x-api-key": ""}):
                response = anon.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert isinstance(response.json()["detail"], str)
        # 401 comes before body validation: a bad key never learns the schema
        assert anon.post("/find-email", content=b"{not json").status_code == 401
    assert sixtyfour_server.stats.total_cents == 0
    assert sixtyfour_server.stats.requests["/find-email"] == 4
    with sixtyfour_server.client() as client:
        assert sixtyfour_server.api_key not in client.get("/_lf/stats").text


@pytest.mark.integration
def test_two_keys_and_jobs_are_private(sixtyfour_server_factory: ServerFactory) -> None:
    srv = sixtyfour_server_factory(api_keys=["sk64_one", "sk64_two"], api_key="sk64_one")
    with httpx.Client(base_url=srv.base_url, trust_env=False) as c:
        task = c.post(
            "/find-email-async", json={"lead": JANE}, headers={"x-api-key": "sk64_one"}
        ).json()["task_id"]
        other = c.get(f"/job-status/{task}", headers={"x-api-key": "sk64_two"})
        assert other.status_code == 404 and other.json() == {"detail": "Job not found"}
        assert c.get(f"/job-status/{task}", headers={"x-api-key": "sk64_one"}).status_code == 200


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        ({"lead": JANE, "mode": "personal"}, ["body", "mode"], "literal_error"),
        ({"lead": JANE, "mode": "BOTH"}, ["body", "mode"], "literal_error"),
        ({"lead": ["Jane Doe", "Acme"]}, ["body", "lead"], "dict_type"),
        ({"lead": "Jane Doe"}, ["body", "lead"], "dict_type"),
        ({}, ["body", "lead"], "missing"),
        ({"lead": JANE, "verify_emails": "maybe"}, ["body", "verify_emails"], "bool_parsing"),
        ({"lead": JANE, "providers": "hunter"}, ["body", "providers"], "list_type"),
        ({"lead": JANE, "providers": [1]}, ["body", "providers", 0], "string_type"),
        ({"lead": JANE, "webhook_url": "ftp://x.test/h"}, ["body", "webhook_url"], "url_scheme"),
        ({"lead": JANE, "webhook_url": "http://hooks.test/h"}, ["body", "webhook_url"],
         "value_error"),
        ({"lead": JANE, "webhook_url": ""}, ["body", "webhook_url"], "url_parsing"),
        ({"lead": JANE, "webhook_url": "https://h.test/" + "a" * 2070}, ["body", "webhook_url"],
         "url_too_long"),
    ],
)
def test_validation_errors_are_fastapi_422s(
    client: httpx.Client, body: dict[str, Any], loc: list[Any], error_type: str
) -> None:
    response = client.post("/find-email-async", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert isinstance(errors, list)
    assert any(e["loc"] == loc and e["type"] == error_type for e in errors), errors
    assert all({"loc", "msg", "type"} <= set(e) for e in errors)


@pytest.mark.integration
def test_more_422s(sixtyfour_server: LiveServer, client: httpx.Client) -> None:
    bad_json = client.post("/find-email", content=b'{"lead": ', headers={
        "content-type": "application/json"})
    assert bad_json.status_code == 422 and bad_json.json()["detail"][0]["type"] == "json_invalid"
    bulk = client.post("/find-email-bulk", json={"leads": [JANE, 3]})
    assert bulk.status_code == 422
    assert bulk.json()["detail"][0]["loc"] == ["body", "leads", 1]
    units = client.get("/job-status/x", params={"cost_units": "dollars"})
    assert units.status_code == 422 and units.json()["detail"][0]["loc"] == ["query", "cost_units"]
    # Accepted webhook URLs: https anywhere, http only to loopback.
    for url in ("https://hooks.test/x", "http://127.0.0.1:9/x", "http://localhost/x",
                "http://[::1]:9/x"):
        ok = client.post("/find-email", json={"lead": JANE, "webhook_url": url})
        assert ok.status_code == 200, (url, ok.text)
    assert sixtyfour_server.stats.requests["/find-email"] == 5


@pytest.mark.integration
def test_job_lifecycle_single_and_bulk(sixtyfour_server_factory: ServerFactory) -> None:
    srv = sixtyfour_server_factory(job_delay=0.3)
    with srv.client() as client:
        submit = client.post("/find-email-async", json={"lead": {**JANE, "lead_finder_ref": "x"}})
        assert submit.status_code == 200
        assert submit.json()["status"] == "RUNNING"
        task = submit.json()["task_id"]
        running = client.get(f"/job-status/{task}").json()
        assert running["status"] == "running" and "result" not in running
        assert {"id", "run_id", "start_time", "task_type"} <= set(running)
        done = wait_job(client, task)
        assert done["status"] == "completed" and done["id"] == task
        assert done["task_type"] == "find_email" and done["close_time"] >= done["start_time"]
        assert done["result"]["email"] == [["jane.doe@acme-inc.com", "OK", "COMPANY"]]
        assert done["result"]["lead_finder_ref"] == "x"
        assert done["charge_amount"] == 5 and "charge_credits" not in done
        credits = client.get(f"/job-status/{task}", params={"cost_units": "credits"}).json()
        assert credits["charge_credits"] == 0.5 and "charge_amount" not in credits

        bulk = client.post(
            "/find-email-bulk-async",
            json={"leads": [JANE, NOBODY], "mode": "PERSONAL"},
        ).json()
        done_bulk = wait_job(client, bulk["task_id"])
        assert done_bulk["task_type"] == "find_email_bulk"
        assert isinstance(done_bulk["result"], list) and len(done_bulk["result"]) == 2
        assert done_bulk["charge_amount"] == 40

        missing = client.get("/job-status/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404 and missing.json() == {"detail": "Job not found"}
        assert client.get("/check-balance").json() == {"credits": 1_000_000 - 4.5}
    assert srv.stats.requests["/find-email-async"] == 1
    assert srv.stats.requests["/find-email-bulk-async"] == 1
    assert srv.stats.requests["/job-status"] >= 5


@pytest.mark.integration
def test_insufficient_credits_is_402(sixtyfour_server_factory: ServerFactory) -> None:
    srv = sixtyfour_server_factory(credits=1.0)  # 10 cents: two professional lookups
    with srv.client() as client:
        assert client.post("/find-email-bulk", json={"leads": [JANE, NOBODY]}).status_code == 200
        refused = client.post("/find-email", json={"lead": JANE})
        assert refused.status_code == 402 and "credits" in refused.json()["detail"]
        assert client.get("/check-balance").json() == {"credits": 0.0}


@pytest.mark.integration
def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.sqlite3"
    key = "sk64_CANARY_restart_0123456789"
    with live_server(api_key=key, jobs_path=jobs, job_delay=1.0) as first, first.client() as c:
        finished = c.post("/find-email-async", json={"lead": JANE}).json()["task_id"]
        wait_job(c, finished)
        # A job still waiting when the server stops...
        pending = c.post("/find-email-bulk-async", json={"leads": [JANE, NOBODY]}).json()
        assert c.get(f"/job-status/{pending['task_id']}").json()["status"] == "running"
        first_charges = first.stats.total_cents
    assert first_charges == 5
    # ...is resumed by the next server on the same file; the finished one is still readable.
    with live_server(api_key=key, jobs_path=jobs) as second, second.client() as c:
        done = wait_job(c, pending["task_id"])
        assert done["status"] == "completed" and len(done["result"]) == 2
        again = c.get(f"/job-status/{finished}").json()
        assert again["status"] == "completed" and again["charge_amount"] == 5
        assert second.stats.total_cents == 10  # the resumed job only, billed once
    assert key.encode() not in jobs.read_bytes()


@pytest.mark.integration
@pytest.mark.slow
def test_subprocess_crash_and_restart(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.sqlite3"
    with serve_subprocess("--job-delay", "0.5", jobs_path=jobs) as proc:
        with httpx.Client(base_url=proc.base_url, headers=proc.headers(), trust_env=False,
                          timeout=10) as c:
            task = c.post("/find-email-async", json={"lead": JANE}).json()["task_id"]
            proc.kill()  # SIGKILL before the job ran
            proc.start()
            done = wait_job(c, task)
            assert done["status"] == "completed" and done["charge_amount"] == 5
            stats = proc.stats()
        assert stats["total_cents"] == 5 and stats["duplicate_charges"] == 0
        assert stats["requests"]["/job-status"] >= 1
        assert proc.api_key not in proc.log_text()
        assert "Uvicorn running" in proc.log_text() or "Application startup" in proc.log_text()


# ----------------------------------------------------------------------------------- webhooks


def _check_signature(delivery_headers: dict[str, str], body: bytes, secret: str) -> None:
    parts = dict(p.split("=", 1) for p in delivery_headers["sixtyfour-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())
    assert abs(time.time() - int(parts["t"])) < 60


@pytest.mark.integration
def test_webhook_signed_and_retried_after_500(
    sixtyfour_server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    secret = "sk_whsec_" + "ab" * 32
    srv = sixtyfour_server_factory(
        webhook_secret=secret, webhook_retry_delays=(0.05, 0.05, 0.05, 0.05, 0.05)
    )
    webhook_receiver.statuses = [500]
    with srv.client() as client:
        task = client.post(
            "/find-email-async",
            json={"lead": {**JANE, "lead_finder_ref": "w"}, "webhook_url": webhook_receiver.url},
        ).json()["task_id"]
        first, second = webhook_receiver.wait_for(2)
    for attempt, delivery in enumerate((first, second), start=1):
        _check_signature(delivery.headers, delivery.body, secret)
        assert delivery.headers["sixtyfour-delivery-attempt"] == str(attempt)
        assert delivery.headers["sixtyfour-event-type"] == "find_email"
    assert first.headers["sixtyfour-event-id"] == second.headers["sixtyfour-event-id"]
    payload = second.json()
    assert payload["task_id"] == task and payload["status"] == "completed"
    assert payload["task_type"] == "find_email"
    assert payload["result"]["lead_finder_ref"] == "w"
    time.sleep(0.2)
    assert len(webhook_receiver.deliveries) == 2  # a 2xx ends the retries
    assert srv.stats.webhook_attempts == {"500": 1, "2xx": 1}


@pytest.mark.integration
def test_webhook_gives_up_after_five_retries_and_failed_jobs_send_error(
    sixtyfour_server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    srv = sixtyfour_server_factory(enable_faults=True, webhook_retry_delays=(0.01,) * 5)
    webhook_receiver.statuses = [503] * 10
    with srv.client() as client:
        client.post(
            "/find-email-bulk-async",
            json={"leads": [JANE], "webhook_url": webhook_receiver.url},
            headers={"x-lf-fault": "jobfail"},
        )
        deliveries = webhook_receiver.wait_for(6)
        time.sleep(0.2)
    assert len(webhook_receiver.deliveries) == 6
    assert [d.headers["sixtyfour-delivery-attempt"] for d in deliveries] == [
        "1", "2", "3", "4", "5", "6"]
    payload = deliveries[-1].json()
    assert payload["status"] == "failed" and "error" in payload and "result" not in payload
    assert "sixtyfour-signature" not in deliveries[0].headers  # no secret, no signature
    assert srv.stats.total_cents == 0


@pytest.mark.integration
def test_undelivered_webhook_is_redelivered_after_restart(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    jobs = tmp_path / "jobs.sqlite3"
    webhook_receiver.statuses = [500]
    with live_server(api_key="sk64_k", jobs_path=jobs, webhook_retry_delays=(60,)) as first:
        with first.client() as c:
            task = c.post("/find-email-async",
                          json={"lead": JANE, "webhook_url": webhook_receiver.url}).json()
        webhook_receiver.wait_for(1)  # the first attempt failed; the retry is a minute away
    with live_server(api_key="sk64_k", jobs_path=jobs):
        deliveries = webhook_receiver.wait_for(2)
    assert deliveries[1].json()["task_id"] == task["task_id"]
    assert deliveries[1].headers["sixtyfour-event-id"] == deliveries[0].headers[
        "sixtyfour-event-id"]


# ------------------------------------------------------------------------------ rate limiting


@pytest.mark.integration
def test_rate_limit_per_key(sixtyfour_server_factory: ServerFactory) -> None:
    srv = sixtyfour_server_factory(
        rate_limit_per_minute=3, api_keys=["sk64_a", "sk64_b"], api_key="sk64_a"
    )
    with httpx.Client(base_url=srv.base_url, trust_env=False) as c:
        codes = [c.get("/check-balance", headers={"x-api-key": "sk64_a"}).status_code
                 for _ in range(3)]
        limited = c.post("/find-email", json={"lead": JANE}, headers={"x-api-key": "sk64_a"})
        other = c.get("/check-balance", headers={"x-api-key": "sk64_b"})
        stats = c.get("/_lf/stats", headers={"x-api-key": "sk64_a"})  # never rate limited
    assert codes == [200, 200, 200]
    assert limited.status_code == 429 and "detail" in limited.json()
    assert 55 <= int(limited.headers["retry-after"]) <= 60
    assert other.status_code == 200 and stats.status_code == 200
    assert srv.stats.total_cents == 0


# ---------------------------------------------------------------------------------- faults


@pytest.fixture
def faulty(sixtyfour_server_factory: ServerFactory) -> LiveServer:
    return sixtyfour_server_factory(enable_faults=True, seed=3)


def _post_fault(srv: LiveServer, fault: str, **kwargs: Any) -> httpx.Response:
    with srv.client(timeout=kwargs.pop("timeout", 10.0)) as c:
        return c.post("/find-email", json={"lead": JANE}, headers={"x-lf-fault": fault}, **kwargs)


@pytest.mark.integration
def test_faults_are_off_unless_enabled(sixtyfour_server: LiveServer) -> None:
    ok = _post_fault(sixtyfour_server, "500")
    assert ok.status_code == 200 and ok.json()["cost_cents"] == 5


@pytest.mark.integration
def test_fault_error_statuses(faulty: LiveServer) -> None:
    plain = _post_fault(faulty, "429")
    assert plain.status_code == 429 and "retry-after" not in plain.headers
    with faulty.client() as c:
        after = c.post("/find-email", json={"lead": JANE},
                       headers={"x-lf-fault": "429-retry-after", "x-lf-retry-after": "7"})
    assert after.status_code == 429 and after.headers["retry-after"] == "7"
    unavailable = _post_fault(faulty, "503")
    assert unavailable.status_code == 503 and isinstance(unavailable.json()["detail"], str)
    assert faulty.stats.total_cents == 0  # none of those did any work
    failed = _post_fault(faulty, "500")
    assert failed.status_code == 500 and isinstance(failed.json()["detail"], str)
    assert faulty.stats.charges == {next(iter(faulty.stats.charges)): 1}  # billed, then failed
    assert _post_fault(faulty, "nonsense").status_code == 400
    assert set(FAULTS) >= {"429", "500", "503", "html200", "badjson", "truncate", "slow", "hang",
                           "redirect", "shuffle"}


@pytest.mark.integration
def test_fault_bad_bodies_are_billed(faulty: LiveServer) -> None:
    html = _post_fault(faulty, "html200")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text.lstrip().startswith("<!DOCTYPE html>")
    bad = _post_fault(faulty, "badjson")
    assert bad.status_code == 200 and bad.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.content)
    assert bad.content.startswith(b'{"name":"Jane Doe"')
    assert faulty.stats.total_cents == 10
    assert list(faulty.stats.charges.values()) == [2]  # both lookups were really done


@pytest.mark.integration
def test_fault_truncate_drops_the_connection(faulty: LiveServer) -> None:
    body = json.dumps({"lead": JANE}).encode()
    with socket.create_connection(("127.0.0.1", faulty.port), timeout=5) as sock:
        sock.sendall(raw_request(faulty.port, "POST", "/find-email",
                                 {"x-api-key": faulty.api_key, "x-lf-fault": "truncate"}, body))
        received = b""
        while chunk := sock.recv(65536):  # b"" is the server closing the connection
            received += chunk
    head, _, sent = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    declared = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")))
    assert 0 < len(sent) < declared
    with pytest.raises(httpx.RemoteProtocolError):
        _post_fault(faulty, "truncate")
    assert faulty.stats.total_cents == 10


@pytest.mark.integration
def test_fault_slow_trickles_one_byte_at_a_time(faulty: LiveServer) -> None:
    body = json.dumps({"lead": JANE}).encode()
    with socket.create_connection(("127.0.0.1", faulty.port), timeout=5) as sock:
        sock.sendall(raw_request(faulty.port, "POST", "/find-email",
                                 {"x-api-key": faulty.api_key, "x-lf-fault": "slow"}, body))
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(1)
        start = time.monotonic()
        first = sock.recv(100)
        second = sock.recv(100)
        third = sock.recv(100)
        elapsed = time.monotonic() - start
    assert (first, second, third) == (b"{", b'"', b"n")
    assert 0.8 <= elapsed < 3.0
    # httpx's read timeout resets with every byte: only a total deadline stops it.
    with pytest.raises(httpx.ReadTimeout):
        _post_fault(faulty, "slow", timeout=httpx.Timeout(10.0, read=0.2))
    assert faulty.stats.total_cents == 10


@pytest.mark.integration
def test_fault_hang_bills_and_never_answers(faulty: LiveServer) -> None:
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _post_fault(faulty, "hang", timeout=httpx.Timeout(5.0, read=0.5))
    assert time.monotonic() - start < 3
    assert faulty.stats.total_cents == 5


@pytest.mark.integration
def test_fault_redirect_to_another_host(faulty: LiveServer) -> None:
    moved = _post_fault(faulty, "redirect")  # httpx does not follow by default
    assert moved.status_code == 302
    location = httpx.URL(moved.headers["location"])
    assert location.host != "127.0.0.1" and location.path == "/find-email"
    assert faulty.stats.total_cents == 0


@pytest.mark.integration
def test_fault_shuffle_bulk(faulty: LiveServer) -> None:
    leads = [{"name": p, "company": "Initech", "lead_finder_ref": str(i)} for i, p in enumerate(
        ["Peter Gibbons", "Michael Bolton", "Samir Nagheenanajar", "Milton Waddams",
         "Bill Lumbergh", "Nobody One", "Nobody Two", "Nobody Three"])]
    with faulty.client() as c:
        sync = c.post("/find-email-bulk", json={"leads": leads},
                      headers={"x-lf-fault": "shuffle"}).json()
        task = c.post("/find-email-bulk-async", json={"leads": leads},
                      headers={"x-lf-fault": "shuffle"}).json()["task_id"]
        job = wait_job(c, task)["result"]
    for results in (sync, job):
        refs = [r["lead_finder_ref"] for r in results]
        assert sorted(refs) == sorted(lead["lead_finder_ref"] for lead in leads)
        assert refs != [lead["lead_finder_ref"] for lead in leads]
        lengths = {len(entry) for r in results for entry in r["email"]}
        assert lengths == {2, 3}
        by_ref = {r["lead_finder_ref"]: r for r in results}
        assert by_ref["0"]["email"][0][:2] == ["peter.gibbons@initech-software.com", "OK"]


@pytest.mark.integration
def test_seeded_fault_rates_repeat(sixtyfour_server_factory: ServerFactory) -> None:
    def statuses() -> list[int]:
        srv = sixtyfour_server_factory(
            enable_faults=True, fault_rates={"503": 0.3, "429": 0.2}, seed=11
        )
        with srv.client() as c:
            return [c.get("/check-balance").status_code for _ in range(30)]

    first, second = statuses(), statuses()
    assert first == second
    assert {200, 503, 429} == set(first)


# ------------------------------------------------------------------------------------ charges


@pytest.mark.integration
def test_charge_counter_and_stats_endpoint(sixtyfour_server_factory: ServerFactory) -> None:
    srv = sixtyfour_server_factory(charge_not_found=False)
    with srv.client() as c:
        c.post("/find-email", json={"lead": JANE})
        # the same lead, written differently, is the same key: a duplicate charge
        c.post("/find-email", json={"lead": {"name": "JANE  DOE", "company": "Acme Inc."}})
        free = c.post("/find-email", json={"lead": NOBODY}).json()
        c.post("/find-email", json={"lead": JANE, "mode": "PERSONAL"})
        remote = c.get("/_lf/stats").json()
        assert remote == json.loads(json.dumps(srv.stats.to_json()))
        assert free["cost_cents"] == 0
        assert remote["duplicate_charges"] == 1 and remote["total_cents"] == 30
        assert sorted(remote["charges"].values()) == [1, 2]
        assert remote["requests"] == {"/find-email": 4}
        assert c.delete("/_lf/stats").json() == {"reset": True}
        assert c.get("/_lf/stats").json()["total_cents"] == 0
    assert srv.stats.total_cents == 0 and not srv.stats.requests


@pytest.mark.integration
def test_concurrent_requests_are_all_counted(sixtyfour_server_factory: ServerFactory) -> None:
    srv = sixtyfour_server_factory(backend=DirectoryBackend.demo(latency=0.2))

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=srv.base_url, headers=srv.headers(),
                                     trust_env=False) as c:
            responses = await asyncio.gather(*(
                c.post("/find-email", json={"lead": {"name": f"P {i}", "company": "X"}})
                for i in range(20)))
            return [r.status_code for r in responses]

    start = time.monotonic()
    assert asyncio.run(burst()) == [200] * 20
    assert time.monotonic() - start < 2.0  # lookups overlap; the latency is not serialised
    assert srv.stats.total_cents == 100 and srv.stats.duplicate_charges == 0
