"""Crash matrix: a worker process is SIGKILLed at each step of a bulk job's ledger life, then a new
process (a `find_many` over the same leads, or `lead-finder jobs resume`) finishes what it left.

The server runs in the test process (`live_server`), so its request and charge counters survive
every crash and are the oracle: no bulk job is sent twice, no lead is charged twice, and a result
whose task id reached the ledger is collected by polling that task, never bought again. A job whose
answer was lost before its task id was stored ends `ambiguous` and `lead-finder jobs list` shows it
with what it may have cost.

The worker kills itself at the exact step: the script below wraps one method of the real client or
store so that it sends SIGKILL to its own process just before or just after calling through.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import LiveServer, live_server

from lead_finder.finder import LeadFinder
from lead_finder.models import Status
from lead_finder.store import JobState, Store

pytestmark = pytest.mark.integration

#: Runs `find_many` over the leads in argv[2] (JSON), after arranging to SIGKILL itself at the
#: step named in argv[1] ("none": no crash). Key, server and cache come from the environment,
#: exactly as for the `lead-finder` command. Prints the results as JSON when it survives.
WORKER = r"""
import json, os, signal, sys

from lead_finder.finder import LeadFinder
from lead_finder.sixtyfour import Client, JobState
from lead_finder.store import Store

step, leads_path = sys.argv[1], sys.argv[2]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def around(owner, name, *, before=False, after=False):
    original = getattr(owner, name)

    def wrapper(self, *args, **kwargs):
        if before:
            die()
        out = original(self, *args, **kwargs)
        if after:
            die()
        return out

    setattr(owner, name, wrapper)


if step == "before_submit":        # intent committed, POST never sent
    around(Client, "find_email_bulk_async", before=True)
elif step == "after_submit":       # POST answered, task id not yet in the ledger
    around(Client, "find_email_bulk_async", after=True)
elif step == "after_task_id":      # task id committed, no poll yet
    around(Store, "mark_submitted", after=True)
elif step == "while_polling":      # a poll said the job is still running on the server
    original_wait = Client.wait

    def wait(self, task_id, **kwargs):
        def on_poll(job):
            if job.state is JobState.RUNNING:
                die()
            os._exit(3)  # the job finished before we could crash mid-poll: raise job_delay

        return original_wait(self, task_id, **{**kwargs, "on_poll": on_poll})

    Client.wait = wait
elif step == "inside_complete":    # results written in complete()'s transaction, no COMMIT
    write_results = Store._write_results

    def write_then_die(conn, rows):
        write_results(conn, rows)
        die()

    Store._write_results = staticmethod(write_then_die)
elif step == "after_results":      # results, ledger and spend committed
    around(Store, "complete", after=True)
elif step != "none":
    sys.exit("unknown step " + step)

with open(leads_path, encoding="utf-8") as fh:
    leads = json.load(fh)
with LeadFinder(poll_interval=0.05, requests_per_minute=float("inf"), use_keyring=False) as f:
    results = f.find_many(leads)
