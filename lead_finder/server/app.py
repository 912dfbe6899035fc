"""The Sixtyfour-compatible ASGI app: the six Find Email endpoints over a pluggable backend.

    POST /find-email              one lead, answered now
    POST /find-email-async        one lead, as a job            -> {"task_id", "status": "RUNNING"}
    POST /find-email-bulk         up to 100 leads, answered now -> a list of result objects
    POST /find-email-bulk-async   up to 100 leads, as a job
    GET  /job-status/{task_id}    ?cost_units=cents|credits
    GET  /check-balance           -> {"credits": number}

plus `GET /_lf/stats` and `DELETE /_lf/stats` (lead_finder's own, key required) so tests in
another process can read the charge counters. Requests pass through `Gateway` first: key, rate
limit, and (only with `enable_faults=True`) the test fault switches.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, HttpUrl

from ..errors import ConfigurationError
from ..models import PRICE_CENTS, Mode
from ..sixtyfour._protocol import MAX_BULK_LEADS, is_loopback
from .backend import Backend, BackendError, DirectoryBackend, FinderBackend
from .delivery import DEFAULT_RETRY_DELAYS
from .gateway import FaultPlan, Gateway, KeyRing, SlidingWindowLimiter, Stats
from .jobs import COMPLETED, JobStore
from .lookups import CENTS_PER_CREDIT, Lookups, shuffle_results
from .runner import JobRunner

__all__ = [
    "MAX_BULK_LEADS",
    "FindEmailBulkRequest",
    "FindEmailRequest",
    "create_app",
    "run",
]


ENV_KEYS = "LEAD_FINDER_SERVER_KEYS"
ENV_JOBS = "LEAD_FINDER_SERVER_JOBS"
ENV_WEBHOOK_SECRET = "LEAD_FINDER_WEBHOOK_SECRET"


def _https_or_loopback(url: HttpUrl) -> HttpUrl:
    """Sixtyfour only delivers to https; plain http is allowed to loopback so that tests (and a
    gateway on the same machine) can receive webhooks."""
    if url.scheme == "https" or (url.scheme == "http" and is_loopback(url.host or "")):
        return url
    raise ValueError("webhook_url must be an https URL (plain http only for a loopback address)")


WebhookUrl = Annotated[HttpUrl, AfterValidator(_https_or_loopback)]


class _Options(BaseModel):
    mode: Literal["PROFESSIONAL", "PERSONAL"] = "PROFESSIONAL"
    verify_emails: bool = True
    providers: list[str] | None = None
    webhook_url: WebhookUrl | None = None


class FindEmailRequest(_Options):
    """Body of /find-email and /find-email-async."""

    lead: dict[str, Any]


class FindEmailBulkRequest(_Options):
    """Body of /find-email-bulk and /find-email-bulk-async."""

    leads: list[dict[str, Any]]


def _check_bulk(leads: Sequence[Any]) -> None:
    # The bulk limit is in the docs' prose, not in the schema: hence a 400, not a 422.
    if not leads:
        raise HTTPException(400, "leads is empty: send between 1 and 100 leads")
    if len(leads) > MAX_BULK_LEADS:
        raise HTTPException(
            400, f"Too many leads: {len(leads)} in one request, the limit is {MAX_BULK_LEADS}"
        )


def create_app(
    *,
    api_keys: Collection[str],
    backend: Backend,
    jobs_path: str | Path | None = None,
    rate_limit_per_minute: float | None = 500,
    enable_faults: bool = False,
    webhook_secret: str | None = None,
    webhook_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    job_delay: float = 0.0,
    fault_rates: Mapping[str, float] | None = None,
    seed: int | None = None,
    charge_not_found: bool = True,
    prices: Mapping[Mode, int] = PRICE_CENTS,
    credits: float = 1_000_000.0,
    slow_interval: float = 0.5,
    redirect_url: str | None = None,
) -> FastAPI:
    """Build the server app.

    `api_keys` are the keys clients must send in `x-api-key`. `jobs_path` is the SQLite file that
    keeps async jobs across restarts (None: in memory). `rate_limit_per_minute` is per key over a
    sliding minute (0 or None: unlimited). `job_delay` seconds pass before a job runs.
    `webhook_retry_delays` are the waits between delivery attempts. The fault switches
    (`x-lf-fault` header, `fault_rates` drawn from `random.Random(seed)`) exist only with
    `enable_faults=True`. `charge_not_found=False` makes NOT_FOUND answers free. `credits` is the
    starting balance (1 credit = 10 cents); a request it cannot cover is a 402.

    Counters are on `app.state.stats` (a `Stats`) and at GET /_lf/stats.
    """
    if job_delay < 0:
        raise ValueError("job_delay must be zero or more seconds")
    if fault_rates and not enable_faults:
        raise ValueError("fault_rates need enable_faults=True")
    stats = Stats()
    keys = KeyRing(api_keys)
    faults = FaultPlan(fault_rates, seed) if enable_faults else None
    rng = faults.random if faults is not None else random.Random(seed)
    store = JobStore(jobs_path)
    lookups = Lookups(
        backend, stats, prices=prices, charge_not_found=charge_not_found, credits=credits
    )
    runner = JobRunner(
        store,
        lookups,
        stats,
        job_delay=job_delay,
        webhook_secret=webhook_secret,
        retry_delays=webhook_retry_delays,
        rng=rng,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runner.resume()
        try:
            yield
        finally:
            await runner.close()
            store.close()
            if isinstance(backend, FinderBackend):
                backend.close()

    app = FastAPI(
        title="lead_finder server (Sixtyfour-compatible Find Email API)",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.stats = stats
    app.state.jobs = store
    app.state.runner = runner
    app.state.lookups = lookups
    app.add_middleware(
        Gateway,
        stats=stats,
        keys=keys,
        limiter=SlidingWindowLimiter(rate_limit_per_minute),
        faults=faults,
        slow_interval=slow_interval,
        redirect_url=redirect_url,
    )

    def fault_of(request: Request) -> str | None:
        fault = getattr(request.state, "lf_fault", None)
        return fault if isinstance(fault, str) else None

    def owner_of(request: Request) -> str:
        return str(request.state.lf_owner)

    def ensure_credits(count: int, mode: Mode) -> None:
        if not lookups.can_afford(count, mode):
            raise HTTPException(402, "Insufficient credits for this request")

    def submit(
        request: Request, body: _Options, leads: list[dict[str, Any]], task_type: str
    ) -> dict[str, str]:
        mode = Mode(body.mode)
        ensure_credits(len(leads), mode)
        job = store.create(
            owner=owner_of(request),
            task_type=task_type,
            request={
                "leads": leads,
                "mode": mode.value,
                "verify": body.verify_emails,
                "providers": body.providers,
                "fault": fault_of(request),
            },
            webhook_url=None if body.webhook_url is None else str(body.webhook_url),
        )
        runner.start(job)
        return {"task_id": job.id, "status": "RUNNING"}

    @app.exception_handler(BackendError)
    async def backend_failed(request: Request, exc: BackendError) -> JSONResponse:
        # a gateway's upstream could not answer (budget, key, API down): say so, charge nothing
        return JSONResponse({"detail": str(exc)}, status_code=502)

    @app.post("/find-email")
    async def find_email(body: FindEmailRequest) -> JSONResponse:
        """Find the email of one lead and answer with its result object."""
        mode = Mode(body.mode)
        ensure_credits(1, mode)
        return JSONResponse(await lookups.answer(body.lead, mode, body.verify_emails))

    @app.post("/find-email-bulk")
    async def find_email_bulk(request: Request, body: FindEmailBulkRequest) -> JSONResponse:
        """Find emails for up to 100 leads and answer with a list of result objects."""
        _check_bulk(body.leads)
        mode = Mode(body.mode)
        ensure_credits(len(body.leads), mode)
        results = await lookups.answer_many(body.leads, mode, body.verify_emails)
        if fault_of(request) == "shuffle":
            results = shuffle_results(results, runner.rng)
        return JSONResponse(results)

    @app.post("/find-email-async")
    async def find_email_async(request: Request, body: FindEmailRequest) -> dict[str, str]:
        """Start a job for one lead."""
        return submit(request, body, [body.lead], "find_email")

    @app.post("/find-email-bulk-async")
    async def find_email_bulk_async(
        request: Request, body: FindEmailBulkRequest
    ) -> dict[str, str]:
        """Start a job for up to 100 leads."""
        _check_bulk(body.leads)
        return submit(request, body, body.leads, "find_email_bulk")

    @app.get("/job-status/{task_id}")
    async def job_status(
        request: Request,
        task_id: str,
        cost_units: Annotated[Literal["cents", "credits"], Query()] = "cents",
    ) -> dict[str, Any]:
        """The state of a job; its result and charge once it has finished."""
        job = store.get(task_id)
        if job is None or job.owner != owner_of(request):
            raise HTTPException(404, "Job not found")
        out: dict[str, Any] = {
            "id": job.id,
            "run_id": job.run_id,
            "status": job.status,
            "task_type": job.task_type,
            "start_time": job.start_time,
        }
        if job.done:
            out["close_time"] = job.close_time
            if job.status == COMPLETED:
                out["result"] = job.result
            if job.error is not None:
                out["error"] = job.error
            if cost_units == "credits":
                out["charge_credits"] = job.charge_cents / CENTS_PER_CREDIT
            else:
                out["charge_amount"] = job.charge_cents
        return out

    @app.get("/check-balance")
    async def check_balance() -> dict[str, float]:
        """The balance left, in credits."""
        return {"credits": round(lookups.balance_credits, 2)}

    @app.get("/_lf/stats", include_in_schema=False)
    async def read_stats() -> dict[str, Any]:
        """The charge and request counters (lead_finder's own endpoint, for tests)."""
        return stats.to_json()

    @app.delete("/_lf/stats", include_in_schema=False)
    async def reset_stats() -> dict[str, bool]:
        """Zero the counters."""
        stats.reset()
        return {"reset": True}

    return app


def _server_keys(api_keys: Collection[str] | None) -> list[str]:
    if api_keys is None:
        api_keys = os.environ.get(ENV_KEYS, "").split(",")
    keys = [k.strip() for k in api_keys if k and k.strip()]
    if not keys:
        raise ConfigurationError(
            f"The server needs at least one API key for its clients: pass api_keys= or set "
            f"{ENV_KEYS} (comma-separated)."
        )
    return keys


def default_jobs_path() -> Path:
    """Where `run` keeps jobs unless told otherwise."""
    return Path(platformdirs.user_data_dir("lead_finder")) / "server-jobs.sqlite3"


def build_backend(
    backend: str | Backend = "directory",
    *,
    directory: str | Path | None = None,
    latency: float = 0.0,
) -> Backend:
    """A backend by name: "directory" (the CSV at `directory`, or the bundled demo), "local"
    (the built-in engine) or "hosted" (a gateway to the hosted API with this server's key)."""
    if not isinstance(backend, str):
        return backend
    if backend == "directory":
        if directory is not None:
            return DirectoryBackend.from_csv(directory, latency=latency)
        return DirectoryBackend.demo(latency=latency)
    if backend in ("local", "hosted"):
        from ..config import load_settings
        from ..finder import LeadFinder

        def make(verify: bool) -> LeadFinder:
            name = "local" if backend == "local" else "sixtyfour"
            return LeadFinder(backend=name, verify=verify)

        if backend == "hosted" and load_settings().api_key is None:
            raise ConfigurationError(
                "The hosted backend needs the Sixtyfour key on this server: set "
                "SIXTYFOUR_API_KEY (clients use the keys in LEAD_FINDER_SERVER_KEYS)."
            )
        return FinderBackend(make)
    raise ConfigurationError(
        f"Unknown server backend {backend[:30]!r}; known: directory, local, hosted"
    )


def run(
    host: str = "127.0.0.1",
    port: int = 8064,
    *,
    backend: str | Backend = "directory",
    directory: str | Path | None = None,
    api_keys: Collection[str] | None = None,
    jobs_path: str | Path | None = None,
    rate_limit_per_minute: float | None = 500,
    webhook_secret: str | None = None,
    webhook_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    job_delay: float = 0.0,
    latency: float = 0.0,
    enable_faults: bool = False,
    fault_rates: Mapping[str, float] | None = None,
    seed: int | None = None,
    charge_not_found: bool = True,
    log_level: str = "info",
) -> None:
    """Serve the API with uvicorn until interrupted (what `lead-finder serve` runs).

    Keys come from `api_keys` or LEAD_FINDER_SERVER_KEYS (comma-separated); jobs are kept in
    `jobs_path`, LEAD_FINDER_SERVER_JOBS, or the user data directory; the webhook signing secret
    comes from `webhook_secret` or LEAD_FINDER_WEBHOOK_SECRET.
    """
    import uvicorn

    if jobs_path is None:
        jobs_path = os.environ.get(ENV_JOBS) or default_jobs_path()
    app = create_app(
        api_keys=_server_keys(api_keys),
        backend=build_backend(backend, directory=directory, latency=latency),
        jobs_path=jobs_path,
        rate_limit_per_minute=rate_limit_per_minute,
        enable_faults=enable_faults,
        webhook_secret=webhook_secret or os.environ.get(ENV_WEBHOOK_SECRET) or None,
        webhook_retry_delays=webhook_retry_delays,
        job_delay=job_delay,
        fault_rates=fault_rates,
        seed=seed,
        charge_not_found=charge_not_found,
    )
    # A hanging or trickling test response must not keep a stopping server alive forever.
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
