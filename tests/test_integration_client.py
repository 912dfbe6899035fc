"""Both Sixtyfour clients against our own server over real HTTP on 127.0.0.1.

Every endpoint, and every fault switch from docs/TESTING.md, for `Client` and `AsyncClient`. The
server's counters are the oracle: how many requests reached each endpoint and how many times each
lead was charged. The client cannot add headers itself, so a recording transport (a subclass of
httpx's own transport, so the HTTP is real) turns a fault on for chosen requests with the
`x-lf-fault` header, and checks every request on its way out against the request schemas of
SIXTYFOUR_API.md. Every API key is a canary (`sk64_CANARY_...`): no log record (DEBUG, for
lead_finder, httpx and httpcore), exception or repr may contain one.

One server serves the whole module; each test gets a fresh key (429 throttles are process-wide
per key) and zeroed counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from servers import LiveServer, WebhookReceiver, free_port, live_server, new_api_key

from lead_finder.errors import (
    AmbiguousRequestError,
    APIStatusError,
    AuthenticationError,
    InsufficientCreditsError,
    InvalidLeadError,
    JobError,
    LeadFinderError,
    NotFoundError,
    ServerError,
    WebhookVerificationError,
)
from lead_finder.models import Mode, Result, Status
from lead_finder.server import DirectoryBackend
from lead_finder.server.lookups import charge_key
from lead_finder.sixtyfour import REF_FIELD, AsyncClient, Client, Job, JobState, verify_signature
from lead_finder.sixtyfour._retry import INITIAL_RETRY_DELAY, JITTER, throttle_for

CANARY = "sk64_CANARY_"
TIMEOUT = 2.0
WEBHOOK_SECRET = "sk_whsec_" + "5e" * 32
# Every key the module server accepts; each harness takes a fresh one. All are canaries.
KEYS = [new_api_key() for _ in range(400)]
_fresh_keys = iter(KEYS[1:])
# The smallest wait our backoff can produce after a first failure (full jitter drawn).
MIN_BACKOFF = INITIAL_RETRY_DELAY * (1 - JITTER)

PEOPLE = {p.name: p for p in DirectoryBackend.demo().people}
_FIRST = ("Ada", "Bruno", "Celia", "Dmitri", "Elif", "Farah", "Goran", "Hilde", "Ivo", "Jana",
          "Kofi", "Lena", "Mateo", "Nadia", "Oskar", "Priya")
_LAST = ("Abernathy", "Brightwater", "Castellano", "Dunmore", "Eriksen", "Fairweather",
         "Galloway", "Hollis", "Ingram", "Jablonski", "Kowalczyk", "Lindqvist", "Marchetti",
         "Novak", "Okafor", "Pemberton")


def lead(name: str) -> dict[str, str]:
    """A directory person as a lead (name and company, the way a user would type them)."""
    return {"name": name, "company": PEOPLE[name].company}


def strangers(count: int) -> list[dict[str, str]]:
    """Distinct people the directory does not know (NOT_FOUND, still billed)."""
    leads = [{"name": f"{first} {last}", "company": "Zephyr Analytics"}
             for first in _FIRST for last in _LAST]
    assert count <= len(leads)
    return leads[:count]


def expected_email(lead: Mapping[str, str], mode: Mode = Mode.PROFESSIONAL) -> str | None:
    person = PEOPLE.get(lead["name"])
    if person is None:
        return None
    return (person.personal_email if mode is Mode.PERSONAL else person.email) or None


def charges_for(*leads: Mapping[str, str], mode: Mode = Mode.PROFESSIONAL) -> dict[str, int]:
    """The server's charge counter after each lead was billed exactly once."""
    counts = Counter(charge_key(lead, mode) for lead in leads)
    assert all(n == 1 for n in counts.values()), "a test lead list repeats a person"
    return dict(counts)


# ------------------------------------------------------------------------ the request schemas
# SIXTYFOUR_API.md, "FindEmailRequest" and "FindEmailBulkRequest", as a JSON-schema subset.

