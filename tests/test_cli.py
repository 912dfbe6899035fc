"""The `lead-finder` command, run as a real subprocess against the local server."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from servers import live_server, lost_answer_client

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "leads.csv"


def run(args: list[str], env: dict[str, str], input: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lead_finder", *args], env=env, input=input, text=True,
        capture_output=True, timeout=120, cwd=ROOT,
    )


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIXTYFOUR_", "LEAD_FINDER_"))}
    env["LEAD_FINDER_CACHE"] = str(tmp_path / "cache.sqlite3")
    env.update(extra)
    return env


@pytest.mark.integration
def test_enrich_example_to_xlsx_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out.xlsx"
    with live_server() as srv:
        env = cli_env(tmp_path, SIXTYFOUR_API_KEY=srv.api_key, LEAD_FINDER_BASE_URL=srv.base_url)
        done = run(["enrich", str(EXAMPLE), "-o", str(out), "--yes", "--no-progress"], env)
        assert done.returncode == 0, done.stderr
        assert srv.stats.duplicate_charges == 0
        charged = len(srv.stats.charges)
        again = run(["enrich", str(EXAMPLE), "-o", str(tmp_path / "again.csv"), "--yes"], env)
        assert again.returncode == 0, again.stderr
        assert len(srv.stats.charges) == charged  # the second run is all cache

    assert "Estimate: 28 rows · 4 invalid · 21 unique · 0 cached · 21 billable ≈ $1.05" in (
        done.stderr)
    assert "cost $1.05" in done.stderr
    assert srv.api_key not in done.stdout + done.stderr

    sheet = openpyxl.load_workbook(out).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    assert header[:5] == ["Full Name", "Company", "Website", "Title", "Notes"]
    assert header[5:] == ["email", "email_status", "email_type", "lookup_error"]
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    by_name = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert by_name["Jane Doe"]["email"] == "jane.doe@acme-inc.com"
    assert by_name["Doe, Jane"]["email"] == "jane.doe@acme-inc.com"
    injected = by_name['=HYPERLINK("http://evil.example")']
    assert injected["email_status"] == "ERROR"
    assert "formula" in str(injected["lookup_error"])
    assert by_name["Pat Unknown"]["email_status"] == "NOT_FOUND"


@pytest.mark.integration
def test_find_prints_email_and_json(tmp_path: Path) -> None:
    with live_server() as srv:
        env = cli_env(tmp_path, SIXTYFOUR_API_KEY=srv.api_key, LEAD_FINDER_BASE_URL=srv.base_url)
        plain = run(["find", "Doe, Jane", "ACME Inc."], env)
        as_json = run(["find", "Jane Doe", "Acme", "--json"], env)
        missing = run(["find", "Pat Unknown", "Nowhere Ltd"], env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split("\t")[:2] == ["jane.doe@acme-inc.com", "OK"]
    assert '"source": "cache"' in as_json.stdout
    assert missing.returncode == 3 and "not found" in missing.stdout


def test_user_mistakes_are_one_line_without_traceback(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    no_key = run(["balance"], env)  # without a key, lookups use the engine; balance cannot
    bad_mode = run(["find", "Jane Doe", "Acme", "--mode", "PERSONNAL"], env)
    empty = run(["find", "", "Acme"], env)
    no_file = run(["enrich", str(tmp_path / "nope.csv"), "-o", "x.csv"], env)
    bad_url = run(["find", "Jane Doe", "Acme"],
                  cli_env(tmp_path, SIXTYFOUR_API_KEY="sk64_CANARY_cli",
                          LEAD_FINDER_BASE_URL="http://example.com"))
    for done in (no_key, bad_mode, empty, no_file, bad_url):
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        assert done.stderr.strip()
    assert "SIXTYFOUR_API_KEY" in no_key.stderr
    assert "PROFESSIONAL" in bad_mode.stderr
    assert "name is empty" in empty.stderr
    assert "https" in bad_url.stderr and "sk64_CANARY_cli" not in bad_url.stderr


def test_enrich_csv_neutralises_formulas(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("name,company,note\nJane Doe,Acme,=1+2\n", encoding="utf-8")
    with live_server() as srv:
        env = cli_env(tmp_path, SIXTYFOUR_API_KEY=srv.api_key, LEAD_FINDER_BASE_URL=srv.base_url)
        done = run(["enrich", str(source), "-o", str(tmp_path / "out.csv"), "--yes"], env)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "out.csv").open(encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    assert row["note"] == "'=1+2"
    assert row["email"] == "jane.doe@acme-inc.com"


def test_estimate_and_confirmation_threshold(tmp_path: Path) -> None:
    source = tmp_path / "big.csv"
    lines = ["name,company"] + [f"Person {i:04d},Company {i % 7}" for i in range(150)]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with live_server() as srv:
        env = cli_env(tmp_path, SIXTYFOUR_API_KEY=srv.api_key, LEAD_FINDER_BASE_URL=srv.base_url)
        estimate = run(["estimate", str(source)], env)
        declined = run(["enrich", str(source), "-o", str(tmp_path / "o.csv")], env, input="n\n")
        assert sum(srv.stats.requests.values()) == 0  # estimating and declining are free
    assert estimate.stdout.strip() == (
        "150 rows · 150 unique · 0 cached · 150 billable ≈ $7.50")
    assert declined.returncode != 0 and "Continue?" in declined.stderr
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.integration
def test_jobs_cache_and_doctor(tmp_path: Path) -> None:
    with live_server() as srv:
        env = cli_env(tmp_path, SIXTYFOUR_API_KEY=srv.api_key, LEAD_FINDER_BASE_URL=srv.base_url,
                      LEAD_FINDER_BUDGET="2")
        run(["find", "Jane Doe", "Acme"], env)
        stats = run(["cache", "stats"], env)
        jobs = run(["jobs", "list", "--all"], env)
        doctor = run(["doctor"], env)
    assert "results_found: 1" in stats.stdout
    assert "completed" in jobs.stdout and "cost $0.05" in jobs.stdout
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "backend reachable: yes" in doctor.stdout
    assert "budget: run $2.00" in doctor.stdout
    assert srv.api_key not in doctor.stdout
    assert "****" + srv.api_key[-4:] in doctor.stdout


@pytest.mark.integration
def test_ambiguous_job_is_listed_blocked_then_released(tmp_path: Path) -> None:
    from lead_finder.finder import LeadFinder

    with live_server(enable_faults=True) as srv:
        env = cli_env(tmp_path, SIXTYFOUR_API_KEY=srv.api_key, LEAD_FINDER_BASE_URL=srv.base_url)
        finder = LeadFinder(srv.api_key, base_url=srv.base_url,
                            cache_path=tmp_path / "cache.sqlite3", use_keyring=False,
                            client=lost_answer_client(srv))
        with finder:
            lost = finder.find("Jane Doe", "Acme Inc.")
        assert srv.stats.charges and srv.stats.requests["/find-email-bulk-async"] == 1
        listed = run(["jobs", "list"], env)
        blocked = run(["find", "Jane Doe", "Acme Inc."], env)  # not bought again on its own
        assert srv.stats.requests["/find-email-bulk-async"] == 1
        job_id = listed.stdout.split()[0]
        released = run(["jobs", "release", job_id], env)
        bought = run(["find", "Jane Doe", "Acme Inc."], env)
        assert srv.stats.requests["/find-email-bulk-async"] == 2
    assert "may have been charged" in (lost.error or "")
    assert "ambiguous" in listed.stdout and "may cost $0.05" in listed.stdout
    assert blocked.returncode != 0 and "may have been charged" in blocked.stderr
    assert released.returncode == 0 and "Released 1 lead;" in released.stdout
    assert bought.returncode == 0 and bought.stdout.startswith("jane.doe@acme-inc.com")
