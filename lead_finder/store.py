"""The local store: cached results, the job ledger and the spend record, in one SQLite file.

The file lives in the user data dir (``platformdirs.user_data_dir("lead_finder")/cache.sqlite3``);
the ``LEAD_FINDER_CACHE`` environment variable or the ``path`` argument moves it. Many threads and
several processes may use the same file at once: the database runs in WAL mode with a busy timeout,
and every write is one short ``BEGIN IMMEDIATE`` transaction.

Results
    One row per lead key. An answer that found an address is kept for 90 days, a NOT_FOUND answer
    for 30 days (both configurable). Errors and pending results are never cached: a transport
    error, a 4xx or a 5xx says nothing about the lead.

Ledger
    One row per request that may cost money; its states and allowed moves are in ledger.py.

    ``claim()`` checks the cache and the open jobs of every process and records the intent for
    what is left in the same write transaction, so two processes asking for the same lead at
    the same moment cannot both buy it.

Spend
    One row per charge, with the local calendar day (by the store's clock) and the run and job it
    belongs to, so a budget can be checked per day and per run.

Connection model: one connection per store, shared by all threads under one lock
(``check_same_thread=False``). Measured with 32 threads on one file (3 processes at once), this and
one-connection-per-thread both gave 0 "database is locked" errors, but per-thread connections
showed ~1 s worst-case waits (SQLite's busy handler sleeps and starves) against ~0.1-0.5 s here.
Every statement is fast, so serialising them inside a process costs nothing measurable.

A file that SQLite calls "not a database" or "malformed" is renamed ``*.corrupt-<timestamp>`` and a
fresh one is built: the caller gets an answer (usually a cache miss), with a warning in the log.
A file on a network share is refused, because SQLite's locking is not reliable there.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import platformdirs

from .cachefile import (
    CACHE_ENV,
    NETWORK_FS_TYPES,
    SIDE_FILES,
    default_cache_path,
    ensure_private,
    file_path,
    network_fs_type,
    refuse_network_share,
)
from .errors import StoreError
from .ledger import (
    ALLOWED_FROM,
    FINAL_STATES,
    OPEN_STATES,
    Claim,
    JobState,
    LedgerJob,
    can_transition,
)
from .models import PRICE_CENTS, Email, Mode, Result, Source, Status

__all__ = [
    "CACHE_ENV",
    "Claim",
    "FOUND_TTL",
    "NOT_FOUND_TTL",
    "NETWORK_FS_TYPES",
    "SCHEMA_VERSION",
    "STALE_INTENT_AFTER",
    "JobState",
    "LedgerJob",
    "Store",
    "StoreStats",
    "can_transition",
    "default_cache_path",
    "network_fs_type",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long an answer that found an address stays fresh (seconds).
FOUND_TTL: float = 90 * 86400
#: How long a NOT_FOUND answer stays fresh (seconds): people change jobs, domains get mail.
NOT_FOUND_TTL: float = 30 * 86400
#: How long the ledger keeps a finished job (`purge_finished_jobs`, `cache clear --expired`).
JOB_RETENTION: float = 90 * 86400
#: An intent older than this without a task id is a crash before submit, not a request in flight.
STALE_INTENT_AFTER: float = 15 * 60
#: SQLite busy timeout. Waiting is better than failing a write that records money or results.
BUSY_TIMEOUT_MS = 10_000
#: SQLite allows 32766 host parameters since 3.32, older builds 999; stay well under both.
MAX_PARAMS = 500
SCHEMA_VERSION = 1

# A results row: key, mode, found, data, fetched, expires.
_ResultRow = tuple[str, str, int, str, float, float]
# SQLITE_CORRUPT and SQLITE_NOTADB (primary codes; extended codes keep them in the low byte).
_CORRUPT_CODES = frozenset({11, 26})


# --------------------------------------------------------------------------------------------
# Schema


_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS results (
            key      TEXT PRIMARY KEY,
            mode     TEXT NOT NULL,
            found    INTEGER NOT NULL,
            data     TEXT NOT NULL,
            fetched  REAL NOT NULL,
            expires  REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS results_expires ON results(expires)",
        """CREATE TABLE IF NOT EXISTS jobs (
            id              TEXT PRIMARY KEY,
            state           TEXT NOT NULL,
            task_id         TEXT,
            mode            TEXT NOT NULL,
            keys            TEXT NOT NULL,
            leads           TEXT NOT NULL,
            options         TEXT NOT NULL,
            estimated_cents INTEGER NOT NULL,
            charge_cents    INTEGER,
            run_id          TEXT,
            error           TEXT,
            created         REAL NOT NULL,
            updated         REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created)",
        """CREATE TABLE IF NOT EXISTS job_keys (
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            key    TEXT NOT NULL,
            PRIMARY KEY (job_id, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS job_keys_key ON job_keys(key)",
        """CREATE TABLE IF NOT EXISTS spend (
            id      INTEGER PRIMARY KEY,
            at      REAL NOT NULL,
            day     TEXT NOT NULL,
            cents   INTEGER NOT NULL,
            run_id  TEXT,
            job_id  TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS spend_day ON spend(day)",
        "CREATE INDEX IF NOT EXISTS spend_run ON spend(run_id)",
    ),
}


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to `SCHEMA_VERSION` inside one write transaction; return the version.

    `PRAGMA user_version` holds the version. A file from a newer lead_finder is left untouched.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read inside the write lock: two processes opening a new file must not both migrate.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The cache was written by a newer lead_finder (schema {version}, this one "
                f"understands {SCHEMA_VERSION}). Upgrade lead_finder or use another cache path."
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target:d}")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return SCHEMA_VERSION


