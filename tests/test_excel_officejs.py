"""The Office.js custom functions on xlwings Server, called in-process with the add-in's exact
wire format (`POST /xlwings/custom-functions-call`, every argument a 2-D matrix), against our
Sixtyfour-compatible server on 127.0.0.1.

xlwings Server is PolyForm Noncommercial (or a paid licence); the tests run it with
XLWINGS_LICENSE_KEY=noncommercial.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import xlwings
from excel_sim import default_sessions
from servers import free_port, live_server
from synthetic import synthetic_people, write_directory

import lead_finder.excel.udfs  # noqa: F401 - imports xlwings in desktop mode first, as in Excel
from lead_finder.excel.session import EXCEL_QUIET, ExcelSession
from lead_finder.finder import LeadFinder
from lead_finder.server import DirectoryBackend

pytestmark = pytest.mark.integration

BULK = "/find-email-bulk-async"
CALL = "/xlwings/custom-functions-call"
NOT_AVAILABLE = {"type": "Error", "errorType": "NotAvailable"}


def body(func_name: str, *args: Any, address: str = "C2", runtime: str = "1.4") -> dict[str, Any]:
    """A request body exactly as the add-in's custom-functions-code.js sends it."""
    return {
        "client": "Office.js",
        "func_name": func_name,
        "args": [arg if isinstance(arg, list) else [[arg]] for arg in args],
        "caller_address": f"[Book1.xlsx]Sheet1!{address}",
        "session_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "culture_info_name": "en-US",
        "date_format": "M/d/yyyy",
        "version": xlwings.__version__,
        "runtime": runtime,
    }


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """xlwings Server's app with lead_finder's functions (the app `lead-finder excel serve`
    runs). The environment it sets is restored afterwards."""
    monkeypatch.setenv("XLWINGS_LICENSE_KEY", "noncommercial")
    for name, value in {"XLWINGS_ON_SERVER": "true", "XLWINGS_PROJECT_DIR": str(tmp_path),
                        "XLWINGS_FUNCTIONS_NAMESPACE": "LEADFINDER",
                        "XLWINGS_PROJECT_NAME": "Lead Finder"}.items():
        monkeypatch.setenv(name, value)  # recorded, so they are undone after the test
    from lead_finder.excel.server import create_app

    return create_app()


@pytest.fixture
def use_session() -> Iterator[Callable[[ExcelSession], ExcelSession]]:
    """Install sessions as the functions' default; restore the previous one afterwards."""
    with default_sessions() as install:
        yield install


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_directory(tmp_path_factory.mktemp("directory") / "people.csv")


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://addin.test")


async def test_250_per_cell_calls_coalesce_into_three_bulk_requests(
    app: Any, directory: Path, make_finder: Callable[..., LeadFinder],
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    people = synthetic_people()[:250]
    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        use_session(ExcelSession(make_finder(srv, quiet=EXCEL_QUIET)))
        async with client(app) as http:
            calls = [http.post(CALL, json=body("findemail", p["name"], p["company"],
                                               address=f"C{i + 2}"))
                     for i, p in enumerate(people)]
            responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200] * 250
        assert [r.json() for r in responses] == [{"result": [[p["email"]]]} for p in people]
        print(f"\n250 Office.js FINDEMAIL calls: {srv.stats.requests[BULK]} bulk requests")
        assert srv.stats.requests[BULK] <= math.ceil(250 / 100)
        assert len(srv.stats.charges) == 250 and srv.stats.duplicate_charges == 0

        srv.stats.reset()  # recalculation: answered from memory, nothing sent
        async with client(app) as http:
            again = await http.post(CALL, json=body("emailstatus", people[0]["name"],
                                                    people[0]["company"]))
        assert again.json() == {"result": [["OK"]]}
        assert sum(srv.stats.requests.values()) == 0