_OPTIONS: dict[str, Any] = {
    "mode": {"enum": ["PROFESSIONAL", "PERSONAL"]},
    "verify_emails": {"type": "boolean"},
    "providers": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]},
    "webhook_url": {"anyOf": [
        {"type": "null"},
        {"type": "string", "format": "webhook-url", "minLength": 1, "maxLength": 2083},
    ]},
}
_LEAD: dict[str, Any] = {"type": "object", "minProperties": 1}
FIND_EMAIL_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["lead"],
    "properties": {"lead": _LEAD, **_OPTIONS},
    "additionalProperties": False,
}
FIND_EMAIL_BULK_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["leads"],
    # at most 100: in the docs' prose rather than the published schema, checked all the same
    "properties": {"leads": {"type": "array", "minItems": 1, "maxItems": 100, "items": _LEAD},
                   **_OPTIONS},
    "additionalProperties": False,
}
REQUEST_SCHEMAS = {
    "/find-email": FIND_EMAIL_REQUEST,
    "/find-email-async": FIND_EMAIL_REQUEST,
    "/find-email-bulk": FIND_EMAIL_BULK_REQUEST,
    "/find-email-bulk-async": FIND_EMAIL_BULK_REQUEST,
}
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _webhook_url_ok(text: str) -> bool:
    """An https URI; plain http only to a loopback receiver (what our test server allows too)."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        return False
    if not url.host:
        return False
    return url.scheme == "https" or (url.scheme == "http" and url.host in ("127.0.0.1", "::1"))


def schema_errors(value: Any, schema: Mapping[str, Any], where: str = "$") -> list[str]:
    """Where `value` breaks `schema` (type, enum, required, properties, additionalProperties,
    minProperties, items, minItems, maxItems, minLength, maxLength, anyOf, format)."""
    if "anyOf" in schema:
        if all(schema_errors(value, option, where) for option in schema["anyOf"]):
            return [f"{where}: {value!r:.60} matches none of the allowed forms"]
        return []
    kind = schema.get("type")
    if kind is not None and not _JSON_TYPES[kind](value):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and (not isinstance(value, str) or value not in schema["enum"]):
        errors.append(f"{where}: {value!r:.60} is not one of {schema['enum']}")
    if isinstance(value, dict):
        errors += [f"{where}.{name}: required" for name in schema.get("required", ())
                   if name not in value]
        if len(value) < schema.get("minProperties", 0):
            errors.append(f"{where}: empty object")
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], f"{where}.{name}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{where}.{name}: not a field of the request")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if len(value) > schema.get("maxItems", math.inf):
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
            errors.append(f"{where}: length {len(value)} out of range")
        if schema.get("format") == "webhook-url" and not _webhook_url_ok(value):
            errors.append(f"{where}: not an https URL")
    return errors


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def request_problems(request: httpx.Request, base_url: str, key: str) -> list[str]:
    """What is wrong with a request the client is about to send: host, key, method and path,
    the body against the request schema, the bulk join keys, the job-status query."""
    problems: list[str] = []
    base = httpx.URL(base_url)
    url = request.url
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        problems.append("sent somewhere other than base_url")
    if request.headers.get("x-api-key") != key:
        problems.append("x-api-key missing or not the client's key")
    path = url.path
    if request.method == "POST":
        schema = REQUEST_SCHEMAS.get(path)
        if schema is None:
            return [*problems, f"POST to {path}, which is not a Find Email endpoint"]
        if url.query:
            problems.append(f"POST {path} has a query string")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            problems.append(f"POST {path} is not sent as application/json")
        try:
            body = json.loads(request.content.decode("utf-8"), parse_constant=_no_constants)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            return [*problems, f"POST {path}: the body is not strict JSON ({exc})"]
        problems += [f"POST {path}: {e}" for e in schema_errors(body, schema)]
        if isinstance(body, dict) and isinstance(body.get("leads"), list):
            refs = [x.get(REF_FIELD) if isinstance(x, dict) else None for x in body["leads"]]
            if not all(isinstance(r, str) and r for r in refs) or len(set(refs)) != len(refs):
                problems.append(f"POST {path}: every lead needs its own {REF_FIELD}")
    elif request.method == "GET":
        if request.content:
            problems.append(f"GET {path} has a body")
        query = sorted(url.params.multi_items())
        if path == "/check-balance":
            if query:
                problems.append("GET /check-balance has a query string")
        elif path.startswith("/job-status/") and path.count("/") == 2 and len(path) > 12:
            if query not in ([("cost_units", "cents")], [("cost_units", "credits")]):
                problems.append(f"GET {path}: cost_units must be cents or credits, got {query}")
        else:
            problems.append(f"GET {path} is not a Find Email endpoint")
    else:
        problems.append(f"{request.method} is not used by the Find Email API")
    return problems


# ------------------------------------------------------------- the recording, faulting transport


@dataclass
class Rule:
    """Give `fault` to requests for `path` (exact; a trailing "/" makes it a prefix; None: any),
    after letting the first `skip` through, at most `times` times (None: every time)."""

    fault: str
    path: str | None = None
    method: str | None = None
    times: int | None = None
    skip: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, request: httpx.Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        if self.path is None:
            return True
        path = request.url.path
        return path.startswith(self.path) if self.path.endswith("/") else path == self.path


@dataclass
class Seen:
    """One request as it left the client, and the status that came back (if any did)."""

    method: str
    path: str
    body: Any
    fault: str | None
    at: float
    problems: list[str]
    status: int | None = None
    answered_at: float | None = None
    response_body: bytes | None = None

    @property
    def endpoint(self) -> str:
        return "/" + self.path.strip("/").split("/", 1)[0]


class Recorder:
    """Shared by a client's transport: applies fault rules, checks and records every request."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.key = key
        self.rules: list[Rule] = []
        self.sent: list[Seen] = []
        self.capture = False  # keep response bodies (only for tests whose answers are small)
        self._lock = threading.Lock()

    def set_faults(self, *rules: Rule) -> None:
        with self._lock:
            self.rules = list(rules)

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()

    def before(self, request: httpx.Request) -> Seen:
        problems = request_problems(request, self.base_url, self.key)
        body = json.loads(request.content) if request.method == "POST" and not problems else None
        with self._lock:
            chosen: Rule | None = None
            for rule in self.rules:
                if not rule.matches(request):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    break
                if rule.times is None or rule.times > 0:
                    chosen = rule
                    if rule.times is not None:
                        rule.times -= 1
                    break
            if chosen is not None:
                request.headers["x-lf-fault"] = chosen.fault
                request.headers.update(chosen.headers)
            seen = Seen(request.method, request.url.path, body,
                        chosen.fault if chosen else None, time.monotonic(), problems)
            self.sent.append(seen)
        return seen

    @staticmethod
    def answered(seen: Seen, status: int) -> None:
        seen.status, seen.answered_at = status, time.monotonic()

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.sent if (method is None or s.method == method)
                    and (path is None or s.path == path)]

    def per_endpoint(self) -> dict[str, int]:
        return dict(Counter(s.endpoint for s in self.requests()))


class RecordingTransport(httpx.HTTPTransport):
    """httpx's real transport, with the fault header and the checks of a `Recorder`."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        seen = self.recorder.before(request)
        response = super().handle_request(request)
        self.recorder.answered(seen, response.status_code)
        if not self.recorder.capture:
            return response
        seen.response_body = response.read()
        return httpx.Response(response.status_code, headers=response.headers,
                              content=seen.response_body)


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    """The asyncio twin of `RecordingTransport`."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        seen = self.recorder.before(request)
        response = await super().handle_async_request(request)
        self.recorder.answered(seen, response.status_code)
        if not self.recorder.capture:
            return response
        seen.response_body = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers,
                              content=seen.response_body)


# ------------------------------------------------------------------------- driving both clients


