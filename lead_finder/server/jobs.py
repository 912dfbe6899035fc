"""The server's async jobs, kept in SQLite so they survive a restart.

One row per job: the request that started it (leads, mode, options), its state, the result and
what it was charged, and where its webhook delivery stands. A job still `running` when the server
stopped is run again on the next start; a webhook still `pending` is delivered again. The owner
column holds a digest of the API key, never the key.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Job", "JobStore", "utc_now"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    owner         TEXT NOT NULL,
    task_type     TEXT NOT NULL,
    status        TEXT NOT NULL,
    request       TEXT NOT NULL,
    webhook_url   TEXT,
    webhook_state TEXT,
    result        TEXT,
    error         TEXT,
    charge_cents  INTEGER NOT NULL DEFAULT 0,
    start_time    TEXT NOT NULL,
    close_time    TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"


def utc_now() -> str:
    """Now as an ISO 8601 UTC timestamp, the form job records use."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    """One stored job. `request` is the JSON-ready request: leads, mode, verify, providers,
    and the fault it was submitted with (if any)."""

    id: str
    run_id: str
    owner: str
    task_type: str
    status: str
    request: Mapping[str, Any]
    webhook_url: str | None
    webhook_state: str | None
    result: Any
    error: str | None
    charge_cents: int
    start_time: str
    close_time: str | None

    @property
    def bulk(self) -> bool:
        return self.task_type == "find_email_bulk"

    @property
    def done(self) -> bool:
        return self.status != RUNNING


class JobStore:
    """A small thread-safe SQLite store: one connection, one lock, WAL, a busy timeout.

    `path=None` keeps the jobs in memory (they then die with the process).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        with self._lock:
            self._connection()  # fail now, not on the first request, if the file is unusable

    def _connection(self) -> sqlite3.Connection:
        """The open connection (opened on first use, again after `close`); hold the lock."""
        if self._db is None:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            target = ":memory:" if self.path is None else str(self.path)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so writes are short and
            # never upgraded from a read lock (which is what produces "database is locked").
            db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 5000")
            if self.path is not None:
                db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        """Close the file (an in-memory store forgets its jobs); the next use reopens it."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create(
        self,
        *,
        owner: str,
        task_type: str,
        request: Mapping[str, Any],
        webhook_url: str | None,
    ) -> Job:
        """Record a new running job and return it."""
        job_id = str(uuid.uuid4())
        with self._write() as db:
            db.execute(
                "INSERT INTO jobs (id, run_id, owner, task_type, status, request, webhook_url,"
                " start_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    str(uuid.uuid4()),
                    owner,
                    task_type,
                    RUNNING,
                    json.dumps(request),
                    webhook_url,
                    utc_now(),
                ),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._lock:
            row = self._connection().execute(
                "SELECT * FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return None if row is None else _job(row)

    def finish(
        self,
        job_id: str,
        *,
        status: str,
        result: Any = None,
        error: str | None = None,
        charge_cents: int = 0,
    ) -> bool:
        """Close a running job; False when it was already closed (by an earlier run)."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, charge_cents = ?,"
                " close_time = ?,"
                " webhook_state = CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END"
                " WHERE id = ? AND status = ?",
                (
                    status,
                    None if result is None else json.dumps(result),
                    error,
                    charge_cents,
                    utc_now(),
                    job_id,
                    RUNNING,
                ),
            )
            return cursor.rowcount == 1

    def set_webhook_state(self, job_id: str, state: str) -> None:
        """Record how the webhook delivery ended: `delivered` or `failed`."""
        with self._write() as db:
            db.execute("UPDATE jobs SET webhook_state = ? WHERE id = ?", (state, job_id))

    def running(self) -> Sequence[Job]:
        """Jobs that were still running when the last server stopped."""
        return self._select("SELECT * FROM jobs WHERE status = ? ORDER BY start_time", RUNNING)

    def pending_webhooks(self) -> Sequence[Job]:
        """Finished jobs whose webhook was never delivered nor given up on."""
        return self._select(
            "SELECT * FROM jobs WHERE webhook_state = ? ORDER BY close_time", "pending"
        )

    def _select(self, sql: str, *args: Any) -> list[Job]:
        with self._lock:
            rows = self._connection().execute(sql, args).fetchall()
        return [_job(row) for row in rows]


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        run_id=row["run_id"],
        owner=row["owner"],
        task_type=row["task_type"],
        status=row["status"],
        request=json.loads(row["request"]),
        webhook_url=row["webhook_url"],
        webhook_state=row["webhook_state"],
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        charge_cents=int(row["charge_cents"]),
        start_time=row["start_time"],
        close_time=row["close_time"],
    )
