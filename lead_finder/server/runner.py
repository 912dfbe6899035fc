"""Runs async jobs in the server's event loop and delivers their webhooks.

A job is looked up (and billed) once, then closed in the job store in one write; its webhook is
delivered afterwards. On startup `resume()` picks up whatever the last server left: running jobs
are run again (the previous process died before closing them, so their lookups were not
recorded as done), pending webhooks are delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from ..models import Mode
from .delivery import deliver
from .gateway import Stats
from .jobs import COMPLETED, FAILED, Job, JobStore
from .lookups import Lookups, shuffle_results

__all__ = ["JobRunner"]

log = logging.getLogger("lead_finder.server")


def _age_seconds(iso: str) -> float:
    started = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (datetime.now(UTC) - started).total_seconds()


class JobRunner:
    """Background tasks for jobs and webhook deliveries, owned by one app."""

    def __init__(
        self,
        store: JobStore,
        lookups: Lookups,
        stats: Stats,
        *,
        job_delay: float,
        webhook_secret: str | None,
        retry_delays: Sequence[float],
        rng: random.Random,
    ) -> None:
        self.store = store
        self.lookups = lookups
        self.stats = stats
        self.job_delay = job_delay
        self.webhook_secret = webhook_secret
        self.retry_delays = tuple(retry_delays)
        self.rng = rng
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self, job: Job) -> None:
        """Run `job` in the background."""
        self._spawn(self._run(job))

    async def resume(self) -> None:
        """Pick up running jobs and undelivered webhooks left by the previous server."""
        for job in self.store.running():
            log.info("resuming job %s", job.id)
            self.start(job)
        for job in self.store.pending_webhooks():
            log.info("redelivering webhook for job %s", job.id)
            self._spawn(self._deliver(job))

    async def close(self) -> None:
        """Stop every background task; unfinished jobs stay `running` for the next start."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_idle(self) -> None:
        """Wait until no job or delivery is in progress (for tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, job: Job) -> None:
        # A resumed job only waits for what is left of its delay.
        delay = self.job_delay - _age_seconds(job.start_time)
        if delay > 0:
            await asyncio.sleep(delay)
        request = job.request
        if request.get("fault") == "jobfail":
            self.store.finish(job.id, status=FAILED, error="The job failed (injected fault)")
        else:
            mode = Mode(request["mode"])
            try:
                results = await self.lookups.answer_many(
                    request["leads"], mode, bool(request["verify"])
                )
            except Exception as exc:
                log.exception("job %s failed", job.id)
                self.store.finish(
                    job.id, status=FAILED, error=f"The lookup failed: {type(exc).__name__}"
                )
            else:
                if request.get("fault") == "shuffle" and job.bulk:
                    results = shuffle_results(results, self.rng)
                self.store.finish(
                    job.id,
                    status=COMPLETED,
                    result=results if job.bulk else results[0],
                    charge_cents=sum(int(r.get("cost_cents", 0)) for r in results),
                )
        finished = self.store.get(job.id)
        if finished is not None and finished.webhook_state == "pending":
            await self._deliver(finished)

    async def _deliver(self, job: Job) -> None:
        assert job.webhook_url is not None
        payload: dict[str, Any] = {
            "task_id": job.id,
            "status": job.status,
            "task_type": job.task_type,
        }
        if job.status == COMPLETED:
            payload["result"] = job.result
        else:
            payload["error"] = job.error
        delivered = await deliver(
            job.webhook_url,
            payload,
            event_id=f"evt_{job.id}",
            event_type=job.task_type,
            secret=self.webhook_secret,
            retry_delays=self.retry_delays,
            on_attempt=self.stats.count_webhook,
        )
        self.store.set_webhook_state(job.id, "delivered" if delivered else "failed")