@dataclass(frozen=True)
class Op:
    """A client method call, to run on either client."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def op(name: str, *args: Any, **kwargs: Any) -> Op:
    return Op(name, args, kwargs)


@dataclass
class Outcome:
    value: Any
    error: LeadFinderError | None
    elapsed: float


def assert_clean(*things: object) -> None:
    """No API key in str(), repr() or (for exceptions) the formatted traceback chain."""
    for thing in things:
        text = str(thing) + repr(thing)
        if isinstance(thing, BaseException):
            text += "".join(traceback.format_exception(thing))
        assert CANARY not in text, f"an API key leaked into {type(thing).__name__}"


class Harness:
    """One client, sync or async, against a server, with a recording transport.

    The async client runs on its own event loop (`asyncio.Runner`), so one test body drives
    both clients the same way.
    """

    def __init__(self, kind: str, server: LiveServer, key: str,
                 recorder: Recorder | None = None, **options: Any) -> None:
        self.kind = kind
        self.key = key
        self.recorder = recorder or Recorder(server.base_url, key)
        settings: dict[str, Any] = {
            "base_url": server.base_url,
            "timeout": TIMEOUT,
            "poll_interval": 0.05,
            "requests_per_minute": math.inf,
            **options,
        }
        self._runner: asyncio.Runner | None = None
        self._closed = False
        self.client: Client | AsyncClient
        if kind == "sync":
            self.client = Client(key, transport=RecordingTransport(self.recorder), **settings)
        else:
            self._runner = asyncio.Runner()
            self.client = AsyncClient(
                key, transport=AsyncRecordingTransport(self.recorder), **settings
            )

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.client, name)
        if self._runner is None:
            return method(*args, **kwargs)
        return self._runner.run(method(*args, **kwargs))

    def run(self, call: Op) -> Any:
        return self.call(call.name, *call.args, **call.kwargs)

    def raises(self, error: type[LeadFinderError], call: Op) -> Any:
        with pytest.raises(error) as info:
            self.run(call)
        assert_clean(info.value, self.client)
        return info.value

    def gather(self, *calls: Op) -> list[Outcome]:
        """Run the calls at the same time (threads for the sync client), each timed."""

        def finish(start: float, value: Any, error: LeadFinderError | None) -> Outcome:
            elapsed = time.monotonic() - start
            assert_clean(value, error)
            return Outcome(value, error, elapsed)

        if self._runner is None:
            client = self.client

            def one(call: Op) -> Outcome:
                start = time.monotonic()
                try:
                    return finish(start, getattr(client, call.name)(*call.args, **call.kwargs),
                                  None)
                except LeadFinderError as exc:
                    return finish(start, None, exc)

            with ThreadPoolExecutor(len(calls)) as pool:
                return list(pool.map(one, calls))

        async def one_async(call: Op) -> Outcome:
            start = time.monotonic()
            try:
                value = await getattr(self.client, call.name)(*call.args, **call.kwargs)
            except LeadFinderError as exc:
                return finish(start, None, exc)
            return finish(start, value, None)

        async def every() -> list[Outcome]:
            return list(await asyncio.gather(*(one_async(c) for c in calls)))

        return self._runner.run(every())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._runner is None:
            assert isinstance(self.client, Client)
            self.client.close()
        else:
            assert isinstance(self.client, AsyncClient)
            self._runner.run(self.client.close())
            self._runner.close()


# ------------------------------------------------------------------------------------ servers


@dataclass
class OtherHost:
    """A tiny HTTP server that records whatever reaches it (the redirect target)."""

    url: str
    received: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def other_host() -> Iterator[OtherHost]:
    host = OtherHost(url="")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            host.received.append((self.command, self.path,
                                  {k.lower(): v for k, v in self.headers.items()}))
            body = b'{"credits": 1.0}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _record  # the names http.server calls

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield host
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def server(other_host: OtherHost) -> Iterator[LiveServer]:
    with live_server(
        api_key=KEYS[0],
        api_keys=KEYS,
        enable_faults=True,
        rate_limit_per_minute=None,
        webhook_secret=WEBHOOK_SECRET,
        webhook_retry_delays=(0.1, 0.2),
        redirect_url=other_host.url,
        seed=64,
    ) as srv:
        yield srv


def settle(server: LiveServer, timeout: float = 10.0) -> None:
    """Wait until the server has no running job and no undelivered webhook."""
    jobs = server.app.state.jobs
    deadline = time.monotonic() + timeout
    while jobs.running() or jobs.pending_webhooks():
        assert time.monotonic() < deadline, "the server's jobs did not finish"
        time.sleep(0.01)


def reset(server: LiveServer, *harnesses: Harness) -> None:
    """Forget what was sent and charged so far (after a test's own preparation)."""
    settle(server)
    server.stats.reset()
    for h in harnesses:
        h.recorder.clear()


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    for name in ("lead_finder", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    # In teardown `caplog.records` holds only the teardown's records: read every phase.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    for record in records:
        text = record.getMessage() + repr(vars(record))
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        assert CANARY not in text, f"an API key leaked into a {record.name} log record"


@pytest.fixture
def make(server: LiveServer) -> Iterator[Callable[..., Harness]]:
    """Make harnesses on the module server (or `on=` another one); fresh key unless given.

    At teardown: every request any of them sent passed the schema and header checks."""
    reset(server)
    made: list[Harness] = []

    def factory(kind: str, *, key: str | None = None, recorder: Recorder | None = None,
                on: LiveServer | None = None, **options: Any) -> Harness:
        harness = Harness(kind, on or server, key or next(_fresh_keys), recorder, **options)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()
    problems = [p for h in made for seen in h.recorder.requests() for p in seen.problems]
    assert not problems, problems
    settle(server)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def h(make: Callable[..., Harness], kind: str) -> Harness:
    return make(kind)


# The four billable endpoints, each with its own people so that charges never legitimately repeat.
POST_CASES: dict[str, tuple[Op, list[dict[str, str]]]] = {
    "/find-email": (op("find_email", lead("Jane Doe")), [lead("Jane Doe")]),
    "/find-email-async": (op("find_email_async", lead("John Smith")), [lead("John Smith")]),
    "/find-email-bulk": (
        op("find_email_bulk", [lead("Hank Scorpio"), lead("Zoë Müller")]),
        [lead("Hank Scorpio"), lead("Zoë Müller")],
    ),
    "/find-email-bulk-async": (
        op("find_email_bulk_async", [lead("Monica Hall"), lead("Gavin Belson")]),
        [lead("Monica Hall"), lead("Gavin Belson")],
    ),
}
ALL_POST_LEADS = [x for _, leads in POST_CASES.values() for x in leads]


def two_finished_jobs(h: Harness, server: LiveServer) -> tuple[str, str]:
    """Two completed single jobs to poll, then counters zeroed."""
    first = h.call("find_email_async", lead("Peter Gibbons"))
    second = h.call("find_email_async", lead("Michael Bolton"))
    h.call("wait", first.task_id, timeout=10)
    h.call("wait", second.task_id, timeout=10)
    reset(server, h)
    return first.task_id, second.task_id


def get_rules(fault: str, first: str, second: str, **headers: str) -> list[Rule]:
    """`fault` on the first request of each GET a test makes (one job per GET call)."""
    return [Rule(fault, path=path, method="GET", times=1, headers=dict(headers))
            for path in (f"/job-status/{first}", f"/job-status/{second}", "/check-balance")]


def get_calls(first: str, second: str) -> list[Op]:
    return [op("job_status", first), op("wait", second, timeout=10), op("check_balance")]


def check_get_answers(outcomes: list[Outcome], first: str, second: str) -> None:
    status, waited, balance = (o.value for o in outcomes)
    assert [o.error for o in outcomes] == [None, None, None]
    assert isinstance(status, Job) and status.task_id == first
    assert status.state is JobState.COMPLETED
    assert status.results[0].email == PEOPLE["Peter Gibbons"].email
    assert isinstance(waited, Job) and waited.task_id == second
    assert waited.results[0].email == PEOPLE["Michael Bolton"].email
    assert isinstance(balance, float) and balance > 0


# ------------------------------------------------------------------------------ the validator


def _request(method: str, path: str, body: Any = None, key: str = "k", **extra: Any) -> Any:
    content = None if body is None else json.dumps(body).encode()
    headers = {"x-api-key": key, "content-type": "application/json"}
    return httpx.Request(method, "http://127.0.0.1:9" + path, content=content, headers=headers,
                         **extra)


GOOD = {"lead": {"name": "Jane Doe", "company": "Acme"}, "mode": "PROFESSIONAL",
        "verify_emails": True, "providers": None, "webhook_url": None}


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        (_request("POST", "/find-email", {**GOOD, "mode": "professional"}), "is not one of"),
        (_request("POST", "/find-email", {"mode": "PERSONAL"}), "$.lead: required"),
        (_request("POST", "/find-email", {"lead": {}}), "empty object"),
        (_request("POST", "/find-email", {"lead": ["Jane"]}), "expected object"),
        (_request("POST", "/find-email", {**GOOD, "verify_emails": "yes"}), "expected boolean"),
        (_request("POST", "/find-email", {**GOOD, "providers": "a"}), "none of the allowed"),
        (_request("POST", "/find-email", {**GOOD, "providers": [1]}), "none of the allowed"),
        (_request("POST", "/find-email-async", {**GOOD, "webhook_url": "http://example.com/h"}),
         "none of the allowed"),
        (_request("POST", "/find-email-async",
                  {**GOOD, "webhook_url": "https://e.com/" + "x" * 2083}), "none of the allowed"),
        (_request("POST", "/find-email", {**GOOD, "lead_finder_ref": "0"}), "not a field"),
        (_request("POST", "/find-email-bulk", {"leads": []}), "fewer than 1"),
        (_request("POST", "/find-email-bulk",
                  {"leads": [{"name": "x", REF_FIELD: str(i)} for i in range(101)]}),
         "more than 100"),
        (_request("POST", "/find-email-bulk", {"leads": [{"name": "a"}, {"name": "b"}]}),
         REF_FIELD),
        (_request("POST", "/find-email-bulk",
                  {"leads": [{"name": "a", REF_FIELD: "0"}, {"name": "b", REF_FIELD: "0"}]}),
         REF_FIELD),
        (httpx.Request("POST", "http://127.0.0.1:9/find-email", headers={"x-api-key": "k"},
                       content=b'{"lead": {"name": NaN}}'), "not strict JSON"),
        (_request("POST", "/find-email", GOOD, key="other"), "x-api-key"),
        (httpx.Request("POST", "http://127.0.0.2:9/find-email",
                       headers={"x-api-key": "k", "content-type": "application/json"},
                       json=GOOD), "other than base_url"),
        (_request("POST", "/find-email", GOOD, params={"a": "1"}), "query string"),
        (_request("POST", "/cancel-job", GOOD), "not a Find Email endpoint"),
        (_request("GET", "/job-status/abc"), "cost_units"),
        (_request("GET", "/job-status/abc", params={"cost_units": "dollars"}), "cost_units"),
        (_request("GET", "/check-balance", params={"x": "1"}), "query string"),
        (_request("GET", "/check-balance", {"a": 1}), "has a body"),
        (_request("DELETE", "/check-balance"), "not used"),
    ],
)
def test_the_request_checks_catch_off_contract_requests(request_: Any, problem: str) -> None:
    problems = request_problems(request_, "http://127.0.0.1:9", "k")
    assert any(problem in p for p in problems), problems


