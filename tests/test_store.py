"""The SQLite store: real files under tmp_path, injected clocks, real threads and processes."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lead_finder.cachefile as cachefile
from lead_finder.errors import StoreError
from lead_finder.models import PRICE_CENTS, Email, Mode, Result, Source
from lead_finder.store import (
    FOUND_TTL,
    NOT_FOUND_TTL,
    SCHEMA_VERSION,
    JobState,
    Store,
    can_transition,
    default_cache_path,
    network_fs_type,
)

DAY = 86400.0
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store(tmp_path / "cache.sqlite3", clock=clock) as s:
        yield s


def found(key: str, *, cost: int | None = 5, mode: Mode = Mode.PROFESSIONAL) -> Result:
    return Result(
        lead={"name": "Jane Doe", "company": "Acme"},
        mode=mode,
        emails=(Email(f"{key}@acme.com", "OK", "COMPANY"),),
        cost_cents=cost,
        key=key,
    )


def not_found(key: str) -> Result:
    return Result(lead={"name": "Nobody"}, emails=(Email("", "NOT_FOUND", "COMPANY"),), key=key)


def intent(store: Store, keys: list[str], *, run_id: str | None = None,
           mode: Mode = Mode.PROFESSIONAL) -> str:
    return store.record_intent(
        keys=keys,
        leads=[{"name": k, "lead_finder_ref": str(i)} for i, k in enumerate(keys)],
        mode=mode,
        options={"verify_emails": True},
        estimated_cents=PRICE_CENTS[mode] * len(keys),
        run_id=run_id,
    )


# -- paths --------------------------------------------------------------------------------------


def test_default_path_from_env_then_platformdirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAD_FINDER_CACHE", str(tmp_path / "x.sqlite3"))
    assert default_cache_path() == tmp_path / "x.sqlite3"
    monkeypatch.setenv("LEAD_FINDER_CACHE", str(tmp_path))  # a directory: the file goes inside
    assert default_cache_path() == tmp_path / "cache.sqlite3"
    monkeypatch.delenv("LEAD_FINDER_CACHE")
    if sys.platform.startswith("linux"):  # platformdirs follows XDG only on Linux
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        assert default_cache_path() == tmp_path / "data" / "lead_finder" / "cache.sqlite3"
    else:
        assert default_cache_path().name == "cache.sqlite3"


def test_argument_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAD_FINDER_CACHE", str(tmp_path / "env.sqlite3"))
    with Store(tmp_path / "arg.sqlite3") as s:
        assert s.path == tmp_path / "arg.sqlite3"
    with Store() as s:
        assert s.path == tmp_path / "env.sqlite3"


# -- results and TTLs ---------------------------------------------------------------------------


def test_round_trip_marks_cache_and_keeps_cost(store: Store) -> None:
    original = Result(
        lead={"name": "Jane Doe", "company": "Acme"},
        mode=Mode.PERSONAL,
        emails=(Email("jane@acme.com", "UNKNOWN", "COMPANY"),),
        personal_emails=(Email("jane@gmail.com", "OK", "PERSONAL"),),
        cost_cents=20,
        key="k1",
        extra={"title": "CEO"},
        ref="7",
    )
    assert store.put_many([original]) == 1
    got = store.get("k1")
    assert got is not None
    assert got.source is Source.CACHE
    assert got.cost_cents == 20
    assert got.email == "jane@gmail.com"
    assert (got.lead, got.mode, got.emails, got.personal_emails, got.extra) == (
        original.lead, original.mode, original.emails, original.personal_emails, original.extra,
    )
    assert got.ref is None  # the join key belongs to one request, not to the cache


def test_found_kept_90_days_not_found_30(store: Store, clock: Clock) -> None:
    assert (FOUND_TTL, NOT_FOUND_TTL) == (90 * DAY, 30 * DAY)
    store.put_many([found("hit"), not_found("miss")])
    clock.now += 30 * DAY - 1
    assert set(store.get_many(["hit", "miss"])) == {"hit", "miss"}
    clock.now += 1
    assert store.get("miss") is None
    assert store.get("hit") is not None
    clock.now += 60 * DAY - 1
    assert store.get("hit") is not None
    clock.now += 1
    assert store.get("hit") is None


def test_ttls_are_configurable(tmp_path: Path, clock: Clock) -> None:
    with Store(tmp_path / "c.sqlite3", found_ttl=100, not_found_ttl=10, clock=clock) as s:
        s.put_many([found("hit"), not_found("miss")])
        clock.now += 10
        assert s.get("miss") is None and s.get("hit") is not None
        clock.now += 90
        assert s.get("hit") is None


def test_errors_and_pending_are_never_cached(store: Store) -> None:
    skipped = [
        Result.failed({"name": "x"}, "API said 500", key="err5xx"),
        Result(lead={}, key="err4xx", error="400: bad request"),
        Result(lead={}, key="pending", pending=True),
        Result(lead={}, key=None, emails=(Email("a@b.c", "OK", "COMPANY"),)),
        found("again").with_source(Source.CACHE),  # re-caching a hit would extend its life
    ]
    assert store.put_many(skipped) == 0
    assert store.get_many(["err5xx", "err4xx", "pending", "again"]) == {}
    assert store.stats().results_fresh == 0


def test_get_many_chunks_large_key_sets(store: Store) -> None:
    keys = [f"k{i}" for i in range(1300)]
    assert store.put_many(found(k) for k in keys) == 1300
    got = store.get_many([*keys, "absent", "k1"])
    assert set(got) == set(keys)
    assert store.get_many([]) == {}


def test_put_overwrites_with_newer_answer(store: Store, clock: Clock) -> None:
    store.put_many([not_found("k")])
    clock.now += 29 * DAY
    store.put_many([found("k")])
    clock.now += 60 * DAY  # fresh again from the second put, with the found TTL
    got = store.get("k")
    assert got is not None and got.email == "k@acme.com"


# -- ledger -------------------------------------------------------------------------------------


def test_transition_table() -> None:
    assert can_transition("intent", "submitted")
    assert not can_transition("submitted", "submitted")
    assert not can_transition("ambiguous", "submitted")
    assert can_transition("intent", "completed")  # synchronous answers have no task id
    assert can_transition("ambiguous", "completed")
    for final in ("completed", "failed", "expired"):
        for target in JobState:
            assert not can_transition(final, target)
    assert not can_transition("intent", "nonsense")


def test_ledger_happy_path(store: Store, clock: Clock) -> None:
    job_id = intent(store, ["a", "b"], run_id="run1")
    job = store.job(job_id)
    assert job is not None
    assert (job.state, job.task_id, job.keys, job.run_id) == ("intent", None, ("a", "b"), "run1")
    assert job.leads[1] == {"name": "b", "lead_finder_ref": "1"}
    assert job.options == {"verify_emails": True} and job.estimated_cents == 10
    clock.now += 5
    assert store.mark_submitted(job_id, "task-1")
    job = store.job(job_id)
    assert job is not None and job.state == "submitted" and job.task_id == "task-1"
    assert job.updated == job.created + 5
    assert store.complete(job_id, [found("a", cost=3), not_found("b")], charge_cents=None)
    job = store.job(job_id)
    assert job is not None and job.state == JobState.COMPLETED and job.charge_cents == 8
    assert not job.is_open
    assert set(store.get_many(["a", "b"])) == {"a", "b"}
    assert store.spent_in_run("run1") == 8


def test_ledger_guards(store: Store) -> None:
    job_id = intent(store, ["a"])
    assert store.mark_submitted(job_id, "t1")
    assert not store.mark_submitted(job_id, "t2")  # only from intent
    assert store.complete(job_id, [found("a")], 5)
    assert not store.complete(job_id, [found("a")], 5)  # a racing resumer writes nothing
    assert not store.mark_failed(job_id, "late")
    assert not store.mark_expired(job_id, "late")
    assert not store.mark_ambiguous(job_id, "late")
    job = store.job(job_id)
    assert job is not None and job.state == "completed" and job.task_id == "t1"
    assert store.stats().spent_total_cents == 5  # spend recorded once

    lost = intent(store, ["b"])
    assert store.mark_ambiguous(lost, "read timeout after POST")
    assert not store.mark_submitted(lost, "t3")
    job = store.job(lost)
    assert job is not None and job.state == "ambiguous" and job.error == "read timeout after POST"
    assert store.complete(lost, [found("b")], None)  # its results turned up after all
    job = store.job(lost)
    assert job is not None and job.state == "completed" and job.error is None

    for mark in (store.mark_failed, store.mark_expired):
        job_id = intent(store, ["c"])
        assert mark(job_id, "why")
        assert not store.complete(job_id, [found("c")], 5)
    assert store.get("c") is None
    assert not store.mark_submitted("no-such-job", "t")
    assert store.job("no-such-job") is None


def test_jobs_newest_first_and_filtered(store: Store, clock: Clock) -> None:
    ids = []
    for key in "abcd":
        ids.append(intent(store, [key]))
        clock.now += 1
    store.mark_submitted(ids[1], "t")
    store.mark_failed(ids[2], "boom")
    assert [j.id for j in store.jobs()] == ids[::-1]
    assert [j.id for j in store.open_jobs()] == [ids[3], ids[1], ids[0]]
    assert [j.id for j in store.jobs({"failed"})] == [ids[2]]
    assert store.jobs(()) == []
    assert store.stats().jobs == {"intent": 2, "submitted": 1, "failed": 1}


def test_record_intent_checks_its_input(store: Store) -> None:
    with pytest.raises(ValueError):
        store.record_intent(keys=[], leads=[], mode=Mode.PROFESSIONAL, options={},
                            estimated_cents=0)
    with pytest.raises(ValueError):
        store.record_intent(keys=["a", "b"], leads=[{}], mode=Mode.PROFESSIONAL, options={},
                            estimated_cents=0)


@pytest.mark.parametrize("failure", ["sqlite", "python"])
def test_complete_is_one_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    job_id = intent(store, ["a", "b"], run_id="r")
    store.mark_submitted(job_id, "t")
    store.stats()  # schema exists
    if failure == "sqlite":
        # A real database failure on the last write of the transaction (spend comes last).
        raw = sqlite3.connect(store.path)
        raw.execute(
            "CREATE TRIGGER no_spend BEFORE INSERT ON spend "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        raw.commit()
        raw.close()
        expected: type[BaseException] = StoreError
    else:
        def boom(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("crash mid-transaction")

        monkeypatch.setattr(Store, "_insert_spend", staticmethod(boom))
        expected = RuntimeError
    with pytest.raises(expected):
        store.complete(job_id, [found("a"), found("b")], 10)
    assert store.get_many(["a", "b"]) == {}
    job = store.job(job_id)
    assert job is not None and job.state == "submitted" and job.charge_cents is None
    assert store.spent_in_run("r") == 0
    # Once the failure is gone, the same call goes through.
    if failure == "sqlite":
        raw = sqlite3.connect(store.path)
        raw.execute("DROP TRIGGER no_spend")
        raw.commit()
        raw.close()
    else:
        monkeypatch.undo()
    assert store.complete(job_id, [found("a"), found("b")], 10)
    assert store.spent_in_run("r") == 10 and len(store.get_many(["a", "b"])) == 2


def test_complete_on_unknown_job_keeps_paid_results(store: Store) -> None:
    # e.g. the ledger row was lost when a corrupt file was rebuilt mid-job
    assert store.complete("gone", [found("a", cost=4)], None)
    assert store.get("a") is not None
    assert store.spent_today() == 4


# -- in flight and claims -----------------------------------------------------------------------


def test_in_flight_seen_from_another_store(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "shared.sqlite3"
    with Store(path, clock=clock) as a, Store(path, clock=clock) as b:
        first = intent(a, ["k1", "k2"])
        assert b.in_flight(["k1", "k3"]) == {"k1": first}
        a.mark_submitted(first, "t")
        clock.now += 1
        second = intent(a, ["k2", "k4"])
        assert b.in_flight() == {"k1": first, "k2": second, "k4": second}  # newest job wins
        a.complete(first, [found("k1")], None)
        a.mark_failed(second, "no")
        assert b.in_flight(["k1", "k2", "k4"]) == {}
        assert b.in_flight([]) == {}


def test_stale_intent_is_not_in_flight(tmp_path: Path, clock: Clock) -> None:
    with Store(tmp_path / "c.sqlite3", clock=clock, stale_intent_after=60) as s:
        crashed = intent(s, ["a"])
        sent = intent(s, ["b"])
        s.mark_submitted(sent, "t")
        clock.now += 60
        assert s.in_flight() == {"a": crashed, "b": sent}
        clock.now += 1
        assert s.in_flight() == {"b": sent}  # a submitted job stays in flight until it ends
        assert {j.id for j in s.open_jobs()} == {crashed, sent}  # still there to be resumed


def test_claim_splits_cached_held_budget_and_new(store: Store) -> None:
    store.put_many([found("cached")])
    other = intent(store, ["held"])
    keys = ["cached", "held", "n1", "n2", "n3", "n1"]
    leads = [{"name": k, "lead_finder_ref": str(i)} for i, k in enumerate(keys)]
    claim = store.claim(
        keys=keys, leads=leads, mode=Mode.PERSONAL, options={"pid": 1}, run_id="r", limit=2
    )
    assert set(claim.cached) == {"cached"} and claim.cached["cached"].source is Source.CACHE
    assert claim.held == {"held": other}
    assert claim.over_budget == ("n3",)
    job = claim.job
    assert job is not None and job.keys == ("n1", "n2") and job.state == "intent"
    assert [lead["name"] for lead in job.leads] == ["n1", "n2"]
    assert job.estimated_cents == 2 * PRICE_CENTS[Mode.PERSONAL]
    assert store.job(job.id) == job
    # A second claim for the same keys gets nothing new to send.
    again = store.claim(keys=keys, leads=leads, mode=Mode.PERSONAL, options={})
    assert again.job is not None and again.job.keys == ("n3",)
    assert set(again.held) == {"held", "n1", "n2"}
    nothing = store.claim(keys=["n1"], leads=[{}], mode=Mode.PERSONAL, options={}, limit=0)
    assert nothing.job is None and nothing.held == {"n1": job.id}


def test_spend_price_table_when_api_reports_nothing(store: Store) -> None:
    job_id = intent(store, ["a", "b", "c"], mode=Mode.PERSONAL, run_id="r")
    unpriced = [
        Result(lead={}, mode=Mode.PERSONAL, key=k, personal_emails=(Email("x@y.z", "OK", "P"),))
        for k in ("a", "b")
    ]
    store.complete(job_id, unpriced, None)  # 3 leads sent, 2 answered: all 3 at list price
    assert store.spent_in_run("r") == 3 * PRICE_CENTS[Mode.PERSONAL]
    other = intent(store, ["d", "e"], run_id="r2")
    store.complete(other, [found("d", cost=2), found("e", cost=None)], None)
    assert store.spent_in_run("r2") == 2 + PRICE_CENTS[Mode.PROFESSIONAL]
    charged = intent(store, ["f"], run_id="r3")
    store.complete(charged, [found("f", cost=99)], 7)  # the job's charge_amount wins
    assert store.spent_in_run("r3") == 7


def test_spend_per_run_and_local_day(tmp_path: Path) -> None:
    late = time.mktime((2025, 3, 10, 23, 30, 0, 0, 0, -1))
    early = time.mktime((2025, 3, 11, 0, 30, 0, 0, 0, -1))
    clock = Clock(late)
    with Store(tmp_path / "c.sqlite3", clock=clock) as s:
        s.record_spend(5, run_id="r1")
        s.record_spend(20, run_id="r2", job_id="j")
        assert s.spent_today() == 25
        clock.now = early
        assert s.spent_today() == 0
        s.record_spend(5, run_id="r1")
        assert s.spent_today() == 5
        assert (s.spent_in_run("r1"), s.spent_in_run("r2"), s.spent_in_run("r3")) == (10, 20, 0)
        stats = s.stats()
        assert (stats.spent_today_cents, stats.spent_total_cents) == (5, 30)
        with pytest.raises(ValueError):
            s.record_spend(-1)


# -- housekeeping -------------------------------------------------------------------------------


def test_stats_clear_and_purge(store: Store, clock: Clock) -> None:
    store.put_many([found("a"), found("b"), not_found("c")])
    job_id = intent(store, ["z"])
    clock.now += 31 * DAY
    stats = store.stats()
    assert (stats.results_found, stats.results_not_found, stats.results_expired) == (2, 0, 1)
    assert stats.size_bytes > 0 and stats.path == store.path
    assert stats.schema_version == SCHEMA_VERSION
    assert store.clear(expired_only=True) == 1
    assert store.purge_expired() == 0
    assert store.clear() == 2
    assert store.get("a") is None
    job = store.job(job_id)
    assert job is not None and job.state == "intent"  # the ledger survives a cache clear


def test_schema_version_and_integrity(store: Store) -> None:
    store.put_many([found("a")])
    assert store.integrity_check() == "ok"
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_newer_schema_is_refused_not_destroyed(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with Store(path) as s, pytest.raises(StoreError, match="newer lead_finder"):
        s.get("a")
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))


def test_closed_store_says_so(tmp_path: Path) -> None:
    s = Store(tmp_path / "c.sqlite3")
    s.put_many([found("a")])
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get("a")
    assert "c.sqlite3" in repr(s)


def test_follows_a_file_replaced_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with Store(path) as s:
        s.put_many([found("a")])
        os.rename(path, tmp_path / "elsewhere.sqlite3")  # as a quarantine in another process
        assert s.get("a") is None  # reads the new file, not the one moved away
        s.put_many([found("b")])
    with Store(path) as fresh:
        assert fresh.get("b") is not None


# -- files: permissions, network shares, corruption ---------------------------------------------


@posix_only
def test_permissions_private_whatever_the_umask(tmp_path: Path) -> None:
    users_folder = stat.S_IMODE(tmp_path.stat().st_mode)
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "nested" / "cache.sqlite3"
        with Store(path) as s:
            s.put_many([found("a")])
            for folder in (path.parent, path.parent.parent):
                assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
                assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE(tmp_path.stat().st_mode) == users_folder  # the user's folder: untouched
        loose = tmp_path / "loose.sqlite3"
        loose.touch(mode=0o644)
        os.chmod(loose, 0o644)
        with Store(loose) as s:
            s.get("a")
        assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_network_fs_type_from_mount_table() -> None:
    table = textwrap.dedent(
        """\
        /dev/vda1 / ext4 rw 0 0
        server:/export /mnt/team nfs4 rw 0 0
        //nas/share /mnt/team/local\\040disk ext4 rw 0 0
        host:/ /mnt/ssh fuse.sshfs rw 0 0
        drvfs /mnt/c 9p rw 0 0
        """
    )
    assert network_fs_type("/mnt/team/cache.sqlite3", table) == "nfs4"
    assert network_fs_type("/mnt/team/local disk/cache.sqlite3", table) is None
    assert network_fs_type("/mnt/teamwork/cache.sqlite3", table) is None
    assert network_fs_type("/mnt/ssh/x", table) == "fuse.sshfs"
    assert network_fs_type("/mnt/c/Users/me", table) == "9p"
    assert network_fs_type("/home/me", table) is None


def test_network_share_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    share = os.path.realpath(tmp_path / "share")
    table = f"/dev/vda1 / ext4 rw 0 0\nnas:/vol {share} cifs rw 0 0\n"
    monkeypatch.setattr(cachefile, "_read_mount_table", lambda: table)
    with pytest.raises(StoreError, match=r"network file system \(cifs\).*LEAD_FINDER_CACHE"):
        Store(tmp_path / "share" / "cache.sqlite3")
    assert not (tmp_path / "share").exists()
    with Store(tmp_path / "local" / "cache.sqlite3") as s:  # the same table, a local folder
        s.put_many([found("a")])


def test_unc_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for unc in (r"\\server\share\cache.sqlite3", "//server/share/cache.sqlite3",
                r"\\?\UNC\server\share\cache.sqlite3"):
        with pytest.raises(StoreError, match="UNC"):
            Store(unc)
    monkeypatch.setenv("LEAD_FINDER_CACHE", r"\\server\share\lead_finder")
    with pytest.raises(StoreError, match="UNC"):
        Store()
    assert list(tmp_path.iterdir()) == []


def test_garbage_file_is_moved_aside_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(os.urandom(64 * 1024))
    Path(f"{path}-wal").write_bytes(b"stale wal that must not be replayed")
    with caplog.at_level(logging.WARNING, logger="lead_finder.store"), Store(path) as s:
        assert s.get("anything") is None
        assert s.put_many([found("a")]) == 1
        assert s.get("a") is not None
        assert s.integrity_check() == "ok"
        # SQLite drops the stale -wal when the broken connection closes (or it is moved aside):
        # either way it is never replayed into the new file.
        assert b"stale wal" not in Path(f"{path}-wal").read_bytes()
    aside = [p.name for p in tmp_path.glob("cache.sqlite3.corrupt-*") if "-wal" not in p.name]
    assert len(aside) == 1
    assert "corrupt" in caplog.text


def test_malformed_pages_found_in_use_are_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite3"
    with Store(path) as s:
        s.put_many(found(f"k{i}") for i in range(300))
    raw = path.read_bytes()  # closed cleanly: everything is checkpointed into the main file
    assert len(raw) > 8 * 4096
    # Keep page 1 (header and schema) intact so opening works, and break every b-tree page.
    path.write_bytes(raw[:4096] + b"\xff" * (len(raw) - 4096))
    with caplog.at_level(logging.WARNING, logger="lead_finder.store"), Store(path) as s:
        assert s.get("k1") is None  # an answer (a miss), not a crash
        assert s.put_many([found("k1")]) == 1 and s.get("k1") is not None
    assert len(list(tmp_path.glob("cache.sqlite3.corrupt-*"))) == 1
    assert "malformed" in caplog.text


# -- concurrency --------------------------------------------------------------------------------


def test_32_threads_hammering_one_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    threads, rounds = 32, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    # Half the threads share one Store, half open their own: both must work.
    shared = Store(path)

    def work(n: int) -> None:
        s = shared if n % 2 else Store(path)
        try:
            start.wait()
            for i in range(rounds):
                key = f"t{n}-{i}"
                s.put_many([found(key)])
                assert s.get(key) is not None
                s.get_many([f"t{(n + 1) % threads}-{i}", key])
                s.record_spend(1, run_id=f"run{n}")
                # Every thread races for the same shared keys: each must be bought once.
                claim = s.claim(keys=[f"shared-{i}"], leads=[{"ref": "0"}],
                                mode=Mode.PROFESSIONAL, options={})
                if claim.job is not None:
                    s.mark_submitted(claim.job.id, f"task-{n}-{i}")
                    assert s.complete(claim.job.id, [found(f"shared-{i}")], 5)
                s.in_flight([key])
                s.spent_today()
        except Exception as exc:  # collected, asserted below
            errors.append(exc)
        finally:
            if s is not shared:
                s.close()

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    try:
        assert errors == []
        for n in range(threads):
            assert shared.spent_in_run(f"run{n}") == rounds
        jobs = shared.jobs()
        bought = sorted(k for j in jobs for k in j.keys)
        assert bought == sorted(f"shared-{i}" for i in range(rounds))  # each key once
        assert all(j.state == "completed" for j in jobs)
        mine = [f"t{n}-{i}" for n in range(threads) for i in range(rounds)]
        assert len(shared.get_many(mine)) == threads * rounds
        assert shared.integrity_check() == "ok"
    finally:
        shared.close()


WORKER = """
import os, sys, time
from pathlib import Path
from lead_finder.models import Email, Mode, Result
from lead_finder.store import Store