#: Held while a Store creates a cache file and closes its descriptor (see `Store._open`).
_CREATE_LOCK = threading.Lock()


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL and return the journal mode SQLite settled on.

    Converting a new file takes an exclusive lock without SQLite's busy handler: when several
    connections open a fresh cache at the same moment, the losers get "database is locked" at
    once (measured: 3 of 480 opens). Retry within the busy timeout instead of failing.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # SQLite already rolled back (some errors do that), or the connection is gone.


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


# --------------------------------------------------------------------------------------------
# Serialisation (pure)


def _dumps(value: Any) -> str:
    # default=str: a lead value the API echoed in an odd type must not cost us a paid result.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def encode_result(result: Result) -> str:
    """The JSON stored for a result."""
    return _dumps(
        {
            "lead": dict(result.lead),
            "mode": result.mode.value,
            "emails": [e.to_entry() for e in result.emails],
            "personal_emails": [e.to_entry() for e in result.personal_emails],
            "cost_cents": result.cost_cents,
            "key": result.key,
            "extra": dict(result.extra),
        }
    )


def decode_result(data: str) -> Result:
    """A stored result, marked as coming from the cache (its original cost_cents kept)."""
    raw = json.loads(data)

    def emails(entries: Any) -> tuple[Email, ...]:
        return tuple(Email(str(a), str(s), str(t)) for a, s, t in entries or ())

    cost = raw.get("cost_cents")
    return Result(
        lead=dict(raw.get("lead") or {}),
        mode=Mode(raw["mode"]),
        emails=emails(raw.get("emails")),
        personal_emails=emails(raw.get("personal_emails")),
        cost_cents=int(cost) if cost is not None else None,
        source=Source.CACHE,
        key=raw.get("key"),
        extra=dict(raw.get("extra") or {}),
    )


def cacheable(result: Result) -> bool:
    """Only finished answers are cached: not errors, not pending cells, not cache hits again."""
    return (
        result.key is not None
        and result.error is None
        and not result.pending
        and result.source not in (Source.CACHE, Source.NONE)
    )


def job_charge(
    mode: Mode, lead_count: int, results: Sequence[Result], charge_cents: int | None
) -> int:
    """What a finished job cost, in cents.

    The job's `charge_amount` when the API reported it; else, per lead sent, the result's
    `cost_cents` when reported and the list price when not.
    """
    if charge_cents is not None:
        return int(charge_cents)
    reported = [r.cost_cents for r in results if r.cost_cents is not None]
    unreported = max(lead_count - len(reported), 0)
    return sum(reported) + unreported * PRICE_CENTS[mode]


