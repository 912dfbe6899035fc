"""LeadFinder: the one service every front-end calls.

normalise -> cache -> ledger -> batcher -> backend -> cache

- Equivalent leads share one key (`Lead.key`); a key that is cached is answered locally, a key that
  is in flight (in this process: the coalescer; in another process: the ledger) is joined, and
  everything else is sent in bulk jobs of at most 100 leads.
- Every job is written to the ledger before it is submitted and its task id as soon as it is known,
  so a crash is finished by polling (`resume_jobs`), never by buying again.
- Budgets are checked before anything billable is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .batching import Coalescer
from .config import Secret, Settings, load_settings
from .errors import (
    AmbiguousRequestError,
    APIError,
    APIStatusError,
    ConfigurationError,
    InvalidLeadError,
    JobError,
    JobTimeoutError,
    LeadFinderError,
    NotFoundError,
    user_message,
)
from .leads import Lead
from .ledger import LedgerJob
from .models import PRICE_CENTS, Mode, Result, Source, Status
from .sixtyfour import Client, Job
from .store import Store

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Estimate", "LeadFinder", "LeadInput", "LeadRequest", "Progress"]

log = logging.getLogger("lead_finder.finder")

#: What `find_many` accepts for one lead.
LeadInput = Lead | Mapping[str, Any] | Sequence[Any]

_LEAD_FIELDS = ("name", "company", "domain", "linkedin", "email", "first_name", "last_name")


@dataclass(frozen=True)
class Estimate:
    """What a run will cost before it runs. Money is in cents."""

    rows: int
    invalid: int
    unique: int
    cached: int
    billable: int
    cost_cents: int
    mode: Mode = Mode.PROFESSIONAL
    budget_left_cents: int | None = None

    @property
    def cost_dollars(self) -> float:
        return self.cost_cents / 100

    def describe(self) -> str:
        """One line: "2,000 rows · 1,850 unique · 400 cached · 1,450 billable ≈ $72.50"."""
        parts = [f"{self.rows:,} rows"]
        if self.invalid:
            parts.append(f"{self.invalid:,} invalid")
        parts += [
            f"{self.unique:,} unique",
            f"{self.cached:,} cached",
            f"{self.billable:,} billable ≈ ${self.cost_cents / 100:,.2f}",
        ]
        return " · ".join(parts)


@dataclass
class Progress:
    """Handed to a `find_many` progress callback after each lead is answered."""

    done: int
    total: int
    counts: Counter[Status] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def eta(self) -> float | None:
        if self.done == 0 or self.done >= self.total:
            return None if self.done == 0 else 0.0
        return self.elapsed / self.done * (self.total - self.done)


@dataclass(frozen=True, eq=False)
class LeadRequest:
    """A validated lead with its mode and cache key (from `LeadFinder.prepare`). Equal keys are
    equal requests."""

    lead: Lead
    mode: Mode
    key: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LeadRequest) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def failed(self, reason: str) -> Result:
        return Result.failed(self.lead.to_api(), reason, mode=self.mode, key=self.key)


def _coerce_lead(item: LeadInput) -> Lead:
    if isinstance(item, Lead):
        return item
    if isinstance(item, Mapping):
        values = {k: item.get(k) for k in _LEAD_FIELDS if k in item}
        return Lead.parse(**values)
    if isinstance(item, Sequence) and not isinstance(item, str | bytes):
        if not 1 <= len(item) <= 2:
            raise InvalidLeadError("lead", "a lead is (name, company)")
        return Lead.parse(*item)
    raise InvalidLeadError("lead", "a lead is a Lead, a dict or a (name, company) pair")


def _given(**fields: object) -> dict[str, object]:
    """The lead fields a caller actually passed (None means "not given")."""
    return {k: v for k, v in fields.items() if v is not None}


def _raw_fields(item: LeadInput) -> dict[str, Any]:
    """The user's input, for results of leads that could not be parsed."""
    if isinstance(item, Lead):
        return item.to_api()
    if isinstance(item, Mapping):
        return {k: item[k] for k in _LEAD_FIELDS if k in item}
    if isinstance(item, Sequence) and not isinstance(item, str | bytes):
        return dict(zip(("name", "company"), item, strict=False))
    return {"name": item}


