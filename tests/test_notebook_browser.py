"""The panel in a real browser: JupyterLab and `lead-finder serve` on 127.0.0.1, the quickstart
notebook opened in headless Chromium (Debian's `chromium`, driven by Python Playwright with
`executable_path`: Playwright's own browser download does not work here).

No key is configured, so the key is typed into the panel's password field, as a user would. The
test runs the notebook, clicks Run, waits for the results table, checks the counts against the
cache, downloads the CSV, uploads a file, saves the notebook with widget state, and checks that
neither the key nor the uploaded file is in it. The screenshot goes to test-artifacts/panel.png
(with LEAD_FINDER_UPDATE_SCREENSHOT=1 also to docs/panel.png, which the README shows).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jupyter_support import (
    ARTIFACTS,
    REPO,
    copy_project_files,
    jupyter_env,
    lead_finder_serve,
    stop_process,
)
from servers import HOST, free_port

from lead_finder import LeadFinder
from lead_finder.notebook import views
from lead_finder.tables import read_table

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def chromium_path() -> str:
    """Debian's chromium, or skip (locally) / fail (in CI, where .ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run must run `apt-get install -y chromium`")
    pytest.skip("chromium is not installed here (apt-get install -y chromium)")


def _settings(folder: Path) -> None:
    """User settings: no news or update checks (they reach the internet), widget state saved."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
        "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }
    for name, value in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), "utf-8")


@pytest.fixture
def chromium() -> str:
    """The browser's path; checked before any server starts."""
    return chromium_path()


@pytest.fixture
def jupyterlab(chromium: str, tmp_path: Path) -> Iterator[tuple[str, Path, Path, str]]:
    """`lead-finder serve` and JupyterLab on loopback; yields (lab URL with token, the folder
    it serves, the lead_finder cache, the server's key)."""
    root = tmp_path / "lab"
    copy_project_files(root)
    with lead_finder_serve(tmp_path) as server:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LEAD_FINDER_", "SIXTYFOUR_"))}
        env.update(jupyter_env(tmp_path, LEAD_FINDER_BASE_URL=server.base_url))
        _settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
        port, token = free_port(), secrets.token_hex(16)
        log_path = tmp_path / "jupyterlab.log"
        with log_path.open("wb") as log:
            lab = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser",
                 f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
                 "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                 f"--ServerApp.root_dir={root}", "--LabApp.extension_manager=readonly",
                 "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
            )
        try:
            url = f"http://{HOST}:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert lab.poll() is None, log_path.read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/api/status", params={"token": token},
                                 trust_env=False, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(0.2)
            yield f"{url}/lab/tree/notebooks/quickstart.ipynb?token={token}", root, \
                Path(env["LEAD_FINDER_CACHE"]), server.api_key
        finally:
            stop_process(lab)
            server_log = server.log_path.read_text("utf-8", errors="replace")
            lab_log = log_path.read_text("utf-8", errors="replace")
        assert server.api_key not in server_log and server.api_key not in lab_log


_READY = """() => {
  const app = window.jupyterapp;
  const nb = app && app.shell.currentWidget;
  const ctx = nb && nb.sessionContext;
  return !!(ctx && ctx.isReady && ctx.session && ctx.session.kernel
            && ctx.session.kernel.status === 'idle');
}"""


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_panel_in_chromium(chromium: str,
                                      jupyterlab: tuple[str, Path, Path, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, root, cache, key = jupyterlab
    notebook = root / "notebooks" / "quickstart.ipynb"
    ARTIFACTS.mkdir(exist_ok=True)
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1500},
                                    accept_downloads=True)
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_function(_READY, timeout=90_000)
            # not awaited inside the page: "run all" once hung there for minutes
            page.evaluate("() => { window.jupyterapp.commands.execute("
                          "'notebook:run-all-cells'); return true; }")

            key_field = page.locator(".lf-key input")
            expect(key_field).to_be_visible()
            expect(page.locator(".lf-estimate")).to_contain_text("28 rows")
            key_field.fill(key)
            key_field.press("Enter")
            expect(page.locator(".lf-key-note")).to_contain_text("for this session only")
            expect(page.locator(".lf-estimate")).to_contain_text(
                "21 unique · 0 cached · 21 billable ≈ $1.05")

            page.locator(".lf-run").click()
            expect(page.locator(".lf-table table")).to_be_visible()
            expect(page.locator(".lf-message")).to_contain_text(
                "24 from the API (21 leads bought)")
            expect(page.locator(".lf-estimate")).to_contain_text("21 cached · 0 billable")
            shown = page.locator(".lf-progress-text").inner_text()
            table_rows = page.locator(".lf-table tbody tr").count()
            chart_rows = page.locator(".lf-chart .lf-bar").count()
            page.locator(".lf-panel").screenshot(path=str(ARTIFACTS / "panel.png"))
            page.screenshot(path=str(ARTIFACTS / "quickstart-page.png"), full_page=True)

            with page.expect_download() as download_info:
                page.locator(".lf-download-csv").click()
            download = download_info.value
            assert download.suggested_filename == "leads-emails.csv"
            downloaded = Path(download.path()).read_bytes()

            # FileUpload makes its file input only when clicked: use the file chooser event
            marker = "Upload " + secrets.token_hex(4)
            upload = root / "team.csv"
            upload.write_text(f"Name,Company\n{marker},Acme Inc.\n", "utf-8")
            with page.expect_file_chooser() as chooser:
                page.locator(".lf-upload").click()
            chooser.value.set_files(str(upload))
            expect(page.locator(".lf-source")).to_contain_text("team.csv: 1 rows")

            before = notebook.stat().st_mtime_ns
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            deadline = time.monotonic() + 30
            while notebook.stat().st_mtime_ns == before:
                assert time.monotonic() < deadline, "the notebook was not saved"
                time.sleep(0.1)
        finally:
            browser.close()
    seconds = time.monotonic() - started

    # the counts the panel showed are the cache's answers for the same leads
    df = read_table(root / "examples" / "leads.csv")
    with LeadFinder(key, base_url="http://127.0.0.1:9", cache_path=cache,
                    use_keyring=False) as finder:
        leads = [{"name": n, "company": c, "domain": w}
                 for n, c, w in zip(df["Full Name"], df["Company"], df["Website"], strict=True)]
        results = finder.find_many(leads)  # all cached: nothing is sent to the dead address
    counts = views.status_counts(Counter(r.status for r in results))
    assert all(r.source.value in ("cache", "none") for r in results)
    for label, n in counts.items():
        assert f"{label} {n:,}" in shown, (label, n, shown)
    assert counts["found"] >= 10 and table_rows == 28 and chart_rows == 4
    assert b"jane.doe@acme-inc.com" in downloaded and b"'=HYPERLINK" in downloaded

    saved = notebook.read_text("utf-8")
    assert WIDGET_STATE in saved  # the widget state really was saved...
    assert key not in saved and "sk64_CANARY" not in saved  # ...without the key
    assert marker not in saved  # nor the uploaded file
    if os.environ.get("LEAD_FINDER_UPDATE_SCREENSHOT"):  # refresh the README's picture
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "panel.png", REPO / "docs" / "panel.png")
    print(f"browser test: {seconds:.1f} s in the browser; shown: {shown}")