def _chunks(items: Sequence[T], size: int = MAX_PARAMS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


# --------------------------------------------------------------------------------------------
# Queries shared by several Store methods (each runs inside the caller's lock and transaction)


def _fresh(conn: sqlite3.Connection, keys: Sequence[str], now: float) -> dict[str, Result]:
    found: dict[str, Result] = {}
    for chunk in _chunks(keys, MAX_PARAMS - 1):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT key, data FROM results WHERE key IN ({marks}) AND expires > ?", (*chunk, now)
        )
        for key, data in rows:
            try:
                found[key] = decode_result(data)
            except (ValueError, KeyError, TypeError) as exc:
                # An unreadable row is a cache miss, not a crash.
                log.warning("Ignoring unreadable cached result %r: %s", key, exc)
    return found


_IN_FLIGHT = """SELECT k.key, j.id FROM job_keys AS k JOIN jobs AS j ON j.id = k.job_id
    WHERE (j.state = 'submitted' OR (j.state = 'intent' AND j.created >= ?))"""
_NEWEST_LAST = " ORDER BY j.created, j.rowid"  # for a key in two open jobs, the newest wins


def _in_flight(
    conn: sqlite3.Connection, keys: Sequence[str] | None, cutoff: float
) -> dict[str, str]:
    if keys is None:
        return dict(conn.execute(_IN_FLIGHT + _NEWEST_LAST, (cutoff,)).fetchall())
    out: dict[str, str] = {}
    for chunk in _chunks(keys, MAX_PARAMS - 1):
        marks = ",".join("?" * len(chunk))
        out.update(
            conn.execute(f"{_IN_FLIGHT} AND k.key IN ({marks}){_NEWEST_LAST}", (cutoff, *chunk))
        )
    return out


def _ambiguous(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in _chunks(keys, MAX_PARAMS):
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(
            "SELECT k.key, j.id FROM job_keys AS k JOIN jobs AS j ON j.id = k.job_id"
            f" WHERE j.state = 'ambiguous' AND k.key IN ({marks})" + _NEWEST_LAST,
            tuple(chunk),
        ))
    return out


def _check_pairs(keys: Sequence[str], leads: Sequence[Mapping[str, Any]]) -> None:
    if len(keys) != len(leads):
        raise ValueError("keys and leads must have the same length (leads[i] is keys[i]'s)")