print(json.dumps([[r.email, r.status.value, r.error] for r in results]))
"""

#: Seven rows, six people (one written twice, one the directory does not know: NOT_FOUND is
#: billed too). Emails from the server's bundled demo directory.
LEADS = [
    ["Jane Doe", "Acme Inc."],
    ["John Smith", "Acme Inc."],
    ["Hank Scorpio", "Globex Corporation"],
    ["Doe, Jane", "ACME"],
    ["Peter Gibbons", "Initech LLC"],
    ["Monica Hall", "Raviga Capital"],
    ["Nobody Atall", "Acme Inc."],
]
EXPECTED = [
    "jane.doe@acme-inc.com",
    "john.smith@acme-inc.com",
    "hank@globex-corp.com",
    "jane.doe@acme-inc.com",
    "peter.gibbons@initech-software.com",
    "monica.hall@raviga-capital.com",
    None,
]
UNIQUE = 6
PRICE = 5  # cents per PROFESSIONAL lookup
BULK = "/find-email-bulk-async"

#: step -> (ledger state right after the crash, has a task id, POSTs the crashed worker made)
AT_CRASH: dict[str, tuple[JobState, bool, int]] = {
    "before_submit": (JobState.INTENT, False, 0),
    "after_submit": (JobState.INTENT, False, 1),
    "after_task_id": (JobState.SUBMITTED, True, 1),
    "while_polling": (JobState.SUBMITTED, True, 1),
    "inside_complete": (JobState.SUBMITTED, True, 1),
    "after_results": (JobState.COMPLETED, True, 1),
}
#: Steps whose answer is lost: the POST may have been (or was) billed, no task id to poll.
LOST = {"before_submit", "after_submit"}


def _lead_finder_command() -> list[str]:
    script = Path(sys.executable).with_name("lead-finder")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from lead_finder.cli import main; sys.exit(main())"]


def _env(srv: LiveServer, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEAD_FINDER_")}
    env.update(
        SIXTYFOUR_API_KEY=srv.api_key,  # in the environment, never on a command line
        LEAD_FINDER_BASE_URL=srv.base_url,
        LEAD_FINDER_CACHE=str(cache),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # run() reaps the child: a killed worker must not linger as a zombie, because the finder
    # treats a job whose owner pid still exists as in progress. The cache's folder as the working
    # directory: `python -c` puts it first on sys.path, and it holds no package.
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60,
                          check=False, cwd=Path(env["LEAD_FINDER_CACHE"]).parent)


def _integrity(cache: Path) -> str:
    conn = sqlite3.connect(cache)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _server_idle(srv: LiveServer) -> bool:
    return not srv.app.state.jobs.running()


@pytest.fixture
def leads_file(tmp_path: Path) -> Path:
    path = tmp_path / "leads.json"
    path.write_text(json.dumps(LEADS), encoding="utf-8")
    return path


@pytest.fixture(params=sorted(AT_CRASH))
def step(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(step: str) -> Iterator[LiveServer]:
    # A job that waits on the server gives the worker a poll that still says "running".
    delay = 1.0 if step == "while_polling" else 0.0
    with live_server(job_delay=delay, rate_limit_per_minute=0) as srv:
        yield srv


@pytest.mark.parametrize("restart", ["find_many", "jobs_resume"])
def test_sigkill_at_each_ledger_step_then_restart(
    step: str, restart: str, server: LiveServer, leads_file: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.sqlite3"
    env = _env(server, cache)
    srv = server

    # 1. The worker dies at `step`.
    crashed = _run([sys.executable, "-c", WORKER, step, str(leads_file)], env)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr[-2000:])
    assert _integrity(cache) == "ok"
    state, has_task, posts = AT_CRASH[step]
    with Store(cache) as store:
        (job,) = store.jobs()
        cached_at_crash = store.get_many(job.keys)
    assert job.state is state
    assert (job.task_id is not None) is has_task
    assert len(job.keys) == UNIQUE and job.estimated_cents == UNIQUE * PRICE
    assert srv.stats.requests[BULK] == posts
    # Results reach the cache only together with the ledger's `completed` (one transaction).
    assert len(cached_at_crash) == (UNIQUE if state is JobState.COMPLETED else 0)
    if step == "while_polling":
        assert srv.stats.requests["/job-status"] >= 1
    _wait_until(lambda: _server_idle(srv))  # a job sent before the crash runs on and is billed
    billed = UNIQUE if posts else 0
    assert len(srv.stats.charges) == billed and srv.stats.duplicate_charges == 0
    before_restart = sum(srv.stats.requests.values())

    # 2. A new process finishes the job: by polling its task id, never by sending it again.
    if restart == "find_many":
        rerun = _run([sys.executable, "-c", WORKER, "none", str(leads_file)], env)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        rows: list[list[Any]] = json.loads(rerun.stdout)
        if step in LOST:
            assert all(row[1] == Status.ERROR.value for row in rows)
            assert all("may have been charged" in row[2] and "jobs list" in row[2] for row in rows)
        else:
            assert [row[0] for row in rows] == EXPECTED
            assert all(row[2] is None for row in rows)
    else:
        resumed = _run([*_lead_finder_command(), "jobs", "resume"], env)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        if step == "after_results":
            assert "No interrupted jobs." in resumed.stdout
        else:
            want = "ambiguous" if step in LOST else "completed"
            assert f"{job.id[:12]}  {want}  {UNIQUE} leads" in resumed.stdout, resumed.stdout
        assert srv.api_key not in resumed.stdout + resumed.stderr

    assert srv.stats.requests[BULK] == posts  # 0 re-submissions
    assert len(srv.stats.charges) == billed and srv.stats.duplicate_charges == 0
    assert srv.stats.total_cents == billed * PRICE
    if step == "after_results":  # everything was already in the cache: not even a poll
        assert sum(srv.stats.requests.values()) == before_restart
    assert _integrity(cache) == "ok"

    with Store(cache) as store:
        (after,) = store.jobs()
        cached = store.get_many(job.keys)
        spent = store.spent_today()
    if step in LOST:
        assert after.state is JobState.AMBIGUOUS and after.task_id is None
        assert cached == {} and spent == 0
    else:
        # 0 lost results: every key cached from the old task; its charge recorded exactly once.
        assert after.state is JobState.COMPLETED and after.task_id == job.task_id
        assert set(cached) == set(job.keys)
        assert after.charge_cents == spent == UNIQUE * PRICE

    # 3. `jobs list` shows a lost answer with what it may have cost; a finished job only with --all.
    listed = _run([*_lead_finder_command(), "jobs", "list"], env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    if step in LOST:
        line = next(ln for ln in listed.stdout.splitlines() if ln.startswith(job.id[:12]))
        assert "ambiguous" in line and f"{UNIQUE} leads" in line
        assert f"may cost ${UNIQUE * PRICE / 100:.2f}" in line
    else:
        assert "No jobs to show." in listed.stdout
        full = _run([*_lead_finder_command(), "jobs", "list", "--all"], env).stdout
        assert "completed" in full and f"cost ${UNIQUE * PRICE / 100:.2f}" in full

    # 4. Any later run answers the same without sending anything.
    srv.stats.reset()
    with LeadFinder(srv.api_key, base_url=srv.base_url, cache_path=cache, poll_interval=0.05,
                    use_keyring=False) as finder:
        again = finder.find_many(LEADS)
    assert sum(srv.stats.requests.values()) == 0
    if step in LOST:
        assert all(r.status is Status.ERROR and "may have been charged" in (r.error or "")
                   for r in again)
    else:
        assert [r.email for r in again] == EXPECTED
    assert _integrity(cache) == "ok"
    for path in tmp_path.iterdir():  # the key reached no file: cache, WAL, leads
        assert srv.api_key.encode() not in path.read_bytes(), path.name
