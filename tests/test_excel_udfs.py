"""The classic xlwings UDFs driven the way Excel drives them, against our Sixtyfour-compatible
server on 127.0.0.1.

No Excel here: on Linux xlwings' decorators do nothing, so `FINDEMAIL` and friends are plain
functions. A recalculation is every formula cell called at once from a pool of worker threads of
xlwings' size (min(32, cpus + 4)); `caller` is what xlwings passes as the calling cell (only its
book name, sheet name and address are read). The "recalculate these cells" callback is recorded;
on Windows it re-enters the cells' formulas (tested at the end with an asyncio loop).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from excel_sim import Excel, Formula, Recalcs, XlCaller, default_sessions
from servers import live_server, serve_subprocess
from synthetic import synthetic_people, thousand_leads, write_directory

from lead_finder.excel import udfs
from lead_finder.excel.session import EXCEL_QUIET, ExcelSession
from lead_finder.excel.windows import CallerCell, FormulaReentry, caller_cell
from lead_finder.finder import LeadFinder
from lead_finder.server import DirectoryBackend

pytestmark = pytest.mark.integration

BULK = "/find-email-bulk-async"


@pytest.fixture
def excel() -> Iterator[Excel]:
    app = Excel()
    yield app
    app.close()


@pytest.fixture
def use_session() -> Iterator[Callable[[ExcelSession], ExcelSession]]:
    """Install sessions as the UDFs' default; restore the previous one (and the interpreter
    tuning of warm_up(serving=True), as in Excel's process) afterwards."""
    with default_sessions() as install:
        yield install


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_directory(tmp_path_factory.mktemp("directory") / "people.csv")