def _insert_job(
    conn: sqlite3.Connection,
    *,
    keys: Sequence[str],
    leads: Sequence[Mapping[str, Any]],
    mode: Mode,
    options: Mapping[str, Any],
    estimated_cents: int,
    run_id: str | None,
    now: float,
) -> LedgerJob:
    keys_json, leads_json = _dumps(list(keys)), _dumps([dict(lead) for lead in leads])
    options_json = _dumps(dict(options))
    # Built from the JSON just as `Store.job()` will read it back, so both always agree.
    job = LedgerJob(
        id=uuid.uuid4().hex, state=JobState.INTENT, task_id=None,
        keys=tuple(json.loads(keys_json)), leads=tuple(json.loads(leads_json)), mode=mode,
        options=json.loads(options_json), estimated_cents=int(estimated_cents),
        charge_cents=None, created=now, updated=now, error=None, run_id=run_id,
    )
    conn.execute(
        """INSERT INTO jobs (id, state, mode, keys, leads, options, estimated_cents, run_id,
               created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            job.id, job.state.value, mode.value, keys_json, leads_json, options_json,
            job.estimated_cents, run_id, now, now,
        ),
    )
    conn.executemany(
        "INSERT INTO job_keys (job_id, key) VALUES (?, ?)", [(job.id, k) for k in _unique(keys)]
    )
    return job


_JOB_COLUMNS = (
    "id, state, task_id, keys, leads, mode, options, estimated_cents, charge_cents, "
    "created, updated, error, run_id"
)


def _job(row: Sequence[Any]) -> LedgerJob:
    return LedgerJob(
        id=row[0],
        state=JobState(row[1]),
        task_id=row[2],
        keys=tuple(json.loads(row[3])),
        leads=tuple(json.loads(row[4])),
        mode=Mode(row[5]),
        options=json.loads(row[6]),
        estimated_cents=int(row[7]),
        charge_cents=None if row[8] is None else int(row[8]),
        created=float(row[9]),
        updated=float(row[10]),
        error=row[11],
        run_id=row[12],
    )


@dataclass(frozen=True)
class StoreStats:
    """What is in the store, for `lead-finder cache stats` and `doctor`."""

    path: Path
    size_bytes: int
    results_found: int
    results_not_found: int
    results_expired: int
    jobs: Mapping[str, int] = field(default_factory=dict)
    spent_today_cents: int = 0
    spent_total_cents: int = 0
    schema_version: int = SCHEMA_VERSION

    @property
    def results_fresh(self) -> int:
        """Results that would be answered from the cache now."""
        return self.results_found + self.results_not_found



# --------------------------------------------------------------------------------------------
# The store


class Store:
    """Results cache, job ledger and spend record in one SQLite file; safe across threads and
    processes.

    `path` defaults to `default_cache_path()`; a directory means `cache.sqlite3` inside it. TTLs are
    in seconds. `clock` returns epoch seconds and decides expiry, intent staleness and the local
    calendar day of spend. The file is opened on first use.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        found_ttl: float = FOUND_TTL,
        not_found_ttl: float = NOT_FOUND_TTL,
        clock: Callable[[], float] = time.time,
        stale_intent_after: float = STALE_INTENT_AFTER,
    ) -> None:
        if found_ttl < 0 or not_found_ttl < 0 or stale_intent_after < 0:
            raise ValueError("TTLs and stale_intent_after must be >= 0 seconds")
        raw = os.fspath(path) if path is not None else os.environ.get(CACHE_ENV, "").strip()
        self.path: Path = file_path(raw) if raw else default_cache_path()
        refuse_network_share(raw or str(self.path), self.path)
        self.found_ttl = float(found_ttl)
        self.not_found_ttl = float(not_found_ttl)
        self.stale_intent_after = float(stale_intent_after)
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. The store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._disconnect()

    # -- connection ---------------------------------------------------------------------------

    def _disconnect(self) -> None:
        conn, self._conn, self._file_id = self._conn, None, None
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _stat_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"The lead_finder cache {self.path} was closed; open a new Store.")
        if self._conn is not None:
            if self._pid != os.getpid():
                # A connection must not cross fork(); drop it without closing the parent's handle.
                self._conn, self._file_id, self._pid = None, None, os.getpid()
            elif self._stat_id() != self._file_id:
                # Another process moved a corrupt file aside (or someone deleted it): follow the
                # path, or our writes would land in the renamed file.
                self._disconnect()
            else:
                return self._conn
        for attempt in range(2):
            try:
                self._conn = self._open()
                return self._conn
            except sqlite3.Error as exc:
                if attempt == 0 and _is_corruption(exc):
                    self._quarantine(exc)
                    continue
                raise self._error(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Create the file ourselves so it is 0600 from the first byte, whatever the umask.
            # O_EXCL: never open (and close) a descriptor on an existing file. Closing any
            # descriptor drops every POSIX lock this process holds on the file, including those
            # of other Stores' SQLite connections; another process can then think it is the last
            # user and delete the WAL under us (lost writes, two claims of the same key). The
            # lock keeps this process's other Stores from opening the new file before it is
            # closed again.
            with _CREATE_LOCK:
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"Cannot create the lead_finder cache {self.path}: {exc}") from exc
        # Folders we created, and our own data dir, are 0700; never tighten a folder the user chose.
        for created in missing:
            ensure_private(created, 0o700)
        if folder == Path(platformdirs.user_data_dir("lead_finder")):
            ensure_private(folder, 0o700)
        ensure_private(self.path, 0o600)
        self._file_id = self._stat_id()
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            journal = _enable_wal(conn)
            if journal.lower() != "wal":
                log.warning("SQLite refused WAL mode for %s (got %s)", self.path, journal)
            # FULL: a committed intent or task id must survive a power cut, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        for suffix in SIDE_FILES:
            ensure_private(Path(f"{self.path}{suffix}"), 0o600)
        return conn

    def _quarantine(self, exc: sqlite3.Error) -> None:
        """Move a corrupt file (and its -wal/-shm) aside so a fresh one can be built."""
        corrupt_id = self._file_id
        self._disconnect()
        if corrupt_id is not None and self._stat_id() != corrupt_id:
            return  # another process already replaced it; just reconnect
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = Path(f"{self.path}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = Path(f"{self.path}.corrupt-{stamp}-{n}")
            n += 1
        # Side files first: once the main file is gone, another process may start a new one at
        # this path, and its fresh -wal must not be taken. A -wal left behind by the broken
        # connection must never be replayed into the new file either.
        for suffix in SIDE_FILES:
            try:
                os.rename(f"{self.path}{suffix}", f"{target}{suffix}")
            except OSError:
                pass
        try:
            os.rename(self.path, target)
        except FileNotFoundError:
            return  # another process moved it first
        except OSError as err:
            raise StoreError(
                f"The lead_finder cache {self.path} is corrupt ({exc}) and could not be moved "
                f"aside ({err}). Close other programs using it, or delete it."
            ) from err
        log.warning(
            "The lead_finder cache %s was corrupt (%s); moved it to %s and started a new one.",
            self.path, exc, target.name,
        )

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"The lead_finder cache {self.path} stayed locked by another process for more "
                f"than {BUSY_TIMEOUT_MS // 1000} s ({text}). Try again; if it persists, look for "
                f"a hung lead_finder process."
            )
        return StoreError(f"The lead_finder cache {self.path} failed: {text}")

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run `fn` on the connection under the lock; a write runs in one BEGIN IMMEDIATE.

        A corrupt file is moved aside and `fn` is run once more on the fresh file.
        """
        with self._lock:
            for attempt in range(2):
                conn = self._connection()
                try:
                    if not write:
                        return fn(conn)
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        out = fn(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        _rollback(conn)
                        raise
                    return out
                except sqlite3.Error as exc:
                    if attempt == 0 and _is_corruption(exc):
                        self._quarantine(exc)
                        continue
                    raise self._error(exc) from exc
            raise AssertionError("unreachable")  # pragma: no cover

    # -- results ------------------------------------------------------------------------------

    def get(self, key: str) -> Result | None:
        """The cached result for `key`, or None when there is none or it has expired."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Result]:
        """The fresh cached results among `keys`, by key (missing and expired keys are absent)."""
        wanted = _unique(keys)
        now = self._clock()
        return self._run(lambda conn: _fresh(conn, wanted, now)) if wanted else {}

    def found(self, *, limit: int = 5000) -> list[Result]:
        """The newest fresh cached results that found an address (at most `limit`)."""
        now = self._clock()
        rows = self._run(lambda conn: conn.execute(
            "SELECT data FROM results WHERE found = 1 AND expires > ?"
            " ORDER BY fetched DESC LIMIT ?", (now, limit)).fetchall())
        return [decode_result(data) for (data,) in rows]

    def put_many(self, results: Iterable[Result]) -> int:
        """Cache finished results; return how many were written.

        Results without a key, with an error, pending, or themselves from the cache are skipped.
        """
        rows = self._result_rows(results)
        if not rows:
            return 0
        return self._run(lambda conn: self._write_results(conn, rows), write=True)

    def _result_rows(self, results: Iterable[Result]) -> list[_ResultRow]:
        now = self._clock()
        rows: dict[str, _ResultRow] = {}
        for result in results:
            if not cacheable(result) or result.key is None:
                continue
            found = result.status in (Status.OK, Status.UNKNOWN)
            ttl = self.found_ttl if found else self.not_found_ttl
            rows[result.key] = (
                result.key, result.mode.value, int(found), encode_result(result), now, now + ttl,
            )
        return list(rows.values())

    @staticmethod
    def _write_results(conn: sqlite3.Connection, rows: Sequence[_ResultRow]) -> int:
        conn.executemany(
            """INSERT INTO results (key, mode, found, data, fetched, expires)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(key) DO UPDATE SET mode = excluded.mode, found = excluded.found,
                   data = excluded.data, fetched = excluded.fetched, expires = excluded.expires""",
            rows,
        )
        return len(rows)

    # -- ledger -------------------------------------------------------------------------------

    def claim(
        self,
        *,
        keys: Sequence[str],
        leads: Sequence[Mapping[str, Any]],
        mode: Mode,
        options: Mapping[str, Any],
        price_cents: int | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> Claim:
        """Decide, in one write transaction, which of `keys` this caller may send, and record it.

        Keys with a fresh cached result come back in `cached`; keys in an open job of any process
        in `held` (key -> job id: wait for that job, do not send); keys whose last request is
        ambiguous (it may have been charged) in `ambiguous`; of the rest, the first `limit`
        (all when None) become one new `intent` job, and the others come back in `over_budget`.
        `leads[i]` is the API lead dict for `keys[i]`. Because the check and the intent are one
        transaction, two processes claiming the same key cannot both get it.
        """
        _check_pairs(keys, leads)
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        mode = Mode(mode)
        price = PRICE_CENTS[mode] if price_cents is None else int(price_cents)
        by_key = dict(zip(keys, leads, strict=True))  # a repeated key keeps its last lead ...
        order = _unique(keys)  # ... and its first position
        now = self._clock()
        cutoff = now - self.stale_intent_after

        def write(conn: sqlite3.Connection) -> Claim:
            cached = _fresh(conn, order, now)
            held = _in_flight(conn, [k for k in order if k not in cached], cutoff)
            blocked = _ambiguous(conn, [k for k in order if k not in cached and k not in held])
            free = [k for k in order if k not in cached and k not in held and k not in blocked]
            take = free if limit is None else free[:limit]
            job: LedgerJob | None = None
            if take:
                job = _insert_job(
                    conn, keys=take, leads=[by_key[k] for k in take], mode=mode,
                    options=options, estimated_cents=price * len(take), run_id=run_id, now=now,
                )
            return Claim(job=job, cached=cached, held=held, over_budget=tuple(free[len(take):]),
                         ambiguous=blocked)

        return self._run(write, write=True)

    def record_intent(
        self,
        *,
        keys: Sequence[str],
        leads: Sequence[Mapping[str, Any]],
        mode: Mode,
        options: Mapping[str, Any],
        estimated_cents: int,
        run_id: str | None = None,
    ) -> str:
        """Commit the intent to send a request, before sending it; return the new job id.

        `leads` are the exact lead dicts the request will carry (with their `lead_finder_ref`).
        """
        if not keys:
            raise ValueError("a ledger job needs at least one key")
        _check_pairs(keys, leads)
        if estimated_cents < 0:
            raise ValueError("estimated_cents must be >= 0")
        now = self._clock()
        job = self._run(
            lambda conn: _insert_job(
                conn, keys=keys, leads=leads, mode=Mode(mode), options=options,
                estimated_cents=estimated_cents, run_id=run_id, now=now,
            ),
            write=True,
        )
        return job.id

    def _transition(
        self, job_id: str, target: JobState, *, task_id: str | None = None,
        error: str | None = None,
    ) -> bool:
        sources = sorted(state.value for state in ALLOWED_FROM[target])
        marks = ",".join("?" * len(sources))
        now = self._clock()

        def write(conn: sqlite3.Connection) -> bool:
            # The state test is in the UPDATE itself: the write lock makes check-and-set atomic
            # across processes.
            cur = conn.execute(
                f"""UPDATE jobs SET state = ?, updated = ?,
                        task_id = COALESCE(?, task_id), error = COALESCE(?, error)
                    WHERE id = ? AND state IN ({marks})""",
                (target.value, now, task_id, error, job_id, *sources),
            )
            if cur.rowcount:
                return True
            known = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if known is None:
                log.warning("Ledger job %s is unknown; cannot mark it %s", job_id, target.value)
            return False

        return self._run(write, write=True)

    def mark_submitted(self, job_id: str, task_id: str) -> bool:
        """Record the server's task id (only from `intent`); True if this call recorded it."""
        if not task_id:
            raise ValueError("task_id is empty")
        return self._transition(job_id, JobState.SUBMITTED, task_id=task_id)

    def complete(
        self, job_id: str, results: Sequence[Result], charge_cents: int | None = None
    ) -> bool:
        """Finish a job in ONE transaction: cache its results, close the ledger row, record spend.

        The spend is `charge_cents` (the job's charge_amount) when given, else the results'
        cost_cents, else the price table per lead sent. Returns False, writing nothing, when the
        job is already final (another process completed it first). A job missing from the ledger
        (e.g. after a corrupt file was rebuilt) still gets its results cached and spend recorded:
        a paid result is never dropped.
        """
        results = list(results)
        rows = self._result_rows(results)
        now = self._clock()
        day = self._day(now)
        allowed = {state.value for state in ALLOWED_FROM[JobState.COMPLETED]}

        def write(conn: sqlite3.Connection) -> bool:
            job = conn.execute(
                "SELECT state, mode, leads, keys, run_id FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if job is None:
                log.warning(
                    "Ledger job %s is unknown; caching its %d results anyway", job_id, len(results)
                )
                mode = results[0].mode if results else Mode.PROFESSIONAL
                cents = job_charge(mode, len(results), results, charge_cents)
                self._write_results(conn, rows)
                self._insert_spend(conn, now, day, cents, None, job_id)
                return True
            state, mode_text, leads, keys, run_id = job
            if state not in allowed:
                return False
            lead_count = len(json.loads(leads)) or len(json.loads(keys))
            cents = job_charge(Mode(mode_text), lead_count, results, charge_cents)
            self._write_results(conn, rows)
            conn.execute(
                "UPDATE jobs SET state = ?, charge_cents = ?, updated = ?, error = NULL "
                "WHERE id = ?",
                (JobState.COMPLETED.value, cents, now, job_id),
            )
            self._insert_spend(conn, now, day, cents, run_id, job_id)
            return True

        return self._run(write, write=True)

    def mark_ambiguous(self, job_id: str, reason: str) -> bool:
        """The POST's answer was lost: it may be billed and must not be resent on its own."""
        return self._transition(job_id, JobState.AMBIGUOUS, error=reason)

    def mark_failed(self, job_id: str, reason: str) -> bool:
        """The job ended without results."""
        return self._transition(job_id, JobState.FAILED, error=reason)

    def mark_expired(self, job_id: str, reason: str) -> bool:
        """The server no longer knows the job's task id."""
        return self._transition(job_id, JobState.EXPIRED, error=reason)

    def job(self, job_id: str) -> LedgerJob | None:
        """The ledger job `job_id`, or None."""
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        )
        return None if row is None else _job(row)

    def jobs(self, states: Collection[str] | None = None) -> list[LedgerJob]:
        """Ledger jobs, newest first; only those in `states` when given."""
        if states is not None:
            wanted = sorted({JobState(s).value for s in states})
            if not wanted:
                return []
            where = f"WHERE state IN ({','.join('?' * len(wanted))})"
        else:
            wanted, where = [], ""
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY created DESC, rowid DESC",
                wanted,
            ).fetchall()
        )
        return [_job(row) for row in rows]

    def open_jobs(self) -> list[LedgerJob]:
        """Jobs in `intent` or `submitted`, newest first: what a resume looks at."""
        return self.jobs(OPEN_STATES)

    def in_flight(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """Key -> job id for keys in open jobs of any process (all keys when `keys` is None).

        An intent older than `stale_intent_after` is a crash before submit and does not count.
        """
        cutoff = self._clock() - self.stale_intent_after
        wanted = _unique(keys) if keys is not None else None
        if wanted is not None and not wanted:
            return {}
        return self._run(lambda conn: _in_flight(conn, wanted, cutoff))

    # -- spend --------------------------------------------------------------------------------

    def _day(self, when: float) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(when))

    @staticmethod
    def _insert_spend(
        conn: sqlite3.Connection, at: float, day: str, cents: int, run_id: str | None,
        job_id: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO spend (at, day, cents, run_id, job_id) VALUES (?, ?, ?, ?, ?)",
            (at, day, int(cents), run_id, job_id),
        )

    def record_spend(
        self, cents: int, *, run_id: str | None = None, job_id: str | None = None
    ) -> None:
        """Record money spent outside `complete()` (e.g. a synchronous single lookup)."""
        if cents < 0:
            raise ValueError("cents must be >= 0")
        now = self._clock()
        day = self._day(now)
        self._run(
            lambda conn: self._insert_spend(conn, now, day, cents, run_id, job_id), write=True
        )

    def spent_today(self) -> int:
        """Cents spent on the local calendar day of the store's clock, by every process."""
        day = self._day(self._clock())
        return self._run(
            lambda conn: int(
                conn.execute("SELECT COALESCE(SUM(cents), 0) FROM spend WHERE day = ?", (day,))
                .fetchone()[0]
            )
        )

    def at_risk_cents(self, *, run_id: str | None = None, today: bool = False) -> int:
        """What ambiguous jobs may have cost (their estimate): of one run, or created today.

        Their answers were lost, so no charge was recorded; budgets count them as spent.
        """
        day = self._day(self._clock())
        return sum(
            job.estimated_cents for job in self.jobs({JobState.AMBIGUOUS})
            if (run_id is None or job.run_id == run_id)
            and (not today or self._day(job.created) == day)
        )

    def spent_in_run(self, run_id: str) -> int:
        """Cents spent under `run_id`."""
        return self._run(
            lambda conn: int(
                conn.execute(
                    "SELECT COALESCE(SUM(cents), 0) FROM spend WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
            )
        )

    # -- housekeeping -------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Counts of results and jobs, spend today and in total, file size."""
        now = self._clock()
        day = self._day(now)

        def read(conn: sqlite3.Connection) -> StoreStats:
            found, not_found, expired = conn.execute(
                """SELECT COALESCE(SUM(expires > ? AND found = 1), 0),
                          COALESCE(SUM(expires > ? AND found = 0), 0),
                          COALESCE(SUM(expires <= ?), 0) FROM results""",
                (now, now, now),
            ).fetchone()
            jobs = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
            today, total = conn.execute(
                "SELECT COALESCE(SUM(CASE WHEN day = ? THEN cents END), 0), "
                "COALESCE(SUM(cents), 0) FROM spend",
                (day,),
            ).fetchone()
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            return StoreStats(
                path=self.path,
                size_bytes=self._size(),
                results_found=int(found),
                results_not_found=int(not_found),
                results_expired=int(expired),
                jobs=jobs,
                spent_today_cents=int(today),
                spent_total_cents=int(total),
                schema_version=version,
            )

        return self._run(read)

    def _size(self) -> int:
        total = 0
        for name in (str(self.path), *(f"{self.path}{s}" for s in SIDE_FILES)):
            try:
                total += os.path.getsize(name)
            except OSError:
                pass
        return total

    def clear(self, *, expired_only: bool = False) -> int:
        """Delete cached results (only expired ones with `expired_only`); return how many.

        The ledger and the spend record are kept: open jobs must stay resumable.
        """
        if expired_only:
            return self.purge_expired()
        return self._run(lambda conn: conn.execute("DELETE FROM results").rowcount, write=True)

    def purge_expired(self) -> int:
        """Delete expired results; return how many."""
        now = self._clock()
        return self._run(
            lambda conn: conn.execute("DELETE FROM results WHERE expires <= ?", (now,)).rowcount,
            write=True,
        )

    def purge_finished_jobs(self, *, older_than: float = JOB_RETENTION) -> int:
        """Delete ledger rows of completed, failed and expired jobs last changed more than
        `older_than` seconds ago; return how many. Open and ambiguous jobs are always kept (one
        may still produce results, the other may have been charged); spend records stay."""
        cutoff = self._clock() - older_than
        finished = tuple(state.value for state in FINAL_STATES)
        marks = ",".join("?" * len(finished))

        def write(conn: sqlite3.Connection) -> int:
            old = f"SELECT id FROM jobs WHERE state IN ({marks}) AND updated < ?"
            conn.execute(f"DELETE FROM job_keys WHERE job_id IN ({old})", (*finished, cutoff))
            return int(conn.execute(f"DELETE FROM jobs WHERE id IN ({old})",
                                    (*finished, cutoff)).rowcount)

        return self._run(write, write=True)

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check` verdict: "ok" when the file is sound."""
        rows = self._run(lambda conn: conn.execute("PRAGMA integrity_check").fetchall())
        return "\n".join(str(row[0]) for row in rows)
