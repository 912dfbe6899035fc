"""The Find Email API clients: thin sync and async drivers around the flows in `_flows`.

`Client` runs each flow with blocking I/O and `time.sleep`; `AsyncClient` with `await`. Both only
send a request, stream its body under our own total deadline, sleep and close: every decision
(retries, pacing, polling, chunking, parsing) is made once, in the shared core.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self, TypeVar

import httpx

from ..models import Mode, Result
from ._flows import (
    BaseClient,
    BodyReader,
    BodyTooLarge,
    DeadlineExceeded,
    Flow,
    Outcome,
    Reply,
    Send,
    Sleep,
)
from ._protocol import DEFAULT_BASE_URL, Job, LeadInput

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")


class Client(BaseClient):
    """Blocking client for the Sixtyfour Find Email API. Safe to share between threads.

    `transport`, `sleep`, `clock` and `rng` exist for tests: inject an `httpx.MockTransport`, a
    fake clock and a sleep that advances it. Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        requests_per_minute: float = 500,
        poll_interval: float = 1.0,
        poll_max_interval: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            api_key, base_url=base_url, timeout=timeout, connect_timeout=connect_timeout,
            max_retries=max_retries, requests_per_minute=requests_per_minute,
            poll_interval=poll_interval, poll_max_interval=poll_max_interval, clock=clock, rng=rng,
        )
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **self._httpx_options())

    def _run(self, flow: Flow[T]) -> T:
        try:
            action = next(flow)
            while True:
                if isinstance(action, Sleep):
                    self._sleep(max(0.0, action.seconds))
                    action = flow.send(None)
                else:
                    action = flow.send(self._send(action))
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            flow.close()

    def _send(self, action: Send) -> Outcome:
        call = action.call
        request = self._http.build_request(
            call.method, call.path, json=call.json, params=call.params,
            headers=self._request_headers(),
        )
        reader = BodyReader(action.deadline, self._clock, self._timeout)
        try:
            response = self._http.send(request, stream=True)
            try:
                reader.check()
                for chunk in response.iter_bytes():
                    reader.add(chunk)
            finally:
                response.close()
        except (httpx.RequestError, DeadlineExceeded, BodyTooLarge) as exc:
            return exc
        return Reply(response.status_code, response.headers, reader.body())

    def find_email(
        self,
        lead: LeadInput,
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
    ) -> Result:
        """Look up one lead and wait for the answer (`POST /find-email`).

        `lead` is a `Lead` or a dict such as `{"name": "Jane Doe", "company": "Acme"}`. Raises
        InvalidLeadError before sending anything if the lead or an option is malformed, and
        AmbiguousRequestError if the answer was lost after the request went out (never resent).
        """
        return self._run(self._find_email(lead, mode, verify_emails, providers))

    def find_email_async(
        self,
        lead: LeadInput,
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """Submit one lead as an async job (`POST /find-email-async`); returns the RUNNING job.

        Store `job.task_id` at once, then `wait(task_id)` or receive the webhook.
        """
        return self._run(self._find_email_async(lead, mode, verify_emails, providers, webhook_url))

    def find_email_bulk(
        self,
        leads: Sequence[LeadInput],
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
    ) -> list[Result]:
        """Look up many leads with `POST /find-email-bulk`, at most 100 per request.

        Returns one Result per lead, in input order, joined by the `lead_finder_ref` echoed in
        each answer (never by position). Every lead is validated before the first request. If a
        chunk fails after another succeeded, its leads come back as failed Results (`error` says
        why; `extra["ambiguous"]` is True when they may have been billed) so no paid answer is
        lost; if every chunk failed, the first error is raised.
        """
        return self._run(self._find_email_bulk(leads, mode, verify_emails, providers))

    def find_email_bulk_async(
        self,
        leads: Sequence[LeadInput],
        *,
        refs: Sequence[str] | None = None,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """Submit up to 100 leads as one async bulk job (`POST /find-email-bulk-async`).

        Lead i carries `lead_finder_ref = refs[i]` ("0", "1", ... by default); the finished job's
        results carry it back as `Result.ref`. More than 100 leads is an InvalidLeadError.
        """
        return self._run(
            self._find_email_bulk_async(
                leads, refs, mode, verify_emails, providers, webhook_url
            )
        )

    def job_status(
        self, task_id: str, *, cost_units: str = "cents", mode: Mode | str | None = None
    ) -> Job:
        """One look at an async job (`GET /job-status/{task_id}`).

        `mode` sets the results' mode; by default it is inferred from the answer. Raises
        NotFoundError (404) for an unknown or expired task id.
        """
        return self._run(self._job_status(task_id, cost_units, mode))

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = 600,
        on_poll: Callable[[Job], None] | None = None,
        mode: Mode | str | None = None,
    ) -> Job:
        """Poll a job until it ends; returns the completed Job.

        Polls every `poll_interval` s, growing to `poll_max_interval`. Raises JobError when the
        job failed, was cancelled, terminated or timed out on the server; JobTimeoutError when
        `timeout` s pass first (the job keeps running: wait again later); NotFoundError (404, not
        a JobError) when the job is unknown or expired. Nothing is ever resubmitted.
        `on_poll(job)` is called after every poll.
        """
        return self._run(self._wait(task_id, timeout, on_poll, mode))

    def check_balance(self) -> float:
        """The account's remaining credits (`GET /check-balance`)."""
        return self._run(self._check_balance())

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(BaseClient):
    """asyncio client for the Sixtyfour Find Email API; the same operations as `Client`.

    `sleep` must be an async callable (default `asyncio.sleep`). Use `async with`, or call
    `await client.close()`.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        requests_per_minute: float = 500,
        poll_interval: float = 1.0,
        poll_max_interval: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            api_key, base_url=base_url, timeout=timeout, connect_timeout=connect_timeout,
            max_retries=max_retries, requests_per_minute=requests_per_minute,
            poll_interval=poll_interval, poll_max_interval=poll_max_interval, clock=clock, rng=rng,
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self._httpx_options())

    async def _run(self, flow: Flow[T]) -> T:
        try:
            action = next(flow)
            while True:
                if isinstance(action, Sleep):
                    await self._sleep(max(0.0, action.seconds))
                    action = flow.send(None)
                else:
                    action = flow.send(await self._send(action))
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            flow.close()

    async def _send(self, action: Send) -> Outcome:
        call = action.call
        request = self._http.build_request(
            call.method, call.path, json=call.json, params=call.params,
            headers=self._request_headers(),
        )
        reader = BodyReader(action.deadline, self._clock, self._timeout)
        try:
            response = await self._http.send(request, stream=True)
            try:
                reader.check()
                async for chunk in response.aiter_bytes():
                    reader.add(chunk)
            finally:
                await response.aclose()
        except (httpx.RequestError, DeadlineExceeded, BodyTooLarge) as exc:
            return exc
        return Reply(response.status_code, response.headers, reader.body())

    async def find_email(
        self,
        lead: LeadInput,
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
    ) -> Result:
        """Look up one lead and wait for the answer. See `Client.find_email`."""
        return await self._run(self._find_email(lead, mode, verify_emails, providers))

    async def find_email_async(
        self,
        lead: LeadInput,
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """Submit one lead as an async job. See `Client.find_email_async`."""
        return await self._run(
            self._find_email_async(lead, mode, verify_emails, providers, webhook_url)
        )

    async def find_email_bulk(
        self,
        leads: Sequence[LeadInput],
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
    ) -> list[Result]:
        """Look up many leads, 100 per request, joined by ref. See `Client.find_email_bulk`."""
        return await self._run(self._find_email_bulk(leads, mode, verify_emails, providers))

    async def find_email_bulk_async(
        self,
        leads: Sequence[LeadInput],
        *,
        refs: Sequence[str] | None = None,
        mode: Mode | str = Mode.PROFESSIONAL,
        verify_emails: bool = True,
        providers: Sequence[str] | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """Submit up to 100 leads as one async job. See `Client.find_email_bulk_async`."""
        return await self._run(
            self._find_email_bulk_async(
                leads, refs, mode, verify_emails, providers, webhook_url
            )
        )

    async def job_status(
        self, task_id: str, *, cost_units: str = "cents", mode: Mode | str | None = None
    ) -> Job:
        """One look at an async job. See `Client.job_status`."""
        return await self._run(self._job_status(task_id, cost_units, mode))

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = 600,
        on_poll: Callable[[Job], None] | None = None,
        mode: Mode | str | None = None,
    ) -> Job:
        """Poll a job until it ends. See `Client.wait` for the errors it raises."""
        return await self._run(self._wait(task_id, timeout, on_poll, mode))

    async def check_balance(self) -> float:
        """The account's remaining credits (`GET /check-balance`)."""
        return await self._run(self._check_balance())

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