def test_the_request_checks_pass_the_documented_forms() -> None:
    bulk = {"leads": [{"name": "a", REF_FIELD: "0"}], "mode": "PERSONAL",
            "webhook_url": "https://hooks.example.com/x", "providers": ["p1"]}
    for request in (
        _request("POST", "/find-email", GOOD),
        _request("POST", "/find-email-async", {**GOOD, "webhook_url": "http://127.0.0.1:1/h"}),
        _request("POST", "/find-email-bulk", bulk),
        _request("POST", "/find-email-bulk-async", bulk),
        _request("GET", "/job-status/abc", params={"cost_units": "credits"}),
        _request("GET", "/check-balance"),
    ):
        assert request_problems(request, "http://127.0.0.1:9", "k") == []


# --------------------------------------------------------------------------- every endpoint


@pytest.mark.integration
def test_every_endpoint_round_trip(
    h: Harness, server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    before = h.call("check_balance")

    jane = h.call("find_email", lead("Jane Doe"))
    assert jane.lead == lead("Jane Doe")
    assert (jane.email, jane.status, jane.cost_cents) == (PEOPLE["Jane Doe"].email, Status.OK, 5)

    personal = h.call("find_email", lead("Jane Doe"), mode="PERSONAL")
    assert personal.mode is Mode.PERSONAL
    assert (personal.email, personal.cost_cents) == (PEOPLE["Jane Doe"].personal_email, 20)

    job = h.call("find_email_async", lead("John Smith"))
    assert job.state is JobState.RUNNING and job.task_id
    done = h.call("wait", job.task_id, timeout=10)
    assert done.state is JobState.COMPLETED and done.charge_cents == 5
    assert [r.email for r in done.results] == [PEOPLE["John Smith"].email]

    bulk_leads = [lead("Hank Scorpio"), lead("Frank Grimes"), strangers(1)[0]]
    bulk = h.call("find_email_bulk", bulk_leads)
    assert [r.lead for r in bulk] == bulk_leads
    assert [r.ref for r in bulk] == ["0", "1", "2"]
    assert [r.email for r in bulk] == [PEOPLE["Hank Scorpio"].email, None, None]
    assert [r.status for r in bulk] == [Status.OK, Status.NOT_FOUND, Status.NOT_FOUND]

    job_leads = [lead("Peter Gibbons"), lead("Mindy Simmons"), strangers(2)[1]]
    bulk_job = h.call("find_email_bulk_async", job_leads, refs=["p", "m", "x"])
    bulk_done = h.call("wait", bulk_job.task_id, timeout=10)
    by_ref = {r.ref: r for r in bulk_done.results}
    assert sorted(by_ref) == ["m", "p", "x"]
    assert by_ref["p"].email == PEOPLE["Peter Gibbons"].email
    assert (by_ref["m"].email, by_ref["m"].emails[0].status) == (
        PEOPLE["Mindy Simmons"].email, "CATCH_ALL")  # the raw status is kept
    assert by_ref["x"].status is Status.NOT_FOUND
    assert bulk_done.charge_cents == 15

    in_credits = h.call("job_status", bulk_job.task_id, cost_units="credits")
    assert in_credits.state is JobState.COMPLETED and in_credits.charge_cents is None
    assert in_credits.raw["charge_credits"] == pytest.approx(1.5)

    missing = h.raises(NotFoundError, op("job_status", "no-such-task"))
    assert missing.status_code == 404
    sent = len(h.recorder.requests())
    h.raises(InvalidLeadError, op("find_email", {"name": "  ", "company": None}))
    h.raises(InvalidLeadError, op("find_email_bulk", [lead("Jane Doe"), {}]))
    assert len(h.recorder.requests()) == sent  # invalid input is refused before any request

    after = h.call("check_balance")
    stats = server.stats.to_json()
    assert stats["charges"] == {
        **charges_for(lead("Jane Doe"), lead("John Smith"), *bulk_leads, *job_leads),
        **charges_for(lead("Jane Doe"), mode=Mode.PERSONAL),
    }
    assert stats["duplicate_charges"] == 0
    assert stats["total_cents"] == 8 * 5 + 20
    assert before - after == pytest.approx(6.0)  # 60 cents, 1 credit = 10 cents
    assert stats["requests"] == h.recorder.per_endpoint()
    assert {k: v for k, v in stats["requests"].items() if k != "/job-status"} == {
        "/check-balance": 2, "/find-email": 2, "/find-email-async": 1,
        "/find-email-bulk": 1, "/find-email-bulk-async": 1,
    }
    assert len(h.recorder.requests("GET", "/job-status/no-such-task")) == 1  # a 404 is final
    # The leak checks below read real records: make sure there are some.
    assert any(r.name == "lead_finder.sixtyfour" and r.levelno == logging.DEBUG
               for r in caplog.records)
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert_clean(h.client, jane, done, bulk, bulk_done)


# ------------------------------------------------------------------------ lost answers on POST

BILLED_BEFORE_FAULT = {"500": True, "503": False, "html200": True, "badjson": True,
                       "truncate": True}


@pytest.mark.integration
@pytest.mark.parametrize("fault", list(BILLED_BEFORE_FAULT))
@pytest.mark.parametrize("path", list(POST_CASES))
def test_post_with_a_lost_answer_is_ambiguous_and_never_resent(
    h: Harness, server: LiveServer, path: str, fault: str
) -> None:
    call, leads = POST_CASES[path]
    h.recorder.set_faults(Rule(fault, path=path))  # a resend would meet the fault again
    error = h.raises(AmbiguousRequestError, call)
    assert "did not resend" in str(error)
    settle(server)  # an async submit's job runs on: let it bill
    assert [(s.method, s.path) for s in h.recorder.requests()] == [("POST", path)]
    stats = server.stats.to_json()
    assert stats["requests"] == {path: 1}
    assert stats["charges"] == (charges_for(*leads) if BILLED_BEFORE_FAULT[fault] else {})
    assert stats["duplicate_charges"] == 0


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["slow", "hang"])
def test_slow_and_hanging_answers_stop_at_the_total_deadline(
    h: Harness, server: LiveServer, fault: str
) -> None:
    first, second = two_finished_jobs(h, server)
    h.recorder.set_faults(*(Rule(fault, path=p) for p in POST_CASES),
                          *get_rules(fault, first, second))
    outcomes = h.gather(*(call for call, _ in POST_CASES.values()), *get_calls(first, second))

    for path, outcome in zip(POST_CASES, outcomes[:4], strict=True):
        assert isinstance(outcome.error, AmbiguousRequestError), (path, outcome)
        # gives up at its own deadline: not before, and not much after
        assert TIMEOUT - 0.05 <= outcome.elapsed < TIMEOUT + 1.5, (path, outcome.elapsed)
    check_get_answers(outcomes[4:], first, second)
    for outcome in outcomes[4:]:  # one attempt cut at the deadline, a backoff, one good answer
        assert outcome.elapsed < TIMEOUT + 1.5 + INITIAL_RETRY_DELAY

    settle(server)
    assert Counter(s.path for s in h.recorder.requests()) == {
        **{p: 1 for p in POST_CASES},
        f"/job-status/{first}": 2, f"/job-status/{second}": 2, "/check-balance": 2,
    }
    stats = server.stats.to_json()
    assert stats["requests"] == {**{p: 1 for p in POST_CASES},
                                 "/job-status": 4, "/check-balance": 2}
    assert stats["charges"] == charges_for(*ALL_POST_LEADS)  # billed once, never resent