def test_a_thousand_cells_batch_answer_at_once_and_recalculate_for_free(
    directory: Path, tmp_path: Path, excel: Excel,
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    leads, expected = thousand_leads()  # 1,000 rows over 800 unique people, 12 spellings
    sheet: dict[str, Formula] = {
        f"C{row}": (udfs.FINDEMAIL, lead) for row, lead in enumerate(leads, start=2)
    }
    want = {f"C{row}": email for row, email in enumerate(expected, start=2)}
    recalcs = Recalcs()
    # The server runs in its own process, as the real API would, and holds every job for 2 s:
    # a cell that waited for the network would take at least that long.
    with serve_subprocess("--directory", str(directory), "--job-delay", "2") as srv:
        # Set up as default_session sets up Excel's Python process.
        finder = LeadFinder(srv.api_key, base_url=srv.base_url, cache_path=tmp_path / "c.sqlite3",
                            use_keyring=False, quiet=EXCEL_QUIET, poll_interval=0.2,
                            requests_per_minute=float("inf"))
        use_session(ExcelSession(finder, recalculate=recalcs)).warm_up(serving=True)

        first = excel.recalc(sheet)
        waiting = {address for address, value in first.items() if value == "PENDING"}
        assert all(first[a] == want[a] for a in set(first) - waiting)  # the rest: landed already
        assert len(waiting) >= 800  # at least the first cell of each lead: nothing was cached

        recalcs.wait_for(waiting)
        notified = recalcs.addresses()
        assert sorted(notified) == sorted(waiting)  # exactly the waiting cells, each once
        assert excel.recalc(sheet, only=notified) == {a: want[a] for a in notified}
        stats = srv.stats()
        bulk = stats["requests"][BULK]
        assert bulk <= math.ceil(800 / 100)
        assert len(stats["charges"]) == 800 and stats["duplicate_charges"] == 0

        before = sum(srv.stats()["requests"].values())
        calls_before = len(recalcs.calls)
        for _ in range(3):
            assert excel.recalc(sheet) == want
        assert sum(srv.stats()["requests"].values()) == before
        assert len(recalcs.calls) == calls_before
        finder.close()

    slowest = max(excel.latencies)
    print(f"\n1,000 FINDEMAIL cells over 800 leads: {bulk} bulk requests, "
          f"{len(excel.latencies)} calls, slowest answer {slowest * 1000:.1f} ms "
          f"(per recalculation: {', '.join(f'{t * 1000:.1f}' for t in excel.slowest)})")
    # Behaviour, not speed: no call waited for a lookup (each took far less than the 2 s job).
    # The 50 ms budget itself is measured, with a baseline, by benchmarks/excel_recalc.py.
    assert slowest < 1.0, f"a cell waited {slowest * 1000:.1f} ms: it blocked on a lookup"


def test_cached_leads_cost_nothing_and_only_pending_cells_are_recalculated(
    directory: Path, make_finder: Callable[..., LeadFinder], excel: Excel,
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    people = synthetic_people()
    known, new = people[:40], people[40:70]
    recalcs = Recalcs()
    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        finder = make_finder(srv, quiet=EXCEL_QUIET)
        finder.find_many([(p["name"], p["company"]) for p in known])  # an earlier session
        srv.stats.reset()
        # cache_wait: how long a cell may wait for the cache check; generous here so that the
        # check below does not depend on this machine's load
        session = use_session(ExcelSession(finder, recalculate=recalcs, cache_wait=1.0))
        session.warm_up()
        # One cell on its own: the cache answers within the call.
        assert udfs.FINDEMAIL(known[0]["name"], known[0]["company"]) == known[0]["email"]

        sheet: dict[str, Formula] = {}
        for i, p in enumerate(known + new):
            sheet[f"C{i + 2}"] = (udfs.FINDEMAIL, (p["name"], p["company"]))
            sheet[f"D{i + 2}"] = (udfs.EMAILSTATUS, (p["name"], p["company"]))
        sheet["C99"] = (udfs.FINDEMAIL, ("", "Acme"))
        sheet["D99"] = (udfs.EMAILSTATUS, (None, None))
        want = {f"C{i + 2}": p["email"] for i, p in enumerate(known + new)}
        want |= {f"D{i + 2}": "OK" for i in range(len(known + new))}
        want |= {"C99": "name is empty", "D99": ""}

        first = excel.recalc(sheet)
        waiting = {a for a, v in first.items() if v == "PENDING"}
        new_cells = {f"{col}{i + 2}" for col in "CD" for i in range(40, 70)}
        # New leads wait; cached ones answer at once unless the burst queued them behind the
        # new ones (then they wait for the cache check, never for the network).
        assert new_cells <= waiting
        assert all(first[a] == want[a] for a in set(sheet) - waiting)

        recalcs.wait_for(waiting)
        assert sorted(recalcs.addresses()) == sorted(waiting)  # exactly those, each once
        assert excel.recalc(sheet, only=sorted(waiting)) == {a: want[a] for a in waiting}
        assert excel.recalc(sheet) == want
        assert srv.stats.requests[BULK] == 1  # 30 new leads, asked for by 60 cells
        assert len(srv.stats.charges) == 30


def test_findemails_spills_250_rows_in_order_from_three_bulk_requests(
    directory: Path, make_finder: Callable[..., LeadFinder], excel: Excel,
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    people = synthetic_people()[:250]
    names = [[p["name"]] for p in people]  # xlwings passes a column as rows (ndim=2)
    companies = [[p["company"]] for p in people]
    sheet: dict[str, Formula] = {"F2": (udfs.FINDEMAILS, (names, companies))}
    recalcs = Recalcs()
    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        use_session(ExcelSession(make_finder(srv, quiet=EXCEL_QUIET), recalculate=recalcs))
        spill = excel.recalc(sheet)["F2"]
        assert len(spill) == 250 and all(row == ["PENDING", "PENDING", ""] for row in spill)
        handled = 0
        while any(row[1] == "PENDING" for row in spill):  # Excel recalculates F2 when told to
            recalcs.wait_for_call(handled)
            handled = len(recalcs.calls)
            spill = excel.recalc(sheet, only=["F2"])["F2"]
        assert set(recalcs.addresses()) == {"F2"}
        assert spill == [[p["email"], "OK", "COMPANY"] for p in people]
        assert srv.stats.requests[BULK] == 3
        assert len(srv.stats.charges) == 250 and srv.stats.duplicate_charges == 0
        srv.stats.reset()
        assert excel.recalc(sheet)["F2"] == spill
        assert sum(srv.stats.requests.values()) == 0


#: Bad input: (what, FINDEMAIL arguments, documented cell value). Each costs nothing.
BAD_INPUT: list[tuple[str, tuple[Any, ...], str]] = [
    ("blank row", (None, None), ""),
    ("blank strings", ("  ", ""), ""),
    ("empty name", ("", "Acme Inc."), "name is empty"),
    ("empty company", ("Jane Doe", None), "company is empty (give a company or a domain)"),
    ("number", (42.0, "Acme Inc."), "name is a number, not text"),
    ("numeric text", ("Jane Doe", "12345"), "company is a number, not text"),
    ("date", (dt.datetime(2024, 1, 5), "Acme Inc."), "name is a date, not text"),
    ("boolean", (True, "Acme Inc."), "name is TRUE/FALSE, not text"),
    ("#N/A cell", ("#N/A", "Acme Inc."), "name is an error value (#N/A)"),
    ("#REF! cell", ("Jane Doe", "#REF!"), "company is an error value (#REF!)"),
    ("formula", ('=HYPERLINK("http://x.test","x")', "Acme Inc."), "name looks like a formula"),
    ("DDE formula", ("Jane Doe", "+cmd|' /C calc'!A0"), "company looks like a formula"),
    ("placeholder N/A", ("N/A", "Acme Inc."), "name is a placeholder (N/A)"),
    ("placeholder dash", ("Jane Doe", "-"), "company is a placeholder (-)"),
    ("our own PENDING", ("PENDING", "Acme Inc."), "PENDING"),
    ("32,767 characters", ("x" * 32767, "Acme Inc."), "name is too long (over 256 characters)"),
    ("emoji only", ("\U0001f680\U0001f525", "Acme Inc."), "name is empty"),
    ("right-to-left marks only", ("\u200f\u202e", "Acme Inc."), "name is empty"),
    ("formula inside right-to-left embedding", ('\u202b=HYPERLINK("x")\u202c', "Acme Inc."),
     "name looks like a formula"),
    ("mode typo", ("Jane Doe", "Acme Inc.", "PERSONNAL"),
     "mode must be PROFESSIONAL or PERSONAL, not 'PERSONNAL'"),
    ("right-to-left mode",
     ("\u0645\u062d\u0645\u062f \u0639\u0644\u064a", "\u0634\u0631\u0643\u0629",
      "\u0634\u062e\u0635\u064a"),
     "mode must be PROFESSIONAL or PERSONAL, not '\u0634\u062e\u0635\u064a'"),
    ("numeric mode", ("Jane Doe", "Acme Inc.", 1.0),
     "mode must be PROFESSIONAL or PERSONAL, not '1.0'"),
]


def test_bad_input_gets_its_documented_value_and_costs_nothing(
    make_finder: Callable[..., LeadFinder], excel: Excel,
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    recalcs = Recalcs()
    with live_server() as srv:
        finder = make_finder(srv, quiet=EXCEL_QUIET)
        session = use_session(ExcelSession(finder, recalculate=recalcs))
        sheet: dict[str, Formula] = {}
        for row, (_, args, _value) in enumerate(BAD_INPUT, start=2):
            sheet[f"C{row}"] = (udfs.FINDEMAIL, args)
            sheet[f"D{row}"] = (udfs.EMAILSTATUS, args)
        for _ in range(2):
            values = excel.recalc(sheet)
            for row, (what, _args, value) in enumerate(BAD_INPUT, start=2):
                assert values[f"C{row}"] == value, what
                assert values[f"D{row}"] == value, what  # EMAILSTATUS gives the same reason
        spill = udfs.FINDEMAILS([[None], ["#N/A"], ["Jane Doe"]], [[None], ["Acme"], [7.0]])
        assert spill == [["", "", ""], ["", "name is an error value (#N/A)", ""],
                         ["", "company is a number, not text", ""]]
        assert udfs.FINDEMAILS([["Jane Doe"], ["John Smith"]], [["Acme"]], "PERSONNAL") == [
            ["mode must be PROFESSIONAL or PERSONAL, not 'PERSONNAL'"]]
        assert udfs.FINDEMAILS([["A", "B"], ["C", "D"]], [["Acme"]]) == [
            ["names must be one column or one row"]]
        assert udfs.FINDEMAILS([["Jane Doe"], ["John Smith"]], [["Acme"], ["x"], ["y"]]) == [
            ["companies has 3 cells but names has 2: give one per name"]]
        time.sleep(0.3)  # longer than the batching window: anything queued would have gone out
        assert sum(srv.stats.requests.values()) == 0
        assert session.waiting_cells() == frozenset() and recalcs.calls == []


def _failed_job(values: dict[str, Any]) -> bool:
    """Every cell shows the (clipped) reason of a failed job."""
    return all(isinstance(v, str) and v.startswith("Job ") and "failed" in v and len(v) <= 255
               for v in values.values())


def test_failures_are_remembered_until_back_off_or_retry(
    make_finder: Callable[..., LeadFinder], excel: Excel,
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    now = [1000.0]
    recalcs = Recalcs()
    people = synthetic_people()[:5]
    sheet: dict[str, Formula] = {
        f"C{i}": (udfs.FINDEMAIL, (p["name"], p["company"])) for i, p in enumerate(people, 2)
    }
    # Every bulk job fails on the server (nothing is billed); resubmitting is a new request.
    with live_server(enable_faults=True, fault_rates={"jobfail": 1.0}) as srv:
        session = use_session(ExcelSession(make_finder(srv, quiet=EXCEL_QUIET),
                                           recalculate=recalcs, retry_after=60.0,
                                           clock=lambda: now[0]))
        assert set(excel.recalc(sheet).values()) == {"PENDING"}
        recalcs.wait_for(set(sheet))
        for _ in range(3):
            assert _failed_job(excel.recalc(sheet))
        assert srv.stats.requests[BULK] == 1  # recalculations do not resubmit

        now[0] += 61  # after the back-off, the next recalculation tries again
        handled = len(recalcs.calls)
        assert set(excel.recalc(sheet).values()) == {"PENDING"}
        recalcs.wait_for_call(handled)
        assert _failed_job(excel.recalc(sheet))
        assert srv.stats.requests[BULK] == 2

        assert session.retry_failed() == 5  # on request, at once
        handled = len(recalcs.calls)
        assert set(excel.recalc(sheet).values()) == {"PENDING"}
        recalcs.wait_for_call(handled)
        assert _failed_job(excel.recalc(sheet))
        assert srv.stats.requests[BULK] == 3
        assert srv.stats.charges == {}


def test_budget_reached_then_raised_and_retried_buys_each_lead_once(
    tmp_path: Path, directory: Path, excel: Excel, monkeypatch: pytest.MonkeyPatch,
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    recalcs = Recalcs()
    people = synthetic_people()[:3]
    sheet: dict[str, Formula] = {
        f"C{i}": (udfs.FINDEMAIL, (p["name"], p["company"])) for i, p in enumerate(people, 2)
    }

    def finder() -> LeadFinder:  # settings from the environment, as in Excel
        return LeadFinder(cache_path=tmp_path / "cache.sqlite3", use_keyring=False,
                          quiet=EXCEL_QUIET, poll_interval=0.02)

    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        monkeypatch.setenv("SIXTYFOUR_API_KEY", srv.api_key)
        monkeypatch.setenv("LEAD_FINDER_BASE_URL", srv.base_url)
        monkeypatch.setenv("LEAD_FINDER_BUDGET", "0")
        session = use_session(ExcelSession(finder, recalculate=recalcs))
        assert set(excel.recalc(sheet).values()) == {"PENDING"}
        recalcs.wait_for(set(sheet))
        values = set(excel.recalc(sheet).values())
        assert len(values) == 1 and values.pop().startswith("budget reached")
        assert sum(srv.stats.requests.values()) == 0

        monkeypatch.setenv("LEAD_FINDER_BUDGET", "10")
        assert session.retry_failed() == 3  # the user's request: a fresh finder, new budget
        handled = len(recalcs.calls)
        assert set(excel.recalc(sheet).values()) == {"PENDING"}
        recalcs.wait_for_call(handled)
        assert excel.recalc(sheet) == {f"C{i}": p["email"] for i, p in enumerate(people, 2)}
        assert srv.stats.requests[BULK] == 1 and len(srv.stats.charges) == 3
        session.retry_failed()  # nothing failed now: a fresh finder, the cache answers
        srv.stats.reset()
        handled = len(recalcs.calls)
        values = excel.recalc(sheet)
        if "PENDING" in values.values():  # the fresh finder was still being built
            recalcs.wait_for_call(handled)
            values = excel.recalc(sheet)
        assert values == {f"C{i}": p["email"] for i, p in enumerate(people, 2)}
        assert sum(srv.stats.requests.values()) == 0


class _Range:
    """What FormulaReentry uses of an xlwings ComRange: its address, sheet and async formula
    methods. Records what is written back."""

    def __init__(self, address: str, formula: str, log: list[str], *, dynamic: bool = True):
        self.address = address
        self.sheet = XlCaller(address).sheet
        self.formula = formula
        self.log = log
        self.dynamic = dynamic

    async def get_formula2(self) -> str:
        if not self.dynamic:
            raise AttributeError("Formula2")
        return self.formula

    async def set_formula2(self, formula: str) -> None:
        self.log.append(f"formula2 {formula}")

    async def get_formula(self) -> str:
        return self.formula

    async def set_formula(self, formula: str) -> None:
        self.log.append(f"formula {formula}")


def test_windows_recalculation_re_enters_exactly_the_given_formulas() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        log: list[str] = []
        a1 = caller_cell(_Range("C2", "=FINDEMAIL(A2,B2)", log))
        a2 = caller_cell(_Range("F2", "=FINDEMAILS(A2:A9,B2:B9)", log, dynamic=False))
        assert a1 == CallerCell("lead_finder.xlsm", "Leads", "C2")  # identity ignores the range
        assert caller_cell(None) is None and caller_cell(object()) is None
        FormulaReentry(loop)(frozenset({a1, a2, "not a cell"}))
        deadline = time.monotonic() + 5
        while len(log) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(log) == ["formula =FINDEMAILS(A2:A9,B2:B9)", "formula2 =FINDEMAIL(A2,B2)"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
