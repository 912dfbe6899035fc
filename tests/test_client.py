"""The Sixtyfour clients against a scripted API (httpx.MockTransport), with a fake clock.

Sleeping advances the fake clock, so retries, pacing, polling and deadlines run instantly and
every wait can be asserted exactly.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lead_finder.errors import (
    AmbiguousRequestError,
    APIError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InsufficientCreditsError,
    InvalidLeadError,
    JobError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    UnprocessableEntityError,
)
from lead_finder.models import Mode, Status
from lead_finder.sixtyfour import REF_FIELD, AsyncClient, Client, Job, JobState

CANARY = "sk64_CANARY_0123456789"
OTHER_KEY = "sk64_OTHER_9876543210"


class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or a test moves it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Api:
    """A scripted Find Email API. Each route answers from a queue (the last answer repeats).

    Answers are responses with a body (reusable), exceptions to raise, or functions of the
    request (use one for a streamed body: a stream can be read only once).

    It records every request and the fake-clock time it arrived at.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def on(self, method: str, path: str, *answers: Answer) -> Api:
        self.routes[(method, path)] = list(answers)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(self.clock.now)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, json={"detail": "Not Found"})
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


class Trickle(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body sent one byte per tick of the fake clock (the "slow" fault)."""

    def __init__(self, body: bytes, clock: FakeClock, tick: float = 1.0) -> None:
        self.body, self.clock, self.tick = body, clock, tick

    def __iter__(self) -> Iterator[bytes]:
        for byte in self.body:
            self.clock.now += self.tick
            yield bytes([byte])

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


class CutShort(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Half a body, then the connection drops (the "truncate" fault)."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"name": "Jane", "email": [["ja'
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(clock: FakeClock) -> Api:
    return Api(clock)


def make(api: Api, clock: FakeClock, key: str = CANARY, **options: Any) -> Client:
    options.setdefault("requests_per_minute", math.inf)
    return Client(
        key, transport=httpx.MockTransport(api), sleep=clock.sleep, clock=clock,
        rng=lambda: 0.0, **options,
    )


def make_async(api: Api, clock: FakeClock, key: str = CANARY, **options: Any) -> AsyncClient:
    options.setdefault("requests_per_minute", math.inf)
    return AsyncClient(
        key, transport=httpx.MockTransport(api), sleep=clock.asleep, clock=clock,
        rng=lambda: 0.0, **options,
    )


def echo(request: httpx.Request) -> httpx.Response:
    """A /find-email answer: the lead echoed, one OK company email (personal in PERSONAL mode)."""
    body = json.loads(request.content)
    lead = body["lead"]
    first = str(lead.get("name", "x")).split()[0].lower()
    answer = {**lead, "email": [[f"{first}@acme.com", "OK", "COMPANY"]], "cost_cents": 5}
    if body["mode"] == "PERSONAL":
        answer["personal_email"] = [[f"{first}@gmail.com", "OK"]]
        answer["cost_cents"] = 20
    return httpx.Response(200, json=answer)


def shuffled_bulk(request: httpx.Request) -> httpx.Response:
    """A bulk answer in random order, every other entry in the two-item form."""
    leads = json.loads(request.content)["leads"]
    results = []
    for i, lead in enumerate(leads):
        entry = [f"{lead['name'].split()[0].lower()}@acme.com", "OK"]
        results.append({**lead, "email": [entry if i % 2 else [*entry, "COMPANY"]]})
    random.Random(len(leads)).shuffle(results)
    return httpx.Response(200, json=results)


JANE = {"name": "Jane Doe", "company": "Acme"}


# -- the endpoints ---------------------------------------------------------------------------


def test_find_email_sends_key_agent_and_body(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email", echo)
    with make(api, clock) as client:
        result = client.find_email(JANE, providers=["p1"])
    (request,) = api.requests
    assert request.url == "https://api.sixtyfour.ai/find-email"
    assert request.headers["x-api-key"] == CANARY
    assert request.headers["user-agent"].startswith("lead-finder/")
    assert api.bodies() == [
        {"lead": JANE, "mode": "PROFESSIONAL", "verify_emails": True, "providers": ["p1"]}
    ]
    assert result.email == "jane@acme.com"
    assert result.status is Status.OK
    assert result.cost_cents == 5
    assert result.lead == JANE
    assert result.mode is Mode.PROFESSIONAL


@dataclass(frozen=True)
class LeadObject:
    name: str
    company: str

    def to_api(self) -> dict[str, str]:
        return {"name": self.name, "company": self.company}


def test_find_email_takes_lead_objects_and_personal_mode(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email", echo)
    result = make(api, clock).find_email(LeadObject("Jane Doe", "Acme"), mode="personal")
    assert api.bodies()[0]["mode"] == "PERSONAL"
    assert api.bodies()[0]["lead"] == JANE
    assert result.mode is Mode.PERSONAL
    assert result.email == "jane@gmail.com"
    assert result.personal_emails[0].type == "PERSONAL"  # inferred for the two-item entry


def test_find_email_takes_the_real_lead_class(api: Api, clock: FakeClock) -> None:
    from lead_finder.leads import Lead

    api.on("POST", "/find-email-bulk", shuffled_bulk)
    results = make(api, clock).find_email_bulk([Lead("Jane Doe", "Acme"), Lead("Bob", "Beta")])
    assert api.bodies()[0]["leads"] == [
        {"name": "Jane Doe", "company": "Acme", REF_FIELD: "0"},
        {"name": "Bob", "company": "Beta", REF_FIELD: "1"},
    ]
    assert [r.email for r in results] == ["jane@acme.com", "bob@acme.com"]


MALFORMED_CALLS: list[tuple[str, Callable[[Client], Any]]] = [
    ("empty lead", lambda c: c.find_email({})),
    ("not a lead", lambda c: c.find_email("Jane Doe, Acme")),  # type: ignore[arg-type]
    ("NaN field", lambda c: c.find_email({"name": "Jane", "company": math.nan})),
    ("bad mode", lambda c: c.find_email(JANE, mode="PERSONEL")),
    ("providers str", lambda c: c.find_email(JANE, providers="hunter")),
    ("http webhook", lambda c: c.find_email_async(JANE, webhook_url="http://example.com/h")),
    ("bad lead in bulk", lambda c: c.find_email_bulk([JANE] * 150 + [{}])),
    ("bulk not a list", lambda c: c.find_email_bulk(JANE)),  # type: ignore[arg-type]
    ("101 in bulk job", lambda c: c.find_email_bulk_async([JANE] * 101)),
    ("refs mismatch", lambda c: c.find_email_bulk_async([JANE, JANE], refs=["a"])),
    ("empty task id", lambda c: c.job_status("")),
    ("cost units", lambda c: c.job_status("t-1", cost_units="dollars")),
    ("negative wait", lambda c: c.wait("t-1", timeout=-1)),
]


@pytest.mark.parametrize(
    "call", [c for _, c in MALFORMED_CALLS], ids=[n for n, _ in MALFORMED_CALLS]
)
def test_malformed_input_sends_nothing(api: Api, clock: FakeClock, call: Any) -> None:
    api.on("POST", "/find-email", echo)
    with pytest.raises(InvalidLeadError):
        call(make(api, clock))
    assert api.requests == []


def test_find_email_async_submits_and_returns_a_running_job(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email-async",
           httpx.Response(200, json={"task_id": "t-1", "status": "RUNNING"}))
    job = make(api, clock).find_email_async(JANE, webhook_url="https://hooks.example.com/x")
    assert (job.task_id, job.state, job.results) == ("t-1", JobState.RUNNING, ())
    assert api.bodies()[0]["webhook_url"] == "https://hooks.example.com/x"


def test_bulk_of_250_is_three_requests_joined_by_ref(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email-bulk", shuffled_bulk)
    leads = [{"name": f"P{i}", "company": "Acme"} for i in range(250)]
    results = make(api, clock).find_email_bulk(leads)
    sizes = [len(body["leads"]) for body in api.bodies()]
    assert sizes == [100, 100, 50]
    sent_refs = [lead[REF_FIELD] for body in api.bodies() for lead in body["leads"]]
    assert len(set(sent_refs)) == 250
    assert [r.email for r in results] == [f"p{i}@acme.com" for i in range(250)]
    assert [r.lead for r in results] == leads  # the user's lead, without our join key
    assert all(r.emails[0].type == "COMPANY" for r in results)
    assert results[7].ref == "7"


def test_empty_bulk_sends_nothing(api: Api, clock: FakeClock) -> None:
    assert make(api, clock).find_email_bulk([]) == []
    assert api.requests == []


def test_result_lead_is_the_text_sent_plus_what_the_api_added(
    api: Api, clock: FakeClock
) -> None:
    answer = {"name": "JANE DOE", "company": "Acme", "linkedin_url": "https://linkedin.com/in/j",
              "email": [["jane@acme.com", "OK", "COMPANY"]]}
    api.on("POST", "/find-email", httpx.Response(200, json=answer))
    result = make(api, clock).find_email({"name": "Jane Doe", "company": "Acme",
                                           "email": "old@acme.com"})
    assert result.lead == {"name": "Jane Doe", "company": "Acme", "email": "old@acme.com",
                           "linkedin_url": "https://linkedin.com/in/j"}
    assert result.email == "jane@acme.com"


@pytest.mark.parametrize("wrapper", ["results", "leads"])
def test_bulk_answer_wrapped_in_an_object(api: Api, clock: FakeClock, wrapper: str) -> None:
    def wrapped(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={wrapper: shuffled_bulk(request).json()})

    api.on("POST", "/find-email-bulk", wrapped)
    results = make(api, clock).find_email_bulk([{"name": "A"}, {"name": "B"}])
    assert [r.email for r in results] == ["a@acme.com", "b@acme.com"]


def test_bulk_chunk_failure_keeps_the_paid_chunks(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email-bulk", shuffled_bulk,
           httpx.Response(500, json={"detail": "boom"}), shuffled_bulk)
    leads = [{"name": f"P{i}"} for i in range(250)]
    results = make(api, clock).find_email_bulk(leads)
    assert len(api.requests) == 3  # the failed chunk was not resent
    assert [r.email for r in results[:100]] == [f"p{i}@acme.com" for i in range(100)]
    assert all(r.status is Status.ERROR and r.extra["ambiguous"] for r in results[100:200])
    assert all(r.lead == leads[i] for i, r in enumerate(results))
    assert results[200].email == "p200@acme.com"


def test_bulk_raises_when_every_chunk_failed(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email-bulk", httpx.Response(401, json={"detail": "bad key"}))
    with pytest.raises(AuthenticationError):
        make(api, clock).find_email_bulk([{"name": f"P{i}"} for i in range(150)])
    assert len(api.requests) == 1  # the second chunk was held back by the 401


def test_bulk_lead_missing_from_the_answer(api: Api, clock: FakeClock) -> None:
    def drop_one(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=shuffled_bulk(request).json()[1:])

    api.on("POST", "/find-email-bulk", drop_one)
    results = make(api, clock).find_email_bulk([{"name": f"P{i}"} for i in range(5)])
    assert sum(r.status is Status.ERROR for r in results) == 1
    assert {r.lead["name"] for r in results} == {f"P{i}" for i in range(5)}


def test_bulk_async_sends_given_refs(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email-bulk-async",
           httpx.Response(200, json={"task_id": "t-9", "status": "RUNNING"}))
    client = make(api, clock)
    job = client.find_email_bulk_async([JANE, {"name": "Bob"}], refs=["k1", "k2"], mode="PERSONAL")
    assert job.task_id == "t-9"
    body = api.bodies()[0]
    assert [lead[REF_FIELD] for lead in body["leads"]] == ["k1", "k2"]
    assert body["mode"] == "PERSONAL"
    client.find_email_bulk_async([JANE, {"name": "Bob"}])
    assert [lead[REF_FIELD] for lead in api.bodies()[1]["leads"]] == ["0", "1"]


def job_answer(status: str, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"id": "t-1", "status": status, **extra})


def test_job_status_url_query_and_results(api: Api, clock: FakeClock) -> None:
    result = [{"name": "A", REF_FIELD: "1", "email": [["a@x.com", "OK", "COMPANY"]]},
              {"name": "B", REF_FIELD: "0", "email": [["", "NOT_FOUND"]]}]
    api.on("GET", "/job-status/a/b c", job_answer("completed", result=result, charge_amount=10))
    job = make(api, clock).job_status("a/b c")
    (request,) = api.requests
    assert request.url.raw_path == b"/job-status/a%2Fb%20c?cost_units=cents"
    assert request.headers["x-api-key"] == CANARY
    assert job.state is JobState.COMPLETED and job.charge_cents == 10
    assert {r.ref: r.email for r in job.results} == {"1": "a@x.com", "0": None}


def test_wait_polls_with_backoff_until_completed(api: Api, clock: FakeClock) -> None:
    done = job_answer("Completed", result={"name": "Jane", "email": [["j@acme.com", "OK"]]})
    api.on("GET", "/job-status/t-1", job_answer("RUNNING"), job_answer("pending"),
           job_answer("queued"), job_answer("running"), job_answer("processing"), done)
    seen: list[Job] = []
    client = make(api, clock, poll_interval=1.0, poll_max_interval=3.0)
    job = client.wait("t-1", on_poll=seen.append)
    assert job.state is JobState.COMPLETED and job.results[0].email == "j@acme.com"
    assert clock.sleeps == [1.0, 1.5, 2.25, 3.0, 3.0]
    assert [j.status for j in seen] == ["RUNNING", "pending", "queued", "running", "processing",
                                        "Completed"]


@pytest.mark.parametrize(
    "status", ["failed", "CANCELLED", "canceled", "terminated", "timed_out", "continued_as_new"]
)
def test_wait_raises_job_error_on_every_failure_state(
    api: Api, clock: FakeClock, status: str
) -> None:
    api.on("GET", "/job-status/t-1", job_answer("running"),
           job_answer(status, error="provider down"))
    with pytest.raises(JobError) as caught:
        make(api, clock).wait("t-1")
    assert not isinstance(caught.value, JobTimeoutError)
    assert caught.value.task_id == "t-1" and caught.value.status == status
    assert "provider down" in str(caught.value) and "not resubmit" in str(caught.value)


def test_wait_stops_at_our_deadline(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/job-status/t-1", job_answer("running"))
    start = clock.now
    with pytest.raises(JobTimeoutError) as caught:
        make(api, clock, poll_interval=2.0, poll_max_interval=4.0).wait("t-1", timeout=10)
    assert clock.now == start + 10  # the last sleep is shortened to the deadline
    assert clock.sleeps == [2.0, 3.0, 4.0, 1.0]
    assert len(api.requests) == 5  # one last look at the deadline
    assert caught.value.status == "running"
    assert "wait() or job_status() again" in str(caught.value)


def test_wait_on_an_unknown_job_is_not_found(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/job-status/gone", httpx.Response(404, json={"detail": "Job not found"}))
    with pytest.raises(NotFoundError) as caught:
        make(api, clock).wait("gone")
    assert len(api.requests) == 1
    assert "Job not found" in str(caught.value)


def test_check_balance(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(200, json={"credits": 42.5}))
    assert make(api, clock).check_balance() == 42.5


# -- transport safety ---------------------------------------------------------------------------


def test_redirect_is_an_error_and_never_followed(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email",
           httpx.Response(302, headers={"location": "https://evil.example/find-email"}))
    with pytest.raises(APIStatusError) as caught:
        make(api, clock).find_email(JANE)
    assert caught.value.status_code == 302
    assert "redirect" in str(caught.value)
    assert [r.url.host for r in api.requests] == ["api.sixtyfour.ai"]


def test_base_url_prefix_and_loopback_http(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/gw/find-email", echo)
    make(api, clock, base_url="http://127.0.0.1:8000/gw/").find_email(JANE)
    assert str(api.requests[0].url) == "http://127.0.0.1:8000/gw/find-email"


@pytest.mark.parametrize(
    "options",
    [{"base_url": "http://api.sixtyfour.ai"}, {"base_url": "https://u:p@api.sixtyfour.ai"},
     {"timeout": 0}, {"max_retries": -1}, {"requests_per_minute": 0}, {"poll_interval": -1}],
)
def test_bad_settings(api: Api, clock: FakeClock, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        make(api, clock, **options)


@pytest.mark.parametrize("key", ["", "   ", "sk64 with space", "sk64_clé", "sk64_\x00"])
def test_bad_keys(api: Api, clock: FakeClock, key: str) -> None:
    with pytest.raises(ConfigurationError):
        make(api, clock, key=key)


def test_key_is_stripped_and_readable(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(200, json={"credits": 1}))
    client = make(api, clock, key=f"  {CANARY}\n")
    client.check_balance()
    assert api.requests[0].headers["x-api-key"] == CANARY
    assert client.api_key == CANARY
    with pytest.raises(ConfigurationError):
        client.api_key = ""


def test_401_stops_every_call_until_the_key_is_set(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email", httpx.Response(401, json={"detail": "Invalid API key"}), echo)
    api.on("GET", "/check-balance", httpx.Response(200, json={"credits": 1}))
    client = make(api, clock)
    with pytest.raises(AuthenticationError) as caught:
        client.find_email(JANE)
    assert str(caught.value) == (
        "The API key was rejected (401). Check SIXTYFOUR_API_KEY or run "
        "`lead-finder config set-key`."
    )
    with pytest.raises(AuthenticationError, match="Not sent"):
        client.find_email(JANE)
    with pytest.raises(AuthenticationError):
        client.check_balance()
    assert len(api.requests) == 1
    client.api_key = OTHER_KEY
    assert client.find_email(JANE).email == "jane@acme.com"
    assert api.requests[-1].headers["x-api-key"] == OTHER_KEY


def test_402_stops_billable_calls_but_not_polling(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email-bulk-async", httpx.Response(402, json={"detail": "No credits"}))
    api.on("GET", "/job-status/t-1", job_answer("running"))
    client = make(api, clock)
    with pytest.raises(InsufficientCreditsError):
        client.find_email_bulk_async([JANE])
    with pytest.raises(InsufficientCreditsError):
        client.find_email_bulk_async([JANE])
    assert len(api.requests) == 1
    assert client.job_status("t-1").state is JobState.RUNNING  # paid jobs can still be collected
    client.api_key = CANARY  # after topping up: the same key, set again
    with pytest.raises(InsufficientCreditsError):
        client.find_email_bulk_async([JANE])
    assert len(api.requests) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (401, AuthenticationError), (402, InsufficientCreditsError),
     (403, PermissionDeniedError), (404, NotFoundError), (422, UnprocessableEntityError),
     (409, APIStatusError)],
)
def test_client_errors_are_not_retried(
    api: Api, clock: FakeClock, status: int, error: type[APIStatusError]
) -> None:
    detail = [{"loc": ["body", "lead", "name"], "msg": "field required", "type": "missing"}]
    api.on("POST", "/find-email", httpx.Response(status, json={"detail": detail}))
    api.on("GET", "/check-balance", httpx.Response(status, json={"error": "x", "message": "y"}))
    client = make(api, clock)
    with pytest.raises(error) as caught:
        client.find_email(JANE)
    assert type(caught.value) is error and caught.value.status_code == status
    if status == 422:
        assert "body.lead.name: field required" in str(caught.value)
    client.api_key = CANARY
    with pytest.raises(error):
        client.check_balance()
    assert len(api.requests) == 2
    assert clock.sleeps == []


AMBIGUOUS_FAULTS: list[tuple[str, Answer]] = [
    ("500", httpx.Response(500, json={"detail": "Internal error"})),
    ("502 html", httpx.Response(502, text="<html>Bad gateway</html>")),
    ("503 retry-after", httpx.Response(503, headers={"retry-after": "1"}, json={"detail": "x"})),
    ("html200", httpx.Response(200, text="<html>hello</html>",
                               headers={"content-type": "text/html"})),
    ("badjson", httpx.Response(200, content=b'{"name": "Jane", "email": [["ja')),
    ("wrong shape", httpx.Response(200, json=["jane@acme.com"])),
    ("truncate", lambda _: httpx.Response(200, stream=CutShort())),
    ("read timeout", httpx.ReadTimeout("timed out")),
    ("dropped", httpx.RemoteProtocolError("Server disconnected without sending a response.")),
    ("reset", httpx.ReadError("Connection reset by peer")),
    ("write error", httpx.WriteError("Broken pipe")),
]


@pytest.mark.parametrize("fault", [f for _, f in AMBIGUOUS_FAULTS],
                         ids=[n for n, _ in AMBIGUOUS_FAULTS])
@pytest.mark.parametrize("path", ["/find-email", "/find-email-async", "/find-email-bulk-async"])
def test_post_with_a_lost_answer_is_never_resent(
    api: Api, clock: FakeClock, fault: Answer, path: str
) -> None:
    api.on("POST", path, fault, echo)
    client = make(api, clock)
    call: dict[str, Callable[[], Any]] = {
        "/find-email": lambda: client.find_email(JANE),
        "/find-email-async": lambda: client.find_email_async(JANE),
        "/find-email-bulk-async": lambda: client.find_email_bulk_async([JANE]),
    }
    with pytest.raises(AmbiguousRequestError) as caught:
        call[path]()
    assert len(api.requests) == 1
    assert "may have been billed" in str(caught.value)
    assert clock.sleeps == []


def test_get_503_is_retried_with_backoff(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(503, json={"detail": "busy"}),
           httpx.Response(500), httpx.Response(200, json={"credits": 3}))
    assert make(api, clock).check_balance() == 3
    assert len(api.requests) == 3
    assert clock.sleeps == [0.5, 1.0]  # rng 0: the top of the jitter band


def test_get_honours_retry_after(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(503, headers={"retry-after": "7"}),
           httpx.Response(200, json={"credits": 3}))
    make(api, clock).check_balance()
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize(
    "fault",
    [httpx.Response(200, text="<html>captive portal</html>"), httpx.ReadTimeout("timed out"),
     lambda _: httpx.Response(200, stream=CutShort()), httpx.RemoteProtocolError("dropped")],
    ids=["html200", "read timeout", "truncate", "dropped"],
)
def test_get_with_a_lost_answer_is_retried(api: Api, clock: FakeClock, fault: Answer) -> None:
    api.on("GET", "/job-status/t-1", fault, job_answer("running"))
    assert make(api, clock).job_status("t-1").state is JobState.RUNNING
    assert len(api.requests) == 2


def test_get_gives_up_after_max_retries(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(503, json={"detail": "down for maintenance"}))
    with pytest.raises(ServerError) as caught:
        make(api, clock, max_retries=2).check_balance()
    assert len(api.requests) == 3
    assert "down for maintenance" in str(caught.value) and "3 attempts" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("timed out"),
     httpx.PoolTimeout("no connection")],
    ids=lambda e: type(e).__name__,
)
def test_connect_errors_are_retried_even_for_post(
    api: Api, clock: FakeClock, error: Exception
) -> None:
    api.on("POST", "/find-email", error, error, echo)
    assert make(api, clock).find_email(JANE).email == "jane@acme.com"
    assert len(api.requests) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_connect_errors_give_up_as_transport_error(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email", httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(TransportError) as caught:
        make(api, clock, max_retries=3).find_email(JANE)
    assert len(api.requests) == 4
    assert "Nothing was sent or billed" in str(caught.value)


# -- 429 and pacing ----------------------------------------------------------------------------


def test_429_post_waits_for_retry_after_seconds(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email", httpx.Response(429, headers={"retry-after": "30"}), echo)
    start = clock.now
    assert make(api, clock).find_email(JANE).email == "jane@acme.com"
    assert api.times == [start, start + 30]


def test_429_http_date_retry_after(api: Api, clock: FakeClock) -> None:
    now = 1_700_000_000
    headers = {"date": email.utils.formatdate(now, usegmt=True),
               "retry-after": email.utils.formatdate(now + 12, usegmt=True)}
    api.on("POST", "/find-email", httpx.Response(429, headers=headers), echo)
    make(api, clock).find_email(JANE)
    assert api.times[1] - api.times[0] == 12


def test_429_huge_retry_after_is_capped(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(429, headers={"retry-after": "86400"}),
           httpx.Response(200, json={"credits": 1}))
    make(api, clock).check_balance()
    assert api.times[1] - api.times[0] == 60


def test_429_without_retry_after_backs_off_then_gives_up(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email", httpx.Response(429, json={"detail": "Too many requests"}))
    with pytest.raises(RateLimitError):
        make(api, clock, max_retries=3).find_email(JANE)
    gaps = [b - a for a, b in zip(api.times, api.times[1:], strict=False)]
    assert gaps == [0.5, 1.0, 2.0]


def test_429_slows_every_client_sharing_the_key(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(429, headers={"retry-after": "30"}),
           httpx.Response(200, json={"credits": 1}))
    start = clock.now
    with pytest.raises(RateLimitError):
        make(api, clock, max_retries=0).check_balance()
    other_key = make(api, clock, key=OTHER_KEY)
    other_key.check_balance()
    assert api.times[-1] == start  # a different key is not held back
    same_key = make(api, clock)
    same_key.check_balance()
    assert api.times[-1] == start + 30


def test_requests_are_paced_under_the_rate_limit(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/check-balance", httpx.Response(200, json={"credits": 1}))
    first, second = make(api, clock, requests_per_minute=60), make(api, clock,
                                                                   requests_per_minute=60)
    start = clock.now
    for client in (first, second, first):
        client.check_balance()
    assert api.times == [start, start + 1, start + 2]


# -- our own deadline ---------------------------------------------------------------------------


def test_a_trickling_post_hits_the_total_deadline(api: Api, clock: FakeClock) -> None:
    body = json.dumps({**JANE, "email": [["jane@acme.com", "OK", "COMPANY"]]}).encode()
    api.on("POST", "/find-email", lambda _: httpx.Response(200, stream=Trickle(body, clock)))
    start = clock.now
    with pytest.raises(AmbiguousRequestError, match="no complete answer within 5 s"):
        make(api, clock, timeout=5).find_email(JANE)
    assert len(api.requests) == 1
    assert clock.now - start == 6  # stopped on the first byte past the deadline, not at the end


def test_a_trickling_get_is_retried_then_reported(api: Api, clock: FakeClock) -> None:
    body = json.dumps({"credits": 12345678}).encode()
    api.on("GET", "/check-balance", lambda _: httpx.Response(200, stream=Trickle(body, clock)))
    with pytest.raises(APIError) as caught:
        make(api, clock, timeout=5, max_retries=2).check_balance()
    assert type(caught.value) is APIError
    assert len(api.requests) == 3


def test_a_trickle_inside_the_deadline_is_fine(api: Api, clock: FakeClock) -> None:
    body = json.dumps({"credits": 7}).encode()
    api.on("GET", "/check-balance", lambda _: httpx.Response(200, stream=Trickle(body, clock)))
    assert make(api, clock, timeout=len(body) + 1).check_balance() == 7


# -- the key stays secret ----------------------------------------------------------------------


def _all_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(getattr(exc, "detail", ""))


def test_the_key_never_appears_in_reprs_errors_or_logs(
    api: Api, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echoed = {"detail": f"bad key {CANARY}", "message": CANARY}
    api.on("POST", "/find-email", httpx.Response(503, json=echoed))
    api.on("POST", "/find-email-async", httpx.ConnectError(f"refused {CANARY}"))
    api.on("GET", "/check-balance", httpx.Response(503, json=echoed),
           httpx.Response(401, json=echoed))
    api.on("GET", "/job-status/t-1", job_answer("failed", error=f"leaked {CANARY}"))
    client = make(api, clock, max_retries=1)
    assert CANARY not in repr(client) and CANARY not in str(vars(client))
    errors: list[BaseException] = []
    for call in (
        lambda: client.find_email(JANE),
        lambda: client.find_email_async(JANE),
        lambda: client.wait("t-1"),
        lambda: client.check_balance(),
        lambda: client.check_balance(),  # latched
        lambda: Client(CANARY, base_url="http://example.com"),
        lambda: client.find_email({"name": CANARY, "company": math.nan}),
    ):
        with pytest.raises(Exception) as caught:
            call()
        errors.append(caught.value)
    assert [type(e).__name__ for e in errors] == [
        "AmbiguousRequestError", "TransportError", "JobError", "AuthenticationError",
        "AuthenticationError", "ConfigurationError", "InvalidLeadError",
    ]
    for error in errors:
        assert CANARY not in _all_text(error)
    assert "***" in str(errors[0])  # the echoed key was masked, the rest of the detail kept
    assert caplog.records, "the client logs its attempts at DEBUG"
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)


def test_async_client_repr_masks_the_key(api: Api, clock: FakeClock) -> None:
    client = make_async(api, clock)
    assert CANARY not in repr(client)
    assert "sha256:" in repr(client)


# -- the async client drives the same flows ---------------------------------------------------


async def test_async_find_email_and_bulk(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email", echo)
    api.on("POST", "/find-email-bulk", shuffled_bulk)
    async with make_async(api, clock) as client:
        assert (await client.find_email(JANE, mode=Mode.PERSONAL)).email == "jane@gmail.com"
        results = await client.find_email_bulk([{"name": f"P{i}"} for i in range(150)])
    assert [r.email for r in results] == [f"p{i}@acme.com" for i in range(150)]
    assert [len(b["leads"]) for b in api.bodies()[1:]] == [100, 50]
    assert client._http.is_closed


async def test_async_submit_wait_and_balance(api: Api, clock: FakeClock) -> None:
    api.on("POST", "/find-email-bulk-async", httpx.Response(200, json={"task_id": "t-1",
                                                                        "status": "RUNNING"}))
    result = [{"name": "A", REF_FIELD: "a", "email": [["a@x.com", "OK"]]}]
    api.on("GET", "/job-status/t-1", job_answer("running"),
           job_answer("completed", result=result, charge_amount=5))
    api.on("GET", "/check-balance", httpx.Response(503), httpx.Response(200, json={"credits": 2}))
    async with make_async(api, clock) as client:
        job = await client.find_email_bulk_async([{"name": "A"}], refs=["a"])
        done = await client.wait(job.task_id)
        assert await client.check_balance() == 2
        assert (await client.job_status("t-1")).charge_cents == 5
    assert done.results[0].ref == "a" and done.charge_cents == 5
    assert clock.sleeps == [1.0, 0.5]


async def test_async_ambiguous_post_and_deadline(api: Api, clock: FakeClock) -> None:
    body = json.dumps({"credits": 1}).encode()
    api.on("POST", "/find-email", lambda _: httpx.Response(200, stream=CutShort()))
    api.on("GET", "/check-balance", lambda _: httpx.Response(200, stream=Trickle(body, clock)))
    client = make_async(api, clock, timeout=3, max_retries=1)
    with pytest.raises(AmbiguousRequestError):
        await client.find_email(JANE)
    with pytest.raises(APIError, match="no complete answer within 3 s"):
        await client.check_balance()
    assert len(api.requests) == 3
    await client.close()


async def test_async_wait_raises_job_errors(api: Api, clock: FakeClock) -> None:
    api.on("GET", "/job-status/t-1", job_answer("cancelled"))
    api.on("GET", "/job-status/t-2", job_answer("running"))
    async with make_async(api, clock) as client:
        with pytest.raises(JobError):
            await client.wait("t-1")
        with pytest.raises(JobTimeoutError):
            await client.wait("t-2", timeout=3)