class LeadFinder:
    """Find emails for leads, answering from the cache and never paying twice.

    >>> finder = LeadFinder()                                  # settings from env/keyring/config
    >>> finder.find("Jane Doe", "Acme Inc.").email             # doctest: +SKIP
    'jane.doe@acme.com'

    Arguments beat environment variables, which beat the keyring and the config file.
    `budget` and `daily_budget` are dollars; `quiet` is how long single lookups wait to be
    batched; `timeout` bounds each HTTP attempt and `job_timeout` the wait for one bulk job;
    `requests_per_minute` paces this process's calls for the key.

    With no API key (or `backend="local"`) the built-in engine answers: free, unverified unless
    SMTP probing was switched on, and cached apart from the hosted API's answers.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        backend: str | None = None,
        budget: float | str | None = None,
        daily_budget: float | str | None = None,
        verify: bool = True,
        providers: Sequence[str] | None = None,
        quiet: float = 0.1,
        poll_interval: float = 1.0,
        requests_per_minute: float = 500.0,
        timeout: float = 60.0,
        job_timeout: float = 900.0,
        settings: Settings | None = None,
        store: Store | None = None,
        client: Client | None = None,
        engine: Engine | None = None,
        use_keyring: bool = True,
    ) -> None:
        if settings is None:
            settings = load_settings(
                api_key=Secret(api_key) if api_key else None,
                base_url=base_url,
                cache_path=cache_path,
                backend=backend,
                budget_cents=budget,
                daily_budget_cents=daily_budget,
                use_keyring=use_keyring,
            )
        self.settings = settings
        self.verify = verify
        self.providers = tuple(providers) if providers else None
        self.job_timeout = job_timeout
        self.run_id = uuid.uuid4().hex
        self.store = store if store is not None else Store(settings.cache_path)
        self._client_options: dict[str, Any] = {
            "poll_interval": poll_interval,
            "requests_per_minute": requests_per_minute,
            "timeout": timeout,
        }
        self._client = client
        self._engine = engine
        self._engine_taught = False
        self._client_lock = threading.Lock()
        self._budget_lock = threading.Lock()
        self._reserved_cents = 0
        self._active_jobs: set[str] = set()
        self._batcher: Coalescer[LeadRequest, Result] = Coalescer(self._flush, quiet=quiet)
        # what `with_key` needs to build the same finder with another key
        self._tuning: dict[str, Any] = {
            "verify": verify, "providers": providers, "quiet": quiet,
            "job_timeout": job_timeout, **self._client_options,
        }

    # -- public API -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"LeadFinder(backend={self.settings.resolved_backend!r}, "
            f"key={self.settings.api_key!r}, cache={str(self.store.path)!r})"
        )

    def __enter__(self) -> LeadFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish waiting lookups, then release the HTTP client and the cache file."""
        self._batcher.close()
        if self._client is not None:
            self._client.close()
        self.store.close()

    def with_key(self, api_key: Secret) -> LeadFinder:
        """The same finder (settings, cache file, batching and timeouts) using the hosted API with
        `api_key`: for a key typed in for one session. The key is held, never stored."""
        settings = replace(
            self.settings, api_key=api_key, backend="sixtyfour",
            sources={**self.settings.sources, "api_key": "this session"},
        )
        return LeadFinder(settings=settings, **self._tuning)

    def prepare(self, lead: LeadInput, mode: Mode | str = Mode.PROFESSIONAL) -> LeadRequest:
        """Validate a lead and compute its key; InvalidLeadError carries a user-facing reason."""
        mode = Mode.parse(mode)
        parsed = _coerce_lead(lead)
        key = parsed.key(mode, verify=self.verify, providers=self.providers)
        if self.local:  # the engine's free guesses never stand in for a paid API answer
            key = ENGINE_KEY_PREFIX + key
        return LeadRequest(parsed, mode, key)

    @property
    def local(self) -> bool:
        """True when the built-in engine answers (no API key, or backend="local")."""
        return self.settings.resolved_backend == "local"

    def cached(
        self, lead: LeadInput, mode: Mode | str = Mode.PROFESSIONAL
    ) -> Result | None:
        """The cached answer for a lead, or None. Never sends anything."""
        request = self.prepare(lead, mode)
        return self._cached_many([request.key]).get(request.key)

    def _cached_many(self, keys: Iterable[str]) -> dict[str, Result]:
        """Cached answers by key. The engine also takes an answer the hosted API gave earlier
        for the same lead: it was paid for and verified, so it is better than a free guess."""
        hits = self.store.get_many(keys)
        if self.local:
            missing = {k.removeprefix(ENGINE_KEY_PREFIX): k for k in keys if k not in hits}
            for api_key, hit in self.store.get_many(missing).items():
                hits[missing[api_key]] = hit
        return hits

    def submit(
        self, lead: LeadInput | LeadRequest, mode: Mode | str = Mode.PROFESSIONAL
    ) -> Future[Result]:
        """Start a lookup without waiting: a done future for cache hits and invalid input.

        Front-ends that must not block (Excel) use this; equal leads submitted together are
        sent once. A `LeadRequest` this finder prepared is used as it is (`mode` is ignored).
        """
        if isinstance(lead, LeadRequest):
            request = lead
        else:
            try:
                request = self.prepare(lead, mode)
            except InvalidLeadError as exc:
                mode = Mode.parse_or_default(mode)
                return _done(Result.failed(_raw_fields(lead), exc.reason, mode=mode))
        hit = self._cached_many([request.key]).get(request.key)
        if hit is not None:
            return _done(hit)
        return self._batcher.submit(request)

    def find(
        self,
        name: object = None,
        company: object = None,
        *,
        domain: object = None,
        linkedin: object = None,
        email: object = None,
        mode: Mode | str = Mode.PROFESSIONAL,
    ) -> Result:
        """Find the email of one lead. Bad input gives a Result with `error` set, not an error."""
        lead = _given(name=name, company=company, domain=domain, linkedin=linkedin, email=email)
        return self.submit(lead, mode).result()

    def find_many(
        self,
        leads: Iterable[LeadInput],
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Result]:
        """Find emails for many leads; results come back in the same order as `leads`.

        Duplicates are looked up once, cached leads cost nothing, the rest go out in bulk jobs of
        at most 100. Setting `cancel` stops new submissions; jobs already sent finish and are
        cached. Raises ConfigurationError (before spending anything) when leads need a lookup
        and no backend is configured; every other problem is reported per lead in `error`.
        """
        mode = Mode.parse(mode)
        items = list(leads)
        if self.store.open_jobs():
            self.resume_jobs()
        results: list[Result | None] = [None] * len(items)
        waiting: dict[str, list[int]] = {}
        requests: dict[str, LeadRequest] = {}
        for index, item in enumerate(items):
            try:
                request = self.prepare(item, mode)
            except InvalidLeadError as exc:
                results[index] = Result.failed(_raw_fields(item), exc.reason, mode=mode)
                continue
            waiting.setdefault(request.key, []).append(index)
            requests.setdefault(request.key, request)
        for key, hit in self._cached_many(waiting).items():
            for index in waiting.pop(key):
                results[index] = hit
        if waiting and not self.local:
            self._get_client()  # no usable key: one clear error, before any work

        tracker = Progress(done=0, total=len(items))
        for result in results:
            if result is not None:
                tracker.done += 1
                tracker.counts[result.status] += 1
        if progress and tracker.done:
            progress(tracker)

        def record(key: str, result: Result) -> None:
            for index in waiting[key]:
                results[index] = result
                tracker.done += 1
                tracker.counts[result.status] += 1
            if progress:
                progress(tracker)

        todo = [requests[key] for key in waiting]
        window = 100 * 4  # keep a few bulk jobs in flight, so Cancel stops the rest quickly
        for start in range(0, len(todo), window):
            if cancel is not None and cancel.is_set():
                for request in todo[start:]:
                    cancelled = request.failed("cancelled before it was sent")
                    record(request.key, replace(cancelled, extra={"cancelled": True}))
                break
            chunk = todo[start:start + window]
            futures = self._batcher.submit_many(chunk)
            self._batcher.flush_now()
            for request, future in zip(chunk, futures, strict=True):
                record(request.key, _result_of(future, request))
        return [r if r is not None else Result.failed({}, "internal error") for r in results]

    def estimate(
        self, leads: Iterable[LeadInput], *, mode: Mode | str = Mode.PROFESSIONAL
    ) -> Estimate:
        """Rows, invalid, unique, cached, billable and cost in cents; spends nothing."""
        mode = Mode.parse(mode)
        rows = invalid = 0
        keys: set[str] = set()
        for item in leads:
            rows += 1
            try:
                keys.add(self.prepare(item, mode).key)
            except InvalidLeadError:
                invalid += 1
        cached = len(self._cached_many(keys))
        billable = 0 if self.local else len(keys) - cached
        return Estimate(
            rows=rows,
            invalid=invalid,
            unique=len(keys),
            cached=cached,
            billable=billable,
            cost_cents=billable * PRICE_CENTS[mode],
            mode=mode,
            budget_left_cents=self.budget_left_cents(),
        )

    async def afind(
        self,
        name: object = None,
        company: object = None,
        *,
        domain: object = None,
        linkedin: object = None,
        email: object = None,
        mode: Mode | str = Mode.PROFESSIONAL,
    ) -> Result:
        """Async twin of `find`: awaits the shared batcher without blocking the event loop."""
        lead = _given(name=name, company=company, domain=domain, linkedin=linkedin, email=email)
        return await asyncio.wrap_future(self.submit(lead, mode))

    async def afind_many(
        self,
        leads: Iterable[LeadInput],
        *,
        mode: Mode | str = Mode.PROFESSIONAL,
        progress: Callable[[Progress], None] | None = None,
    ) -> list[Result]:
        """Async twin of `find_many` (runs it on a worker thread; the event loop stays free)."""
        items = list(leads)
        return await asyncio.to_thread(self.find_many, items, mode=mode, progress=progress)

    def budget_left_cents(self) -> int | None:
        """The smaller of what is left of the run and the daily budget, or None when unlimited.

        What ambiguous jobs may have cost counts as spent: their charge is unknown, not zero.
        """
        left: list[int] = []
        store = self.store
        if self.settings.budget_cents is not None:
            spent = store.spent_in_run(self.run_id) + store.at_risk_cents(run_id=self.run_id)
            left.append(self.settings.budget_cents - spent)
        if self.settings.daily_budget_cents is not None:
            spent = store.spent_today() + store.at_risk_cents(today=True)
            left.append(self.settings.daily_budget_cents - spent)
        if not left:
            return None
        return max(0, min(left) - self._reserved_cents)

    def resume_jobs(self) -> list[LedgerJob]:
        """Finish jobs an earlier run left open, by polling their task ids (never resubmitting).

        Jobs whose process is still running are left to it. A job whose request may have gone
        out before its task id was recorded is marked ambiguous: it may have been charged, and
        lead_finder does not buy it again on its own.
        """
        finished: list[LedgerJob] = []
        for job in self.store.open_jobs():
            if job.id in self._active_jobs or _owner_alive(job):
                continue
            self._recover(job)
            updated = self.store.job(job.id)
            if updated is not None:
                finished.append(updated)
        return finished

    def _recover(self, job: LedgerJob) -> None:
        """Finish an open job whose process is gone: poll it, or mark it ambiguous."""
        if job.task_id is None:
            self.store.mark_ambiguous(
                job.id, "lead_finder stopped while sending this job; it may have been charged"
            )
        else:
            self._finish(job, self._get_client())

    # -- the batch path -------------------------------------------------------------------------

    def _get_client(self) -> Client:
        with self._client_lock:
            if self._client is None:
                settings = self.settings
                if settings.api_key is None:
                    raise ConfigurationError(
                        "No API key: set SIXTYFOUR_API_KEY, pass api_key=..., or run "
                        "`lead-finder config set-key`."
                    )
                kwargs = dict(self._client_options)
                if settings.base_url:
                    kwargs["base_url"] = settings.base_url
                self._client = Client(settings.api_key.reveal(), **kwargs)
            return self._client

    def _flush(self, requests: Sequence[LeadRequest]) -> dict[LeadRequest, Result]:
        """Look up one batch of at most 100 distinct leads (runs on a batcher thread)."""
        answers: dict[LeadRequest, Result] = {}
        by_mode: dict[Mode, list[LeadRequest]] = {}
        for request in requests:
            by_mode.setdefault(request.mode, []).append(request)
        for mode, group in by_mode.items():
            by_key = {request.key: request for request in group}
            for key, result in self._flush_mode(mode, by_key).items():
                answers[by_key[key]] = result
        return answers

    def _flush_mode(self, mode: Mode, requests: Mapping[str, LeadRequest]) -> dict[str, Result]:
        if self.local:
            return self._flush_engine(mode, requests)
        try:
            client = self._get_client()
        except LeadFinderError as exc:
            return {key: request.failed(user_message(exc)) for key, request in requests.items()}

        price = PRICE_CENTS[mode]
        with self._budget_lock:  # reserve before claiming, so parallel batches cannot overspend
            limit = self._affordable(price, len(requests))
            self._reserved_cents += limit * price
        try:
            claim = self.store.claim(
                keys=list(requests),
                leads=[_api_lead(r.lead, i) for i, r in enumerate(requests.values())],
                mode=mode,
                options=self._options(),
                price_cents=price,
                run_id=self.run_id,
                limit=limit,
            )
        except BaseException:
            with self._budget_lock:
                self._reserved_cents -= limit * price
            raise
        job = claim.job
        with self._budget_lock:  # keep the reservation only for what was claimed
            self._reserved_cents -= (limit - len(job.keys) if job else limit) * price

        answers: dict[str, Result] = dict(claim.cached)
        for key in claim.over_budget:
            answers[key] = requests[key].failed(_BUDGET)
        for key in claim.ambiguous:
            answers[key] = requests[key].failed(_AMBIGUOUS)
        if claim.held:
            answers.update(self._await_other_jobs(claim.held, requests))
        if job is None:
            return answers
        self._active_jobs.add(job.id)
        try:
            try:
                submitted = client.find_email_bulk_async(
                    job.leads,
                    refs=[str(lead[REF]) for lead in job.leads],
                    mode=mode,
                    verify_emails=self.verify,
                    providers=self.providers,
                )
            except AmbiguousRequestError as exc:
                self.store.mark_ambiguous(job.id, user_message(exc))
                return answers | {k: requests[k].failed(_AMBIGUOUS) for k in job.keys}
            except APIError as exc:
                self.store.mark_failed(job.id, user_message(exc))
                return answers | {k: requests[k].failed(user_message(exc)) for k in job.keys}
            self.store.mark_submitted(job.id, submitted.task_id)
            job = replace(job, task_id=submitted.task_id)
            return answers | self._finish(job, client)
        finally:
            with self._budget_lock:
                self._reserved_cents -= len(job.keys) * price
            self._active_jobs.discard(job.id)

    def _get_engine(self) -> Engine:
        with self._client_lock:
            if self._engine is None:
                from .engine import Engine

                self._engine = Engine()
            if not self._engine_taught:
                # earlier confirmed answers teach the engine each domain's address pattern
                self._engine_taught = True
                self._engine.learn(
                    (str(r.lead.get("name", "")), r.email or "")
                    for r in self.store.found(limit=_LEARN_FROM) if r.status is Status.OK
                )
            return self._engine

    def _flush_engine(self, mode: Mode, requests: Mapping[str, LeadRequest]) -> dict[str, Result]:
        """Look leads up with the built-in engine: free, so no ledger and no budget."""
        engine = self._get_engine()
        keys = list(requests)
        found = engine.find_many([requests[k].lead for k in keys], mode, verify=self.verify)
        answers = {
            key: replace(result, key=key, source=Source.ENGINE, cost_cents=0)
            for key, result in zip(keys, found, strict=True)
        }
        # a network hiccup is not an answer worth keeping for 30 days
        self.store.put_many(
            r for r in answers.values() if r.extra.get("reason") not in _TRANSIENT_REASONS
        )
        return answers

    def _finish(self, job: LedgerJob, client: Client) -> dict[str, Result]:
        """Poll a submitted job to its end and store its results in one transaction."""
        assert job.task_id is not None
        by_ref = {str(lead[REF]): key for key, lead in zip(job.keys, job.leads, strict=True)}
        leads = {key: _user_lead(lead) for key, lead in zip(job.keys, job.leads, strict=True)}

        def failed(reason: str) -> dict[str, Result]:
            return {k: Result.failed(leads[k], reason, mode=job.mode, key=k) for k in job.keys}

        try:
            done: Job = client.wait(job.task_id, timeout=self.job_timeout)
        except JobTimeoutError as exc:
            # Still running on the server: leave it submitted so a later run collects it.
            return failed(user_message(exc))
        except NotFoundError:
            self.store.mark_expired(job.id, _EXPIRED)
            return failed(_EXPIRED)
        except (JobError, APIStatusError) as exc:
            self.store.mark_failed(job.id, user_message(exc))
            return failed(user_message(exc))
        except APIError as exc:  # polling is free and safe: a later run tries again
            return failed(user_message(exc))
        answers: dict[str, Result] = {}
        for result in done.results:
            key = by_ref.get(result.ref or "")
            if key is not None:
                answers[key] = replace(
                    result, lead=leads[key], mode=job.mode, source=Source.API, key=key, ref=None
                )
        self.store.complete(job.id, list(answers.values()), done.charge_cents)
        missing = failed("the API sent no answer for this lead")
        return {k: answers.get(k, missing[k]) for k in job.keys}

    def _await_other_jobs(
        self, held: Mapping[str, str], requests: Mapping[str, LeadRequest]
    ) -> dict[str, Result]:
        """Wait for keys another process (or an earlier run) is looking up, reading the cache."""
        answers: dict[str, Result] = {}
        pending = dict(held)
        deadline = time.monotonic() + self.job_timeout
        delay = 0.05
        while pending and time.monotonic() < deadline:
            for key, hit in self.store.get_many(pending).items():
                answers[key] = hit
                del pending[key]
            for job_id in set(pending.values()):
                job = self.store.job(job_id)
                if job is not None and job.is_open:
                    if not _owner_alive(job):
                        self._recover(job)  # its owner is gone: collect it
                    continue
                reason = _AMBIGUOUS if job and job.state == "ambiguous" else (
                    (job.error if job else None) or "the other lookup did not finish"
                )
                for key in [k for k, j in pending.items() if j == job_id]:
                    answers[key] = self.store.get(key) or requests[key].failed(reason)
                    del pending[key]
            if pending:
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)
        for key in pending:
            answers[key] = requests[key].failed("still being looked up by another program")
        return answers

    def _affordable(self, price: int, wanted: int) -> int:
        left = self.budget_left_cents()
        return wanted if left is None else max(0, min(wanted, left // price))

    def _options(self) -> dict[str, Any]:
        return {
            "verify_emails": self.verify,
            "providers": list(self.providers) if self.providers else None,
            "pid": os.getpid(),
            "host": _HOST,
        }


#: The join key sent with every lead of a bulk job and echoed back by the API.
REF = "lead_finder_ref"
#: Cache keys of the engine's answers start with this, so they never answer an API lookup.
ENGINE_KEY_PREFIX = "engine:"
#: Engine reasons that describe this moment's network, not the lead: not cached.
_TRANSIENT_REASONS = frozenset({
    "dns_error", "timeout", "temp_error", "greylisted", "smtp_unreachable", "engine_error",
    "rcpt_limit", "protocol_error",
})
#: How many confirmed cached answers teach the engine at the start of a run.
_LEARN_FROM = 5000


def _api_lead(lead: Lead, index: int) -> dict[str, Any]:
    return {**lead.to_api(), REF: str(index)}


def _user_lead(api_lead: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in api_lead.items() if k != REF}


_AMBIGUOUS = (
    "the answer to an earlier request for this lead was lost, and it may have been charged: "
    "see `lead-finder jobs list`"
)
_EXPIRED = "the API no longer has this job's results"
_BUDGET = "budget reached: raise LEAD_FINDER_BUDGET to look up more"
_HOST = socket.gethostname()


def _done(result: Result) -> Future[Result]:
    future: Future[Result] = Future()
    future.set_result(result)
    return future


def _result_of(future: Future[Result], request: LeadRequest) -> Result:
    try:
        return future.result()
    except Exception as exc:
        log.warning("lookup failed: %s", type(exc).__name__)
        return request.failed(user_message(exc))


def _owner_alive(job: LedgerJob) -> bool:
    """Whether the process that wrote a ledger job is still running (same host only)."""
    pid = job.options.get("pid")
    if job.options.get("host") != _HOST or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
