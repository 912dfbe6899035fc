"""The notebooks, executed headless by nbclient with a real kernel against `lead-finder serve` on
loopback, and the 2,000-row panel run in a kernel: another cell runs meanwhile, Cancel stops new
submissions, a second Run finishes the rest, and the server bills every lead once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
import pytest
from jupyter_support import (
    NOTEBOOKS,
    cell_text,
    copy_project_files,
    execute_notebook,
    jupyter_env,
    last_json,
    lead_finder_serve,
)
from servers import live_server, new_api_key
from synthetic import lead_rows, write_people

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("name", ["quickstart", "pandas"])
def test_committed_notebooks_hold_no_outputs_and_no_key(name: str) -> None:
    text = (NOTEBOOKS / f"{name}.ipynb").read_text("utf-8")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "widgets" not in nb.metadata
    assert "sk64_" not in text and "api_key=" not in text.replace("api_key=...", "")
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.integration
@pytest.mark.parametrize("how", ["environment", "typed"])
def test_quickstart_runs_and_its_saved_file_holds_no_key(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the quickstart, click Run in the kernel, save it with widget state: no key in it.

    `environment`: the key comes from SIXTYFOUR_API_KEY. `typed`: no key is configured and the
    key goes through the panel's password field, as a browser sends it."""
    folder = copy_project_files(tmp_path)
    with lead_finder_serve(tmp_path) as server:
        settings = {"LEAD_FINDER_BASE_URL": server.base_url}
        if how == "environment":
            settings["SIXTYFOUR_API_KEY"] = server.api_key
        else:
            settings["LF_TEST_TYPED_KEY"] = server.api_key
        use_env(monkeypatch, jupyter_env(tmp_path, **settings))
        nb = execute_notebook(folder / "quickstart.ipynb", cwd=folder, extra_cells=[
            "import json, os\n"
            "assert panel.wait(30)\n"
            "typed = os.environ.get('LF_TEST_TYPED_KEY')\n"
            "no_key_offered = panel.key_box.layout.display != 'none'\n"
            "if typed:\n"
            "    panel.key_input.value = typed  # what the browser sends on Enter\n"
            "panel.run_button.click()\n"
            "assert panel.wait(60), 'the run did not finish'\n"
            "print(json.dumps({'message': panel.message.value, 'no_key_offered': no_key_offered,\n"
            "    'statuses': panel.result['email_status'].value_counts().to_dict(),\n"
            "    'key_field': panel.key_input.value}))",
        ])
        stats = server.stats()
        saved = tmp_path / "saved.ipynb"
        nbformat.write(nb, saved)
    report = last_json(nb.cells[-1])
    assert report["no_key_offered"] is (how == "typed")
    assert report["key_field"] == ""
    assert "24 from the API (21 leads bought)" in report["message"]
    assert report["statuses"]["OK"] >= 10 and report["statuses"]["ERROR"] == 4
    assert sum(stats["charges"].values()) == 21 and max(stats["charges"].values()) == 1

    text = saved.read_text("utf-8")
    assert server.api_key not in text
    assert "sk64_CANARY" not in text
    state = nb.metadata.widgets[WIDGET_STATE]["state"]
    assert any("lf-run" in m["state"].get("_dom_classes", ()) for m in state.values())
    keys = [m for m in state.values() if "lf-key" in m["state"].get("_dom_classes", ())]
    assert keys and all(m["state"]["value"] == "" for m in keys)
    assert server.api_key not in server.log_path.read_text("utf-8")


@pytest.mark.integration
def test_pandas_notebook_filters_enriches_and_exports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_project_files(tmp_path)
    with lead_finder_serve(tmp_path) as server:
        use_env(monkeypatch, jupyter_env(tmp_path, SIXTYFOUR_API_KEY=server.api_key,
                                         LEAD_FINDER_BASE_URL=server.base_url))
        nb = execute_notebook(folder / "pandas.ipynb", cwd=folder)
        stats = server.stats()
    code = [c for c in nb.cells if c.cell_type == "code"]
    texts = [cell_text(c) for c in code]
    assert "24 of 28 rows have a title" in texts[1]
    assert "24 rows · 21 unique · 0 cached · 21 billable ≈ $1.05" in texts[2]
    assert "jane.doe@acme-inc.com" in texts[3]
    assert "OK" in texts[4] and "NOT_FOUND" in texts[4]
    assert "wrote 24 rows to leads-with-emails.xlsx" in texts[5]
    assert "24 rows · 21 unique · 21 cached · 0 billable ≈ $0.00" in texts[6]
    assert (folder / "leads-with-emails.xlsx").stat().st_size > 0
    with (folder / "leads-verified.csv").open(newline="", encoding="utf-8") as fh:
        verified = list(csv.DictReader(fh))
    assert verified and all(row["email_status"] == "OK" for row in verified)
    assert sum(stats["charges"].values()) == 21 and max(stats["charges"].values()) == 1
    saved = tmp_path / "saved.ipynb"
    nbformat.write(nb, saved)
    assert server.api_key not in saved.read_text("utf-8")


