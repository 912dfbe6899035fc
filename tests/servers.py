"""Real servers on 127.0.0.1 for integration tests: our Sixtyfour-compatible API (in a thread or
in a subprocess) and a tiny webhook receiver.

    with live_server(enable_faults=True) as srv:          # uvicorn in a background thread
        httpx.post(srv.base_url + "/find-email", headers=srv.headers(), json=...)
        assert srv.stats.duplicate_charges == 0

    with serve_subprocess("--job-delay", "5", jobs_path=tmp_path / "jobs.db") as proc:
        ...; proc.kill(); proc.start()                     # crash and restart on the same port

Fixtures: `sixtyfour_server` (defaults), `sixtyfour_server_factory` (call it with create_app
keyword arguments; every server is stopped at teardown), `webhook_receiver`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:  # imported lazily at run time: only server tests need FastAPI
    from fastapi import FastAPI

    from lead_finder.server import Stats

__all__ = [
    "LiveServer",
    "SubprocessServer",
    "WebhookReceiver",
    "free_port",
    "lost_answer_client",
    "live_server",
    "serve_subprocess",
    "sixtyfour_server",
    "sixtyfour_server_factory",
    "webhook_receiver",
]

HOST = "127.0.0.1"


def new_api_key() -> str:
    """A fresh test key; the canary prefix lets leak checks search for it."""
    return "sk64_CANARY_" + secrets.token_hex(12)


def free_port() -> int:
    """A port that was free a moment ago (for subprocesses, which must bind it themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """A running in-process server: `base_url`, the `app`, its `stats`, and a valid `api_key`."""

    base_url: str
    app: FastAPI
    api_key: str
    port: int

    @property
    def stats(self) -> Stats:
        stats: Stats = self.app.state.stats
        return stats

    def headers(self, **extra: str) -> dict[str, str]:
        """Headers with the key, plus `extra` (underscores become dashes: x_lf_fault=...)."""
        out = {"x-api-key": self.api_key}
        out.update({k.replace("_", "-"): v for k, v in extra.items()})
        return out

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for this server (key set, no proxies from the environment)."""
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(
            base_url=self.base_url, headers=self.headers(), trust_env=False, **kwargs
        )


@contextmanager
def live_server(*, api_key: str | None = None, **create_app_kwargs: Any) -> Iterator[LiveServer]:
    """Serve `create_app(**create_app_kwargs)` with uvicorn in a background thread.

    The socket is bound before the thread starts (port 0, so no race for a free port). Defaults:
    one fresh key (`api_key`), the demo directory backend, no job file.
    """
    import uvicorn

    from lead_finder.server import DirectoryBackend, create_app

    key = api_key or new_api_key()
    create_app_kwargs.setdefault("api_keys", [key])
    create_app_kwargs.setdefault("backend", DirectoryBackend.demo())
    app = create_app(**create_app_kwargs)

    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # a `hang` or `slow` fault must not hold the test run hostage at shutdown
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    try:
        yield LiveServer(base_url=f"http://{HOST}:{port}", app=app, api_key=key, port=port)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        if thread.is_alive():  # pragma: no cover - would be a bug in shutdown
            raise RuntimeError("the test server did not stop")


class SubprocessServer:
    """`python -m lead_finder.server` in a child process, restartable on the same port.

    The key travels in the environment (never on the command line); the child's output goes to a
    log file (`log_text()`), so tests can also check that the key was never logged.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        port: int,
        api_key: str,
        env: dict[str, str],
        log_path: Path,
    ) -> None:
        self.args = list(args)
        self.port = port
        self.api_key = api_key
        self.env = env
        self.log_path = log_path
        self.base_url = f"http://{HOST}:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        out = {"x-api-key": self.api_key}
        out.update({k.replace("_", "-"): v for k, v in extra.items()})
        return out

    def start(self, timeout: float = 30.0) -> None:
        """Start the child and wait until it accepts connections (it binds after startup)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("already running")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lead_finder.server", "--port", str(self.port),
                 "--log-level", "info", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n"
                                   + self.log_text()[-2000:])
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    tail = self.log_text()[-2000:]
                    raise RuntimeError("server did not start:\n" + tail) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait (a clean stop); SIGKILL if it does not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.kill()

    def stats(self) -> dict[str, Any]:
        """The child's counters, from GET /_lf/stats."""
        response = httpx.get(
            self.base_url + "/_lf/stats", headers=self.headers(), trust_env=False, timeout=10
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")


@contextmanager
def serve_subprocess(
    *args: str,
    api_key: str | None = None,
    jobs_path: str | Path | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[SubprocessServer]:
    """Run `python -m lead_finder.server --port N *args` (jobs in `jobs_path`, or a temporary
    file) and stop it afterwards."""
    key = api_key or new_api_key()
    with tempfile.TemporaryDirectory(prefix="lf-server-") as tmp:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("LEAD_FINDER_")}
        child_env.update(env or {})
        child_env["LEAD_FINDER_SERVER_KEYS"] = key
        child_env["LEAD_FINDER_SERVER_JOBS"] = str(jobs_path or Path(tmp) / "jobs.sqlite3")
        server = SubprocessServer(
            args,
            port=port or free_port(),
            api_key=key,
            env=child_env,
            log_path=Path(tmp) / "server.log",
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass
class Delivery:
    """One webhook request as received: headers (lower-case names) and the raw body."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 that records every POST and answers from `statuses`
    (one per request, in order; 200 once they run out)."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def record(self, delivery: Delivery) -> int:
        with self._arrived:
            self.deliveries.append(delivery)
            status = self.statuses.pop(0) if self.statuses else 200
            self._arrived.notify_all()
        return status

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Wait until `count` deliveries have arrived, and return them."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise TimeoutError(f"{len(self.deliveries)} of {count} webhook deliveries arrived")
            return list(self.deliveries)


@contextmanager
def run_webhook_receiver(statuses: Sequence[int] = ()) -> Iterator[WebhookReceiver]:
    """Start a `WebhookReceiver` on a free loopback port."""
    holder: list[WebhookReceiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = holder[0].record(Delivery(headers=headers, body=body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    holder.append(
        WebhookReceiver(url=f"http://{HOST}:{httpd.server_address[1]}/hook",
                        statuses=list(statuses))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def sixtyfour_server() -> Iterator[LiveServer]:
    """Our Sixtyfour-compatible server with default settings (demo directory, one key)."""
    with live_server() as server:
        yield server


@pytest.fixture
def sixtyfour_server_factory() -> Iterator[Callable[..., LiveServer]]:
    """Start servers with `factory(**create_app_kwargs)`; all are stopped at teardown."""
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(live_server(**kwargs))


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver that answers 200 (set `.statuses` to script other answers)."""
    with run_webhook_receiver() as receiver:
        yield receiver


class _LoseAnswers(httpx.HTTPTransport):
    """Asks the server's `truncate` fault for every POST: the work is billed, the answer lost."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            request.headers["x-lf-fault"] = "truncate"
        return super().handle_request(request)


def lost_answer_client(server: LiveServer) -> Any:
    """A `lead_finder.sixtyfour.Client` for `server` (faults enabled) whose POST answers are
    all lost after the server billed them: every job it submits ends ambiguous."""
    from lead_finder.sixtyfour import Client

    return Client(server.api_key, base_url=server.base_url, poll_interval=0.02,
                  transport=_LoseAnswers())