path, name, rounds, sync = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
with Store(path) as store:
    store.stats()
    (sync / f"ready-{name}").touch()
    while not (sync / "go").exists():
        time.sleep(0.005)
    for i in range(rounds):
        key = f"{name}-{i}"
        store.put_many([Result(lead={"i": i}, emails=(Email(key + "@x.com", "OK", "COMPANY"),),
                               key=key)])
        assert store.get(key) is not None
        store.record_spend(1, run_id=name)
        claim = store.claim(keys=[f"shared-{i}"], leads=[{"ref": "0"}], mode=Mode.PROFESSIONAL,
                            options={"pid": os.getpid()})
        if claim.job is not None:
            store.mark_submitted(claim.job.id, f"task-{name}-{i}")
            done = Result(lead={}, emails=(Email("s@x.com", "OK", "COMPANY"),), key=f"shared-{i}")
            assert store.complete(claim.job.id, [done], 5)
"""


def test_three_processes_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    sync = tmp_path / "sync"
    sync.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    rounds = 150
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), name, str(rounds), str(sync)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in ("p1", "p2")
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < 2:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        with Store(path) as s:
            (sync / "go").touch()
            # This process takes part too, as the third writer.
            for i in range(rounds):
                s.put_many([found(f"p0-{i}")])
                s.record_spend(1, run_id="p0")
                claim = s.claim(keys=[f"shared-{i}"], leads=[{"ref": "0"}],
                                mode=Mode.PROFESSIONAL, options={})
                if claim.job is not None:
                    s.mark_submitted(claim.job.id, f"task-p0-{i}")
                    s.complete(claim.job.id, [found(f"shared-{i}")], 5)
            outputs = [p.communicate(timeout=60) for p in procs]
            for p, (_out, err) in zip(procs, outputs, strict=True):
                assert p.returncode == 0, err
                assert "locked" not in err
            for name in ("p0", "p1", "p2"):
                assert s.spent_in_run(name) == rounds
                assert len(s.get_many(f"{name}-{i}" for i in range(rounds))) == rounds
            bought = sorted(k for j in s.jobs() for k in j.keys)
            assert bought == sorted(f"shared-{i}" for i in range(rounds))  # each key once
            assert all(j.state == "completed" for j in s.jobs())
            assert s.integrity_check() == "ok"
        raw = sqlite3.connect(path)
        try:
            writers = [row[0] for row in raw.execute("SELECT run_id FROM spend ORDER BY id")]
        finally:
            raw.close()
        switches = sum(a != b for a, b in zip(writers, writers[1:], strict=False))
        assert switches > 2, "the three writers never overlapped"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_old_finished_jobs_are_purged_open_and_ambiguous_ones_kept(
    store: Store, clock: Clock
) -> None:
    done = intent(store, ["a"], run_id="r")
    store.complete(done, [found("a")], charge_cents=5)
    failed = intent(store, ["b"])
    store.mark_failed(failed, "jobfail")
    lost = intent(store, ["c"])
    store.mark_ambiguous(lost, "answer lost")
    waiting = intent(store, ["d"])
    store.mark_submitted(waiting, "task-d")
    clock.now += 89 * DAY
    assert store.purge_finished_jobs() == 0  # not old enough yet
    clock.now += 2 * DAY
    assert store.purge_finished_jobs() == 2
    assert store.job(done) is None and store.job(failed) is None
    assert {j.id for j in store.jobs()} == {lost, waiting}
    assert store.in_flight(["d"]) == {"d": waiting}  # the open job's keys are intact
    assert store.claim(keys=["c"], leads=[{"name": "c"}], mode=Mode.PROFESSIONAL,
                       options={}).ambiguous == {"c": lost}
    assert store.spent_in_run("r") == 5  # spend is history: kept
    assert store.integrity_check() == "ok"