# --------------------------------------------------------------------------------------- 429


@pytest.mark.integration
@pytest.mark.parametrize("retry_after", [None, "1"], ids=["backoff", "retry-after"])
def test_429_is_honoured_then_every_endpoint_succeeds(
    h: Harness, server: LiveServer, retry_after: str | None
) -> None:
    first, second = two_finished_jobs(h, server)
    fault, headers = ("429", {}) if retry_after is None else (
        "429-retry-after", {"x-lf-retry-after": retry_after})
    h.recorder.set_faults(
        *(Rule(fault, path=p, times=1, headers=headers) for p in POST_CASES),
        *get_rules(fault, first, second, **headers),
    )
    outcomes = h.gather(*(call for call, _ in POST_CASES.values()), *get_calls(first, second))

    assert [o.error for o in outcomes] == [None] * 7
    one, submitted, many, bulk_job = (o.value for o in outcomes[:4])
    assert one.email == PEOPLE["Jane Doe"].email
    assert [r.email for r in many] == [PEOPLE["Hank Scorpio"].email, PEOPLE["Zoë Müller"].email]
    check_get_answers(outcomes[4:], first, second)
    # no result lost: the jobs submitted through the 429s finish with their answers
    h.recorder.set_faults()
    assert h.call("wait", submitted.task_id).results[0].email == PEOPLE["John Smith"].email
    assert sorted(r.email for r in h.call("wait", bulk_job.task_id).results) == sorted(
        [PEOPLE["Monica Hall"].email, PEOPLE["Gavin Belson"].email])

    least_wait = MIN_BACKOFF if retry_after is None else float(retry_after)
    for path in [*POST_CASES, f"/job-status/{first}", f"/job-status/{second}", "/check-balance"]:
        refused, accepted = h.recorder.requests(path=path)[:2]
        assert (refused.fault, refused.status, accepted.fault, accepted.status) == (
            fault, 429, None, 200)
        assert refused.answered_at is not None
        assert accepted.at - refused.answered_at >= least_wait - 0.02, path
    settle(server)
    stats = server.stats.to_json()
    assert {p: stats["requests"][p] for p in POST_CASES} == {p: 2 for p in POST_CASES}
    assert stats["charges"] == charges_for(*ALL_POST_LEADS)  # a 429 does no work