async def test_not_found_is_an_error_cell_and_bad_input_a_reason(
    app: Any, make_finder: Callable[..., LeadFinder],
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    error_cell = {"type": "Error", "basicType": "Error", "basicValue": "#N/A",
                  "errorType": "NotAvailable"}
    with live_server() as srv:  # the bundled demo directory
        use_session(ExcelSession(make_finder(srv, quiet=EXCEL_QUIET)))
        async with client(app) as http:
            async def call(*args: Any, **kwargs: Any) -> Any:
                response = await http.post(CALL, json=body(*args, **kwargs))
                assert response.status_code == 200, response.text
                return response.json()["result"]

            # Frank Grimes is in the demo directory without an address
            assert await call("findemail", "Frank Grimes", "Globex Corporation") == [
                [NOT_AVAILABLE]]
            assert await call("emailstatus", "Frank Grimes", "Globex Corporation") == [
                ["NOT_FOUND"]]
            # runtimes before 1.4 have no error values
            assert await call("findemail", "Frank Grimes", "Globex Corporation",
                              runtime="1.3") == [["NOT_FOUND"]]
            assert await call("findemail", "Wile E. Coyote", "Acme Inc.") == [
                ["wile@acme-inc.com"]]
            assert await call("emailstatus", "Wile E. Coyote", "Acme Inc.") == [["UNKNOWN"]]
            assert await call("personalemail", "Jane Doe", "Acme Inc.") == [
                ["janedoe.personal@gmail.com"]]
            # optional arguments Excel leaves out arrive as null
            assert await call("findemail", "Jane Doe", "Acme Inc.", None, None, None) == [
                ["jane.doe@acme-inc.com"]]
            requests_so_far = sum(srv.stats.requests.values())

            assert await call("findemail", error_cell, "Acme Inc.") == [
                ["name is an error value (#N/A)"]]
            assert await call("findemail", "", "Acme Inc.") == [["name is empty"]]
            assert await call("findemail", "=1+1", "Acme Inc.") == [["name looks like a formula"]]
            assert await call("findemail", "Jane Doe", "Acme Inc.", "PERSONNAL") == [
                ["mode must be PROFESSIONAL or PERSONAL, not 'PERSONNAL'"]]
            assert await call("findemail", 42, "Acme Inc.") == [["name is a number, not text"]]
            assert await call("findemail", "", "") == [[""]]
            assert sum(srv.stats.requests.values()) == requests_so_far


async def test_findemails_spills_rows_in_order(
    app: Any, directory: Path, make_finder: Callable[..., LeadFinder],
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    people = synthetic_people()[300:550]
    names = [[p["name"]] for p in people]
    companies = [[p["company"]] for p in people]
    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        use_session(ExcelSession(make_finder(srv, quiet=EXCEL_QUIET)))
        async with client(app) as http:
            response = await http.post(CALL, json=body("findemails", names, companies,
                                                       address="F2"))
            mismatch = await http.post(CALL, json=body("findemails", names[:3], companies[:2]))
        assert response.json() == {"result": [[p["email"], "OK", "COMPANY"] for p in people]}
        assert srv.stats.requests[BULK] == 3
        assert mismatch.json() == {
            "result": [["companies has 2 cells but names has 3: give one per name"]]}


async def test_a_slow_lookup_shows_pending_then_the_cache_answers(
    app: Any, make_finder: Callable[..., LeadFinder], monkeypatch: pytest.MonkeyPatch,
    use_session: Callable[[ExcelSession], ExcelSession],
) -> None:
    from lead_finder.excel import officejs

    monkeypatch.setattr(officejs, "WAIT_SECONDS", 0.2)  # the add-in's own deadline, shortened
    with live_server(job_delay=1.0) as srv:
        use_session(ExcelSession(make_finder(srv, quiet=EXCEL_QUIET)))
        async with client(app) as http:
            first = await http.post(CALL, json=body("findemail", "Jane Doe", "Acme Inc."))
            assert first.json() == {"result": [["PENDING"]]}  # the lookup goes on
            monkeypatch.setattr(officejs, "WAIT_SECONDS", 30.0)
            later = await http.post(CALL, json=body("findemail", "Jane Doe", "Acme Inc."))
        assert later.json() == {"result": [["jane.doe@acme-inc.com"]]}
        assert srv.stats.requests[BULK] == 1 and len(srv.stats.charges) == 1


async def test_the_add_in_lists_the_four_functions(app: Any) -> None:
    async with client(app) as http:
        meta = (await http.get("/xlwings/custom-functions-meta")).json()
        code = (await http.get("/xlwings/custom-functions-code")).text
    functions = {f["name"]: f for f in meta["functions"]}
    assert set(functions) == {"FINDEMAIL", "EMAILSTATUS", "PERSONALEMAIL", "FINDEMAILS"}
    assert [p["name"] for p in functions["FINDEMAIL"]["parameters"]] == [
        "name", "company", "mode", "domain", "linkedin"]
    assert [p.get("optional", False) for p in functions["FINDEMAILS"]["parameters"]] == [
        False, False, True, True]
    assert "#N/A" in functions["FINDEMAIL"]["description"]
    assert 'CustomFunctions.associate("FINDEMAIL", findemail)' in code


def test_create_app_refuses_without_a_licence_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from lead_finder.errors import ConfigurationError
    from lead_finder.excel.server import create_app

    monkeypatch.delenv("XLWINGS_LICENSE_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="PolyForm Noncommercial"):
        create_app()


def test_excel_serve_answers_over_http(directory: Path, tmp_path: Path) -> None:
    """`lead-finder excel serve` in a child process, called over HTTP like the add-in."""
    people = synthetic_people()[:3]
    port = free_port()
    with live_server(backend=DirectoryBackend.from_csv(directory)) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAD_FINDER_", "XLW"))}
        env.update(SIXTYFOUR_API_KEY=srv.api_key, LEAD_FINDER_BASE_URL=srv.base_url,
                   LEAD_FINDER_CACHE=str(tmp_path / "cache.sqlite3"),
                   XLWINGS_LICENSE_KEY="noncommercial",
                   XLWINGS_PROJECT_DIR=str(tmp_path / "xlwings-server"))
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", "from lead_finder.excel.server import excel; excel()",
                 "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/xlwings/custom-functions-meta", timeout=1, trust_env=False)
                    break
                except httpx.TransportError:
                    assert child.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            answers = [httpx.post(url + CALL, json=body("findemail", p["name"], p["company"]),
                                  timeout=30, trust_env=False).json() for p in people]
            assert answers == [{"result": [[p["email"]]]} for p in people]
        finally:
            child.terminate()
            child.wait(15)
        assert srv.api_key not in log.read_text()