# The cells a person would run while a 2,000-row run is going. Each reports as JSON.
_PANEL_CELLS = [
    # start: the estimate, Run, the confirmation (the run costs more than $5), Spend
    "import json, os, time\n"
    "import httpx\n"
    "import lead_finder\n"
    "panel = lead_finder.panel(os.environ['LF_TEST_LEADS'])\n"
    "assert panel.wait(60)\n"
    "before = panel.estimate\n"
    "panel.run_button.click()\n"
    "assert panel.wait(60) and panel.confirm_box.layout.display == 'flex', panel.message.value\n"
    "panel.confirm_button.click()\n"
    "started = time.monotonic()\n"
    "print(json.dumps({'rows': before.rows, 'unique': before.unique,\n"
    "                  'billable': before.billable, 'describe': before.describe()}))",
    # another cell, once lookups are under way
    "while panel.running and panel.progress.value == 0:\n"
    "    time.sleep(0.02)\n"
    "t0 = time.monotonic()\n"
    "squares = sum(i * i for i in range(100_000))\n"
    "print(json.dumps({'running': panel.running, 'done': panel.progress.value,\n"
    "                  'total': panel.progress.max, 'cell_seconds': time.monotonic() - t0}))",
    # Cancel at about half-way
    "while panel.running and panel.progress.value < 0.4 * panel.progress.max:\n"
    "    time.sleep(0.02)\n"
    "at_cancel = panel.progress.value\n"
    "panel.cancel_button.click()\n"
    "assert panel.wait(120)\n"
    "first = panel.results\n"
    "stats = httpx.get(os.environ['LEAD_FINDER_BASE_URL'] + '/_lf/stats', trust_env=False,\n"
    "                  headers={'x-api-key': os.environ['SIXTYFOUR_API_KEY']}).json()\n"
    "print(json.dumps({'at_cancel': at_cancel, 'seconds': time.monotonic() - started,\n"
    "    'cancelled_rows': sum(1 for r in first if (r.error or '').startswith('cancelled')),\n"
    "    'bought': len({r.key for r in first if r.source.value == 'api'}),\n"
    "    'charged': sum(stats['charges'].values()),\n"
    "    'cached_after': panel.estimate.cached, 'billable_after': panel.estimate.billable,\n"
    "    'message': panel.message.value}))",
    # Run again: only the rest is bought
    "started = time.monotonic()\n"
    "panel.run_button.click()\n"
    "assert panel.wait(60)\n"
    "if panel.confirm_box.layout.display == 'flex':\n"
    "    panel.confirm_button.click()\n"
    "    assert panel.wait(120)\n"
    "second = panel.results\n"
    "print(json.dumps({'seconds': time.monotonic() - started,\n"
    "    'statuses': panel.result['email_status'].value_counts().to_dict(),\n"
    "    'bought': len({r.key for r in second if r.source.value == 'api'}),\n"
    "    'from_cache': sum(1 for r in second if r.source.value == 'cache'),\n"
    "    'message': panel.message.value}))",
]


@pytest.mark.integration
@pytest.mark.slow
def test_2000_rows_cancel_half_way_then_finish_without_paying_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lead_finder.server import DirectoryBackend

    rows, people = lead_rows(2000, 1850, unknown=100)
    leads_csv = tmp_path / "leads.csv"
    with leads_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["Full Name", "Company"])
        writer.writeheader()
        writer.writerows(rows)
    backend = DirectoryBackend.from_csv(write_people(tmp_path / "people.csv", people))
    notebook = tmp_path / "panel.ipynb"
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in _PANEL_CELLS],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}}), notebook)
    key = new_api_key()
    with live_server(api_key=key, backend=backend, job_delay=0.5) as server:
        use_env(monkeypatch, jupyter_env(
            tmp_path, SIXTYFOUR_API_KEY=key, LEAD_FINDER_BASE_URL=server.base_url,
            LF_TEST_LEADS=str(leads_csv)))
        nb = execute_notebook(notebook, cwd=tmp_path, timeout=180)
        charges = server.stats.charges
        duplicates = server.stats.duplicate_charges
    start, during, cancelled, finished = (last_json(c) for c in nb.cells)
    print("2,000-row panel run:", json.dumps(
        {"estimate": start["describe"], "during": during, "cancel": cancelled,
         "second": finished}, indent=1))

    assert start == {"rows": 2000, "unique": 1850, "billable": 1850,
                     "describe": "2,000 rows · 1,850 unique · 0 cached · 1,850 billable ≈ "
                                 "$92.50"}
    # another cell ran, quickly, while the run was going
    assert during["running"] is True and 0 < during["done"] < during["total"] == 2000
    assert during["cell_seconds"] < 1.0
    # Cancel stopped new submissions; what had been sent finished and was kept
    assert 700 <= cancelled["at_cancel"] <= 1400
    assert 0 < cancelled["cancelled_rows"] < 2000
    assert 0 < cancelled["bought"] < 1850
    assert cancelled["charged"] == cancelled["bought"] == cancelled["cached_after"]
    assert cancelled["billable_after"] == 1850 - cancelled["bought"]
    assert cancelled["message"].startswith("Cancelled:")
    # the second run bought exactly the rest, and nothing twice
    assert finished["bought"] == 1850 - cancelled["bought"]
    assert finished["statuses"].get("ERROR", 0) == 0
    assert sum(finished["statuses"].values()) == 2000
    assert finished["statuses"]["NOT_FOUND"] > 0 and finished["statuses"]["OK"] > 1500
    assert sum(charges.values()) == 1850 and duplicates == 0
    assert max(charges.values()) == 1