@pytest.mark.integration
def test_429_slows_every_client_sharing_the_key(
    make: Callable[..., Harness], server: LiveServer
) -> None:
    blocked = make("sync")
    # Another client, the other kind, same key (same process): it must wait behind the 429.
    other = make("async", key=blocked.key, recorder=blocked.recorder)
    blocked.recorder.set_faults(Rule("429-retry-after", path="/find-email", times=1,
                                     headers={"x-lf-retry-after": "1"}))
    throttle = throttle_for(blocked.key, time.monotonic)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(blocked.call, "find_email", lead("Jane Doe"))
        deadline = time.monotonic() + 5
        while throttle.blocked_until < time.monotonic():  # until the 429 has been read
            assert time.monotonic() < deadline and not first.done()
            time.sleep(0.005)
        balance = other.call("check_balance")
        result = first.result(10)
    assert result.email == PEOPLE["Jane Doe"].email and balance > 0
    refused = blocked.recorder.requests(path="/find-email")[0]
    (balance_request,) = blocked.recorder.requests(path="/check-balance")
    assert refused.status == 429 and refused.answered_at is not None
    assert balance_request.at - refused.answered_at >= 0.95
    assert server.stats.to_json()["charges"] == charges_for(lead("Jane Doe"))


# ------------------------------------------------------------------------- errors on GET


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["500", "503", "html200", "badjson", "truncate"])
def test_get_errors_are_retried_and_succeed(h: Harness, server: LiveServer, fault: str) -> None:
    first, second = two_finished_jobs(h, server)
    h.recorder.set_faults(*get_rules(fault, first, second))
    outcomes = h.gather(*get_calls(first, second))
    check_get_answers(outcomes, first, second)
    for path in (f"/job-status/{first}", f"/job-status/{second}", "/check-balance"):
        failed, retried = h.recorder.requests(path=path)
        assert (failed.fault, retried.fault, retried.status) == (fault, None, 200)
        assert failed.answered_at is not None
        assert retried.at - failed.answered_at >= MIN_BACKOFF - 0.02  # backed off
    assert server.stats.to_json()["requests"] == {"/job-status": 4, "/check-balance": 2}


@pytest.mark.integration
def test_get_gives_up_after_max_retries(make: Callable[..., Harness], kind: str) -> None:
    h = make(kind, max_retries=1)
    h.recorder.set_faults(Rule("503", path="/check-balance"))
    error = h.raises(ServerError, op("check_balance"))
    assert error.status_code == 503 and "2 attempts" in str(error)
    assert len(h.recorder.requests(path="/check-balance")) == 2


# ---------------------------------------------------------------------------------- redirects


@pytest.mark.integration
def test_redirects_are_never_followed(
    h: Harness, server: LiveServer, other_host: OtherHost
) -> None:
    first, second = two_finished_jobs(h, server)
    other_host.received.clear()
    h.recorder.set_faults(Rule("redirect"))
    calls = [call for call, _ in POST_CASES.values()] + get_calls(first, second)
    for call in calls:
        error = h.raises(APIStatusError, call)
        assert error.status_code == 302 and "does not follow redirects" in str(error)
    assert other_host.received == []  # the other host never saw a request, nor the key
    assert len(h.recorder.requests()) == len(calls)  # one request per call, none repeated
    settle(server)
    stats = server.stats.to_json()
    assert stats["requests"] == {**{p: 1 for p in POST_CASES},
                                 "/job-status": 2, "/check-balance": 1}
    assert stats["charges"] == {}  # redirected before any work

    # The control: a client that follows redirects hands the key to the other host.
    with httpx.Client(follow_redirects=True, trust_env=False) as follower:
        follower.get(server.base_url + "/check-balance",
                     headers={"x-api-key": h.key, "x-lf-fault": "redirect"})
    assert [(m, p, headers.get("x-api-key")) for m, p, headers in other_host.received] == [
        ("GET", "/check-balance", h.key)]
    other_host.received.clear()


