"""workbook/build.py: the .xlsm builds byte-identical, opens, holds the formulas, the conf sheet
and the quickstart's VBA project, and no API key; the committed files are up to date; the VBA
wrapper xlwings generates for lead_finder.excel.udfs matches the committed snapshot."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import openpyxl
import pytest
import xlwings

ROOT = Path(__file__).resolve().parent.parent
CANARY = "sk64_CANARY_workbook_0123456789abcdef"


@pytest.fixture(scope="module")
def build() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("lead_finder_workbook_build",
                                                  ROOT / "workbook" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


@pytest.fixture(scope="module")
def built(build: ModuleType) -> bytes:
    with pytest.MonkeyPatch.context() as mp:  # a key in the environment must not leak in
        mp.setenv("SIXTYFOUR_API_KEY", CANARY)
        data: bytes = build.build_workbook()
        return data


def test_the_workbook_builds_byte_identical_twice(
    build: ModuleType, built: bytes, tmp_path: Path
) -> None:
    assert build.build_workbook() == built
    # another process, another hash seed (openpyxl copies the VBA parts in set order)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, str(ROOT / "workbook" / "build.py"), "--output",
                    str(tmp_path)], check=True, env=env, capture_output=True)
    assert (tmp_path / "lead_finder.xlsm").read_bytes() == built


def _contents(data: bytes) -> dict[str, list[list[object]]]:
    """Every sheet's cells (formulas as their text), independent of how the file was zipped."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    return {
        ws.title: [[getattr(v, "text", v) for v in row] for row in ws.iter_rows(values_only=True)]
        for ws in wb.worksheets
    }


def test_the_committed_files_are_what_the_script_builds(build: ModuleType, built: bytes) -> None:
    rebuild = "out of date: run python workbook/build.py"
    committed = (ROOT / "workbook" / "lead_finder.xlsm").read_bytes()
    assert _contents(committed) == _contents(built), rebuild
    with zipfile.ZipFile(io.BytesIO(committed)) as old, zipfile.ZipFile(io.BytesIO(built)) as new:
        assert old.read("xl/vbaProject.bin") == new.read("xl/vbaProject.bin"), rebuild
    assert (ROOT / "workbook" / "xlwings_udfs.bas").read_bytes() == \
        build.vba_wrapper().encode(), rebuild


def test_the_workbook_opens_with_formulas_conf_sheet_and_vba(built: bytes) -> None:
    wb = openpyxl.load_workbook(io.BytesIO(built))
    assert wb.sheetnames == ["Leads", "xlwings.conf"]
    leads = wb["Leads"]
    assert leads["A2"].value == "Jane Doe" and leads["B2"].value == "Acme Inc."
    assert leads["C2"].value == "=FINDEMAIL(A2,B2)"
    assert leads["D6"].value == "=EMAILSTATUS(A6,B6)"
    assert leads["F2"].value.text == "=FINDEMAILS(A2:A6,B2:B6)"  # an array formula
    conf = {row[0]: row[1] for row in wb["xlwings.conf"].iter_rows(values_only=True) if row[0]}
    assert conf["UDF Modules"] == "lead_finder.excel.udfs"

    template_path = Path(xlwings.__file__).parent / "quickstart.xlsm"
    with zipfile.ZipFile(io.BytesIO(built)) as archive, zipfile.ZipFile(template_path) as template:
        assert archive.read("xl/vbaProject.bin") == template.read("xl/vbaProject.bin")
        assert b"macroEnabled" in archive.read("[Content_Types].xml")
        sheet = archive.read("xl/worksheets/sheet1.xml")
        assert b'<c r="F2" cm="1"><f t="array" ref="F2">FINDEMAILS(A2:A6,B2:B6)</f>' in sheet
        assert b"XLDAPR" in archive.read("xl/metadata.xml")  # FINDEMAILS spills
        assert archive.testzip() is None


def test_the_workbook_holds_no_api_key(built: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(built)) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            assert CANARY.encode() not in data, name
            assert b"sk64_" not in data and b"SIXTYFOUR_API_KEY" not in data, name


def test_the_vba_wrapper_matches_the_functions(build: ModuleType) -> None:
    vba = build.vba_wrapper()
    signatures = [line for line in vba.splitlines() if line.startswith("Function ")]
    assert signatures == [
        "Function EMAILSTATUS(name, company, Optional mode, Optional domain, Optional linkedin)",
        "Function FINDEMAIL(name, company, Optional mode, Optional domain, Optional linkedin)",
        "Function FINDEMAILS(names, companies, Optional mode, Optional domains)",
        "Function PERSONALEMAIL(name, company, Optional domain, Optional linkedin)",
    ]
    # xlwings passes the calling cell (the hidden `caller` argument) to every function
    assert vba.count("linkedin, Nothing), ThisWorkbook, Application.Caller)") == 3
    # the stand-ins for pywin32 are gone again, and the real module is untouched
    assert "pythoncom" not in sys.modules and "xlwings.udfs" not in sys.modules
    import lead_finder.excel.udfs as udfs

    assert not hasattr(udfs.FINDEMAIL, "__xlfunc__")
