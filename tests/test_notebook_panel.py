"""The Jupyter panel without a kernel or a browser: build it, set its widgets, click its buttons
(`Button.click()` runs the same handlers a browser click does), and check what it shows, what it
returns and what the server billed."""

from __future__ import annotations

import base64
import io
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from servers import live_server
from synthetic import thousand_leads

import lead_finder
from lead_finder import LeadFinder, Mode, Status
from lead_finder.finder import Progress
from lead_finder.frames import enrich
from lead_finder.models import Result, Source
from lead_finder.notebook import Panel, views
from lead_finder.tables import read_table

LEADS_CSV = Path(__file__).resolve().parent.parent / "examples" / "leads.csv"


def widget_tree(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from widget_tree(child)


def everything_shown(panel: Panel) -> str:
    """Every widget's synced state, as the browser (and a saved notebook) would get it."""
    return repr([w.get_state() for w in widget_tree(panel.widget)])


def data_url_bytes(html: str, css: str) -> bytes:
    match = re.search(rf"class='{css}'[^>]*href='data:[^;]+;base64,([^']+)'", html)
    assert match, html[:300]
    return base64.b64decode(match.group(1))


def browser_sends(upload: Any, name: str, content: bytes) -> None:
    """What a comm message from the browser does to a FileUpload: `set_state` with the wire
    format (content as a buffer, last_modified in milliseconds)."""
    upload.set_state({"value": [{"name": name, "type": "", "size": len(content),
                                 "content": memoryview(content),
                                 "last_modified": 1_700_000_000_000}]})


@pytest.fixture
def panels() -> Iterator[Callable[..., Panel]]:
    made: list[Panel] = []

    def make(*args: Any, **kwargs: Any) -> Panel:
        panel = Panel(*args, **kwargs)
        made.append(panel)
        return panel

    yield make
    for panel in made:
        panel.close()


@pytest.fixture
def offline_finder(tmp_path: Path) -> Iterator[LeadFinder]:
    """A finder for the hosted API with a key but no server behind it: estimates only (they
    read the cache and send nothing)."""
    with LeadFinder("sk64_CANARY_offline", base_url="http://127.0.0.1:9",
                    cache_path=tmp_path / "cache.sqlite3", use_keyring=False) as finder:
        yield finder


@pytest.fixture
def keyless_finder(tmp_path: Path) -> Iterator[LeadFinder]:
    """The hosted API chosen, but no key anywhere."""
    with LeadFinder(backend="sixtyfour", cache_path=tmp_path / "cache.sqlite3",
                    use_keyring=False) as finder:
        yield finder


# -- sources, mapping and the estimate (no sockets) -------------------------------------------

def test_auto_detected_mapping_and_live_estimate(panels: Callable[..., Panel],
                                                 offline_finder: LeadFinder) -> None:
    panel = panels(LEADS_CSV, finder=offline_finder)
    assert panel.wait(10)
    chosen = {role: d.value for role, d in panel.mapping.items() if d.value is not None}
    assert chosen == {"name": "Full Name", "company": "Company", "domain": "Website"}
    df = read_table(LEADS_CSV)
    expected = enrich(df, name="Full Name", company="Company", domain="Website",
                      finder=offline_finder, dry_run=True)
    assert isinstance(expected, lead_finder.Estimate)
    assert panel.estimate == expected
    assert expected.describe() in panel.estimate_label.value
    assert "28 rows · 4 invalid · 21 unique · 0 cached · 21 billable ≈ $1.05" in \
        panel.estimate_label.value
    assert not panel.run_button.disabled and panel.cancel_button.disabled
    assert "leads.csv</b>: 28 rows × 5 columns" in panel.source_label.value

    panel.mode.value = Mode.PERSONAL  # four times the price
    assert panel.wait(10)
    assert "21 billable ≈ $4.20" in panel.estimate_label.value

    panel.mapping["name"].value = None  # no column with names: nothing to run
    assert panel.wait(10)
    assert "Choose the column with the names" in panel.estimate_label.value
    assert panel.run_button.disabled
    panel.mapping["first_name"].value = "Full Name"
    assert panel.wait(10)
    assert not panel.run_button.disabled and "billable" in panel.estimate_label.value


def test_dataframe_source_with_other_headers(panels: Callable[..., Panel],
                                             offline_finder: LeadFinder) -> None:
    df = pd.DataFrame({"Given name": ["Jane", "John"], "Surname": ["Doe", "Smith"],
                       "Employer": ["Acme Inc.", "Acme"], "Lead Owner": ["x", "y"]})
    panel = panels(df, finder=offline_finder)
    assert panel.wait(10)
    chosen = {role: d.value for role, d in panel.mapping.items() if d.value is not None}
    assert chosen == {"first_name": "Given name", "last_name": "Surname", "company": "Employer"}
    assert "2 rows · 2 unique · 0 cached · 2 billable ≈ $0.10" in panel.estimate_label.value
    assert panel.df is df


def test_no_leads_and_bad_path_say_so(panels: Callable[..., Panel],
                                      offline_finder: LeadFinder, tmp_path: Path) -> None:
    panel = panels(finder=offline_finder)
    assert panel.run_button.disabled
    panel.path_input.value = str(tmp_path / "missing.csv")
    assert "does not exist" in panel.message.value
    panel.path_input.value = str(tmp_path / "leads.pdf")
    assert "use a .csv or .xlsx file" in panel.message.value
    assert panel.df is None
    panel.path_input.value = str(LEADS_CSV)
    assert panel.df is not None and len(panel.df) == 28
    assert panel.message.value == ""


def test_upload_is_read_then_cleared(panels: Callable[..., Panel],
                                     offline_finder: LeadFinder) -> None:
    panel = panels(finder=offline_finder)
    content = "Name,Company\nJane Doe,Acme Inc.\nJohn Smith,Acme\n".encode()
    browser_sends(panel.upload, "team.csv", content)
    assert panel.df is not None and list(panel.df["Name"]) == ["Jane Doe", "John Smith"]
    assert panel.upload.value == ()  # not kept in the widget state, so not saved in the notebook
    assert "team.csv</b>: 2 rows" in panel.source_label.value
    assert "Jane Doe" not in everything_shown(panel)
    assert panel.wait(10) and "2 billable" in panel.estimate_label.value

    junk = b"PK\x03\x04 not really a workbook"
    browser_sends(panel.upload, "broken.xlsx", junk)
    assert panel.upload.value == ()
    assert "broken.xlsx could not be read" in panel.message.value
    assert list(panel.df["Name"]) == ["Jane Doe", "John Smith"]  # the old leads stay


def test_verify_toggle_is_part_of_the_estimate(panels: Callable[..., Panel],
                                               offline_finder: LeadFinder) -> None:
    panel = panels(LEADS_CSV, finder=offline_finder)
    assert panel.verify.value is True and offline_finder.verify is True
    panel.verify.value = False
    assert offline_finder.verify is False
    assert panel.wait(10) and "21 billable" in panel.estimate_label.value


def test_run_without_a_key_explains_instead_of_failing(
        panels: Callable[..., Panel], keyless_finder: LeadFinder) -> None:
    panel = panels(LEADS_CSV, finder=keyless_finder)
    assert not panel.key_box.layout.display  # the password field is offered
    panel.run_button.click()
    assert panel.wait(10)
    assert "No API key" in panel.message.value and "Traceback" not in panel.message.value
    assert panel.result is None
    assert not panel.running and not panel.run_button.disabled


# -- runs against the local server -------------------------------------------------------------

@pytest.mark.integration
def test_run_returns_at_once_and_shows_results(
        panels: Callable[..., Panel], make_finder: Callable[..., LeadFinder]) -> None:
    with live_server(job_delay=0.3) as server:
        finder = make_finder(server)
        panel = panels(LEADS_CSV, finder=finder)
        assert panel.wait(10)
        assert panel.key_box.layout.display == "none"  # a key is configured
        started = time.perf_counter()
        panel.run_button.click()
        panel.run_button.click()  # a double click starts nothing more
        clicked = time.perf_counter() - started
        assert clicked < 0.5 and panel.running and not panel.cancel_button.disabled
        assert panel.wait(30)
        assert not panel.running and panel.cancel_button.disabled

        # the panel's result is exactly what lead_finder.enrich gives for the same mapping
        df = read_table(LEADS_CSV)
        expected = enrich(df, name="Full Name", company="Company", domain="Website",
                          finder=finder, progress=False)
        assert isinstance(panel.result, pd.DataFrame)
        pd.testing.assert_frame_equal(panel.result, expected)
        assert server.stats.charges.total() == 21 and server.stats.duplicate_charges == 0

        counts = Counter(r.status for r in panel.results or [])
        shown = views.status_counts(counts)
        assert shown["found"] >= 10 and shown["error"] == 4  # the four junk rows
        assert all(f"{label} {n:,}" in panel.progress_text.value for label, n in shown.items())
        assert panel.progress.value == panel.progress.max == 28
        assert panel.progress.bar_style == "success"
        assert "24 from the API (21 leads bought) · 0 from the cache · spent $1.05" in \
            panel.message.value
        for status, n in counts.items():
            assert f"data-status='{status.value}'" in panel.chart.value
            assert re.search(rf"data-status='{status.value}'.*?lf-count'>{n}<",
                             panel.chart.value)
        assert panel.table.value.count("<tr") == 29  # header + 28 rows
        assert "jane.doe@acme-inc.com" in panel.table.value
        # the new estimate: everything is cached now
        assert "21 cached · 0 billable ≈ $0.00" in panel.estimate_label.value

        # downloads: formula-looking text stays text in both formats
        csv_bytes = data_url_bytes(panel.downloads.value, "lf-download-csv")
        assert b"'=HYPERLINK" in csv_bytes and b"\n=HYPERLINK" not in csv_bytes
        back = pd.read_csv(io.BytesIO(csv_bytes), dtype=str, keep_default_na=False)
        assert list(back["email"]) == [e if isinstance(e, str) else ""
                                       for e in expected["email"]]
        from openpyxl import load_workbook

        book = load_workbook(io.BytesIO(data_url_bytes(panel.downloads.value,
                                                       "lf-download-xlsx")))
        cells = [c for row in book.active.iter_rows() for c in row
                 if str(c.value).startswith("=HYPERLINK")]
        assert cells and all(c.data_type == "s" for c in cells)

        # a second run buys nothing
        panel.run_button.click()
        assert panel.wait(30)
        assert "0 from the API (0 leads bought) · 24 from the cache · spent $0.00" in \
            panel.message.value
        assert server.stats.charges.total() == 21


@pytest.mark.integration
def test_confirmation_above_the_threshold(
        panels: Callable[..., Panel], make_finder: Callable[..., LeadFinder]) -> None:
    with live_server() as server:
        panel = panels(LEADS_CSV, finder=make_finder(server), confirm_above_cents=100)
        panel.run_button.click()
        assert panel.wait(10)
        assert panel.confirm_box.layout.display == "flex"
        assert "$1.05" in panel.confirm_text.value and panel.confirm_button.description == \
            "Spend $1.05"
        assert server.stats.charges.total() == 0 and panel.result is None
        panel.decline_button.click()
        assert panel.confirm_box.layout.display == "none" and "Not started" in \
            panel.message.value
        assert server.stats.charges.total() == 0

        panel.run_button.click()
        assert panel.wait(10) and panel.confirm_box.layout.display == "flex"
        panel.mode.value = Mode.PERSONAL  # a changed run must be confirmed again
        assert panel.confirm_box.layout.display == "none"
        panel.mode.value = Mode.PROFESSIONAL
        panel.run_button.click()
        assert panel.wait(10) and panel.confirm_box.layout.display == "flex"
        panel.confirm_button.click()
        assert panel.wait(30)
        assert panel.result is not None and server.stats.charges.total() == 21


@pytest.mark.integration
def test_cancel_stops_sending_and_a_second_run_finishes(
        panels: Callable[..., Panel], make_finder: Callable[..., LeadFinder],
        tmp_path: Path) -> None:
    from synthetic import write_directory

    from lead_finder.server import DirectoryBackend

    leads, _ = thousand_leads()  # 1,000 rows, 800 unique: two groups of 400 unique leads
    df = pd.DataFrame(leads, columns=["Full Name", "Company"])
    backend = DirectoryBackend.from_csv(write_directory(tmp_path / "people.csv"))
    with live_server(backend=backend, job_delay=0.5) as server:
        panel = panels(df, finder=make_finder(server), confirm_above_cents=None)
        assert panel.wait(10)
        panel.run_button.click()
        # Cancel while the first group of jobs is on the server (each job takes 0.5 s there);
        # meanwhile this thread, the kernel's, is free.
        deadline = time.monotonic() + 20
        while server.stats.requests["/find-email-bulk-async"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert panel.running and panel.progress.value < 1000
        panel.cancel_button.click()
        assert panel.cancel_button.disabled and "nothing paid for is lost" in panel.message.value
        assert panel.wait(30)
        first = panel.results or []
        cancelled = [r for r in first if r.error and r.error.startswith("cancelled")]
        bought = {r.key for r in first if r.source is Source.API}
        assert len(bought) == 400  # the first four jobs of 100 finished and were kept
        assert len({r.key for r in cancelled}) == 400
        assert server.stats.charges.total() == 400
        assert panel.progress.bar_style == "warning"
        assert f"Cancelled: {len(cancelled):,} rows were not sent" in panel.message.value
        assert panel.estimate is not None
        assert panel.estimate.cached == len(bought)
        assert panel.estimate.billable == 800 - len(bought)

        panel.run_button.click()
        assert panel.wait(30)
        assert all(r.status is Status.OK for r in panel.results or [])
        assert server.stats.charges.total() == 800 and server.stats.duplicate_charges == 0


@pytest.mark.integration
def test_session_key_is_used_and_never_kept(
        panels: Callable[..., Panel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with live_server() as server:
        monkeypatch.setenv("LEAD_FINDER_BASE_URL", server.base_url)
        monkeypatch.setenv("LEAD_FINDER_CACHE", str(tmp_path / "cache.sqlite3"))
        panel = panels(LEADS_CSV)  # the panel's own LeadFinder, from the environment: no key
        assert panel.finder.settings.api_key is None
        assert panel.key_box.layout.display != "none"
        panel.key_input.value = server.api_key  # what the browser sends on Enter
        assert panel.key_input.value == ""
        assert panel.finder.settings.api_key is not None
        assert panel.key_input.layout.display == "none"
        assert "for this session only" in panel.key_note.value
        assert server.api_key not in repr(panel.finder)
        panel.run_button.click()
        assert panel.wait(60)
        assert panel.result is not None and server.stats.charges.total() == 21
        assert server.api_key not in everything_shown(panel)
        assert server.api_key not in panel.result.to_csv()


# -- what the panel shows (pure functions) ----------------------------------------------------

def test_durations_and_progress_text() -> None:
    assert [views.duration(s) for s in (None, 0, 9.6, 75.2, 3723)] == \
        ["–", "0:00", "0:10", "1:15", "1:02:03"]
    progress = Progress(done=1155, total=2000, started=time.monotonic() - 12,
                        counts=Counter({Status.OK: 812, Status.UNKNOWN: 40,
                                        Status.NOT_FOUND: 300, Status.ERROR: 3}))
    text = views.progress_text(progress)
    assert text.startswith("1,155 of 2,000 · found 812 · unknown 40 · not found 300 · error 3 · "
                           "0:12 elapsed · ETA 0:")


def test_summary_counts_money_once_per_lead() -> None:
    lead = {"name": "Jane Doe", "company": "Acme"}
    bought = Result(lead, cost_cents=5, source=Source.API, key="k1")
    results = [bought, bought, Result(lead, cost_cents=5, source=Source.CACHE, key="k2"),
               replace(Result.failed(lead, "cancelled before it was sent", key="k3"),
                       extra={"cancelled": True})]
    text = views.run_summary(results, 3.2)
    assert text.startswith("Cancelled: 1 rows were not sent.")
    assert "4 rows in 0:03 · 2 from the API (1 leads bought) · 1 from the cache · spent $0.05" \
        in text


def test_views_escape_what_came_from_data() -> None:
    df = pd.DataFrame({"Full Name": ["<script>alert(1)</script>"], "email": ["a@b.c"]})
    html = views.table_html(df, ["Full Name", "email"], 10)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "First" not in html  # no "first N of M" note when everything is shown
    assert "First 1 of 2 rows" in views.table_html(pd.concat([df, df]), ["email"], 1)
    links = views.downloads_html(df, "x'><b>")
    assert "<b>" not in links.split("href")[0]
    chart = views.status_chart_html(Counter({Status.OK: 3, Status.PENDING: 1}))
    assert "lf-count'>3<" in chart and "data-status='ERROR'" in chart


def test_estimate_line_warns_when_the_budget_stops_the_run() -> None:
    estimate = lead_finder.Estimate(rows=10, invalid=0, unique=10, cached=0, billable=10,
                                    cost_cents=50, budget_left_cents=20)
    html = views.estimate_html(estimate)
    assert "10 billable ≈ $0.50 · budget left $0.20" in html
    assert "the run stops at the budget" in html
    assert "budget" not in views.estimate_html(
        lead_finder.Estimate(rows=1, invalid=0, unique=1, cached=0, billable=1, cost_cents=5))