# ---------------------------------------------------------------------------------- proxies


@pytest.mark.integration
def test_a_loopback_base_url_bypasses_proxies_from_the_environment(
    server: LiveServer, other_host: OtherHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    # other_host stands in for a corporate proxy: over plain http it would read x-api-key.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, other_host.url)
        monkeypatch.setenv(name.lower(), other_host.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    other_host.received.clear()
    key = next(_fresh_keys)
    # No injected transport: httpx reads the proxy variables exactly as in production.
    with Client(key, base_url=server.base_url, max_retries=0) as client:
        assert client.check_balance() == pytest.approx(server.app.state.lookups.balance_credits)

    async def balance() -> float:
        async with AsyncClient(key, base_url=server.base_url, max_retries=0) as aclient:
            return await aclient.check_balance()

    assert asyncio.run(balance()) == pytest.approx(server.app.state.lookups.balance_credits)
    assert other_host.received == []  # the proxy never saw a request, nor the key
    # The control: the hosted API is still reached through the proxy (checked without sending).
    with Client(key) as hosted:
        remote = httpx.URL("https://api.sixtyfour.ai/check-balance")
        assert hosted._http._transport_for_url(remote) is not hosted._http._transport


# ------------------------------------------------------------------------------- bulk joins


@pytest.mark.integration
def test_250_leads_are_three_posts_joined_by_ref_when_shuffled(
    h: Harness, server: LiveServer
) -> None:
    leads = [lead(name) for name in PEOPLE] + strangers(250 - len(PEOPLE))
    h.recorder.set_faults(Rule("shuffle", path="/find-email-bulk"))
    h.recorder.capture = True
    results = h.call("find_email_bulk", leads)

    posts = h.recorder.requests()
    assert [(s.method, s.path) for s in posts] == [("POST", "/find-email-bulk")] * 3
    assert [len(s.body["leads"]) for s in posts] == [100, 100, 50]
    assert [x[REF_FIELD] for s in posts for x in s.body["leads"]] == [str(i) for i in range(250)]
    answers = [json.loads(s.response_body or b"") for s in posts]
    assert any([x[REF_FIELD] for x in answer] != [x[REF_FIELD] for x in s.body["leads"]]
               for answer, s in zip(answers, posts, strict=True)), "nothing was shuffled"
    assert any(len(entry) == 2 for answer in answers for x in answer for entry in x["email"])

    assert len(results) == 250
    for i, (sent, result) in enumerate(zip(leads, results, strict=True)):
        assert (result.ref, result.lead, result.error) == (str(i), sent, None)
        assert result.email == expected_email(sent), sent
        assert all(e.type == "COMPANY" for e in result.emails)  # 2-item entries inferred
    stats = server.stats.to_json()
    assert stats["requests"] == {"/find-email-bulk": 3}
    assert stats["charges"] == charges_for(*leads) and stats["duplicate_charges"] == 0


@pytest.mark.integration
def test_shuffled_bulk_job_is_joined_by_ref(h: Harness, server: LiveServer) -> None:
    people = [p for p in PEOPLE.values() if p.personal_email]
    leads = [lead(p.name) for p in people]
    refs = [f"row-{i}" for i in range(len(leads))]
    h.recorder.set_faults(Rule("shuffle", path="/find-email-bulk-async"))
    job = h.call("find_email_bulk_async", leads, refs=refs, mode="PERSONAL")
    h.recorder.capture = True
    done = h.call("wait", job.task_id, timeout=10)

    answer = json.loads(h.recorder.requests(method="GET")[-1].response_body or b"")["result"]
    assert [x[REF_FIELD] for x in answer] != refs, "nothing was shuffled"
    assert any(len(entry) == 2 for x in answer for entry in x["personal_email"])
    by_ref = {r.ref: r for r in done.results}
    assert sorted(by_ref) == sorted(refs)
    for ref, sent in zip(refs, leads, strict=True):
        result = by_ref[ref]
        assert result.lead["name"] == sent["name"] and result.mode is Mode.PERSONAL
        assert result.email == expected_email(sent, Mode.PERSONAL)
        assert result.personal_emails and all(e.type == "PERSONAL"
                                              for e in result.personal_emails)
    assert done.charge_cents == 20 * len(leads)
    assert server.stats.to_json()["charges"] == charges_for(*leads, mode=Mode.PERSONAL)


@pytest.mark.integration
def test_a_lost_chunk_keeps_the_paid_ones(h: Harness, server: LiveServer) -> None:
    leads = [lead(name) for name in PEOPLE] + strangers(150 - len(PEOPLE))
    h.recorder.set_faults(Rule("500", path="/find-email-bulk", skip=1))
    results: list[Result] = h.call("find_email_bulk", leads)

    assert [len(s.body["leads"]) for s in h.recorder.requests()] == [100, 50]
    assert [r.lead for r in results] == leads
    for sent, result in zip(leads[:100], results[:100], strict=True):
        assert result.ok and result.email == expected_email(sent)
    for result in results[100:]:
        assert result.status is Status.ERROR and result.extra["ambiguous"] is True
        assert "may have been charged" in (result.error or "")
    assert_clean(*results[99:101])
    stats = server.stats.to_json()
    assert stats["requests"] == {"/find-email-bulk": 2}  # the lost chunk was not resent
    assert stats["charges"] == charges_for(*leads)  # ... and it was billed, once


# ------------------------------------------------------------------------------------- jobs


@pytest.mark.integration
def test_failed_jobs_raise_and_are_not_resubmitted(h: Harness, server: LiveServer) -> None:
    h.recorder.set_faults(Rule("jobfail", method="POST"))
    single = h.call("find_email_async", lead("Jane Doe"))
    many = h.call("find_email_bulk_async", [lead("John Smith"), lead("Hank Scorpio")])
    for job in (single, many):
        error = h.raises(JobError, op("wait", job.task_id, timeout=10))
        assert (error.task_id, error.status) == (job.task_id, "failed")
    assert [s.path for s in h.recorder.requests(method="POST")] == [
        "/find-email-async", "/find-email-bulk-async"]
    assert server.stats.to_json()["charges"] == {}


@pytest.mark.integration
def test_webhook_deliveries_verify(
    h: Harness, server: LiveServer, webhook_receiver: WebhookReceiver
) -> None:
    single = h.call("find_email_async", lead("Monica Hall"), webhook_url=webhook_receiver.url)
    many = h.call("find_email_bulk_async", [lead("Gavin Belson"), lead("Richard Hendricks")],
                  refs=["g", "r"], webhook_url=webhook_receiver.url)
    finished = {job.task_id: h.call("wait", job.task_id, timeout=10) for job in (single, many)}
    deliveries = {d.json()["task_id"]: d for d in webhook_receiver.wait_for(2)}
    assert sorted(deliveries) == sorted(finished)

    for task_id, done in finished.items():
        delivery = deliveries[task_id]
        header = delivery.headers["sixtyfour-signature"]
        verify_signature(delivery.body, header, WEBHOOK_SECRET)
        with pytest.raises(WebhookVerificationError):
            verify_signature(delivery.body, header, "sk_whsec_" + "0" * 64)
        with pytest.raises(WebhookVerificationError):
            verify_signature(delivery.body.replace(b"}", b" }", 1), header, WEBHOOK_SECRET)
        payload = delivery.json()
        assert payload["status"] == "completed" and payload["result"] == done.raw["result"]
        assert delivery.headers["sixtyfour-delivery-attempt"] == "1"
        assert delivery.headers["sixtyfour-event-id"]
        assert CANARY not in repr(delivery)
    bulk_payload = deliveries[many.task_id].json()
    assert bulk_payload["task_type"] == "find_email_bulk"
    assert sorted(x[REF_FIELD] for x in bulk_payload["result"]) == ["g", "r"]
    assert [s.body["webhook_url"] for s in h.recorder.requests(method="POST")] == [
        webhook_receiver.url] * 2


# ----------------------------------------------------------- connections refused or dropped


class Relay:
    """A TCP relay on 127.0.0.1 in front of the server, for faults below HTTP: it listens only
    once `listen()` is called (until then a connect is refused), and closes the first `drop`
    connections as soon as they are accepted, before anything is answered."""

    def __init__(self, target_port: int, drop: int = 0) -> None:
        self.target_port = target_port
        self.drop = drop
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        self._spawn(self._accept, listener)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed
                return
            if self.drop > 0:
                self.drop -= 1
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [conn, upstream]
            self._spawn(self._pump, conn, upstream)
            self._spawn(self._pump, upstream, conn)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def relay(server: LiveServer) -> Iterator[Relay]:
    relay = Relay(server.port)
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.integration
def test_a_refused_connection_is_retried_even_for_a_post(
    make: Callable[..., Harness], kind: str, server: LiveServer, relay: Relay
) -> None:
    h = make(kind, on=LiveServer(relay.url, server.app, KEYS[0], relay.port))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(h.call, "find_email", lead("Jane Doe"))
        deadline = time.monotonic() + 5
        while not h.recorder.requests():  # the first attempt meets a closed port
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)
        relay.listen()
        result = pending.result(10)
    assert result.email == PEOPLE["Jane Doe"].email
    first, second = h.recorder.requests()
    assert first.status is None and second.status == 200  # nothing came back the first time
    assert second.at - first.at >= MIN_BACKOFF - 0.02
    stats = server.stats.to_json()
    assert stats["requests"] == {"/find-email": 1}  # nothing had reached the server
    assert stats["charges"] == charges_for(lead("Jane Doe"))


@pytest.mark.integration
def test_a_dropped_connection_is_ambiguous_for_a_post_and_retried_for_a_get(
    make: Callable[..., Harness], kind: str, server: LiveServer, relay: Relay
) -> None:
    relay.drop = 2
    relay.listen()
    h = make(kind, on=LiveServer(relay.url, server.app, KEYS[0], relay.port))
    # The answer never came: the client cannot know the request did not arrive.
    h.raises(AmbiguousRequestError, op("find_email", lead("Jane Doe")))
    assert h.call("check_balance") > 0
    assert [s.path for s in h.recorder.requests()] == [
        "/find-email", "/check-balance", "/check-balance"]
    assert server.stats.to_json()["requests"] == {"/check-balance": 1}


# ------------------------------------------------------------------------- refusals (401/402)


@pytest.mark.integration
def test_a_rejected_key_stops_every_call(make: Callable[..., Harness], kind: str,
                                         server: LiveServer) -> None:
    h = make(kind, key=CANARY + "0" * 24)  # a canary the server does not accept
    error = h.raises(AuthenticationError, op("find_email", lead("Jane Doe")))
    assert error.status_code == 401
    h.raises(AuthenticationError, op("check_balance"))  # not sent: the key is known bad
    assert len(h.recorder.requests()) == 1
    assert server.stats.to_json()["requests"] == {"/find-email": 1}


@pytest.mark.integration
def test_insufficient_credits_stop_billable_calls_only(
    make: Callable[..., Harness], kind: str
) -> None:
    with live_server(credits=0.4) as poor:  # 4 cents: less than one lookup
        h = make(kind, key=poor.api_key, on=poor)
        h.raises(InsufficientCreditsError, op("find_email", lead("Jane Doe")))
        h.raises(InsufficientCreditsError, op("find_email_bulk", [lead("Jane Doe")]))
        assert h.call("check_balance") == pytest.approx(0.4)  # polling and balance still go
        assert [s.path for s in h.recorder.requests()] == ["/find-email", "/check-balance"]
        assert poor.stats.to_json()["charges"] == {}
        h.close()
