"""Build ``workbook/lead_finder.xlsm`` and ``workbook/xlwings_udfs.bas``, reproducibly.

    python workbook/build.py                # write both files next to this script
    python workbook/build.py --check        # exit 1 if either file is out of date
    python workbook/build.py --output DIR   # write them to DIR instead

The workbook starts from xlwings' BSD-licensed quickstart template (its VBA project is kept byte
for byte: openpyxl's ``keep_vba``), renames its settings sheet to ``xlwings.conf`` with
``UDF Modules`` set to ``lead_finder.excel.udfs``, and adds an example sheet with ``=FINDEMAIL``
and ``=EMAILSTATUS`` formulas and a ``=FINDEMAILS`` spill (a dynamic-array formula, written the
way Excel writes one). Timestamps are fixed and the zip is written in a fixed order, so two
builds are byte-identical.

``xlwings_udfs.bas`` is the VBA module that xlwings' *Import Functions* generates for
``lead_finder.excel.udfs``. xlwings generates it only on Windows; here the pywin32 modules it
imports are stubbed for the duration of the call (nothing in them is used to write the text). A
test compares it with the functions, so the signatures Excel sees cannot drift unnoticed.

No settings are read and no API key is involved: the key never goes into a workbook.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import io
import re
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import xlwings
from openpyxl.styles import Font
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.writer.excel import ExcelWriter

HERE = Path(__file__).resolve().parent
WORKBOOK = HERE / "lead_finder.xlsm"
VBA_MODULE = HERE / "xlwings_udfs.bas"
TEMPLATE = Path(xlwings.__file__).parent / "quickstart.xlsm"
UDF_MODULE = "lead_finder.excel.udfs"

#: The one timestamp the workbook carries (document properties); zip entries use the zip epoch.
BUILD_TIME = dt.datetime(2025, 1, 1, 0, 0, 0)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

#: Example leads from the demo directory that `lead-finder serve` answers from, so the sheet
#: shows every kind of answer against the demo server: found, UNKNOWN and not found.
EXAMPLES = [
    ("Jane Doe", "Acme Inc."),
    ("John Smith", "Acme Inc."),
    ("Wile E. Coyote", "Acme Inc."),
    ("Hank Scorpio", "Globex Corporation"),
    ("Frank Grimes", "Globex Corporation"),
]
SPILL_CELL = "F2"

# Excel marks a formula as a dynamic array (one that spills) with cell metadata; openpyxl cannot
# write it, so it is added to the package afterwards, in the form Excel and XlsxWriter write it.
_METADATA_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<metadata xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:xda="http://schemas.microsoft.com/office/spreadsheetml/2017/dynamicarray">'
    '<metadataTypes count="1"><metadataType name="XLDAPR" minSupportedVersion="120000" '
    'copy="1" pasteAll="1" pasteValues="1" merge="1" splitFirst="1" rowColShift="1" '
    'clearFormats="1" clearComments="1" assign="1" coerce="1" cellMeta="1"/></metadataTypes>'
    '<futureMetadata name="XLDAPR" count="1"><bk><extLst>'
    '<ext uri="{bdbb8cdc-fa1e-496e-a857-3c3f30c029c3}">'
    '<xda:dynamicArrayProperties fDynamic="1" fCollapsed="0"/></ext></extLst></bk>'
    '</futureMetadata><cellMetadata count="1"><bk><rc t="1" v="0"/></bk></cellMetadata>'
    "</metadata>"
)
_METADATA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheetMetadata+xml"
_METADATA_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sheetMetadata"


def _example_sheet(ws: Any) -> None:
    bold = Font(bold=True)
    headers = {"A1": "Name", "B1": "Company", "C1": "FINDEMAIL", "D1": "EMAILSTATUS",
               "F1": "FINDEMAILS: email", "G1": "status", "H1": "type"}
    for ref, text in headers.items():
        ws[ref] = text
        ws[ref].font = bold
    for row, (name, company) in enumerate(EXAMPLES, start=2):
        ws[f"A{row}"] = name
        ws[f"B{row}"] = company
        ws[f"C{row}"] = f"=FINDEMAIL(A{row},B{row})"
        ws[f"D{row}"] = f"=EMAILSTATUS(A{row},B{row})"
    last = len(EXAMPLES) + 1
    ws[SPILL_CELL] = ArrayFormula(SPILL_CELL, f"=FINDEMAILS(A2:A{last},B2:B{last})")
    notes = [
        "PENDING: the lead is queued; the cell fills in by itself when the bulk lookup lands.",
        "NOT_FOUND: no email was found (EMAILSTATUS says NOT_FOUND too).",
        "Any other text is a short reason: bad input, no API key, budget reached, API down.",
        "Recalculating never buys a lead again: answers come from the local cache.",
        "Set up: see workbook/README.md (xlwings add-in, then Import Functions).",
    ]
    for offset, note in enumerate(notes):
        ws[f"A{last + 2 + offset}"] = note
    for column, width in {"A": 18, "B": 20, "C": 28, "D": 14, "F": 28, "G": 12, "H": 12}.items():
        ws.column_dimensions[column].width = width


def _conf_sheet(ws: Any) -> None:
    ws.title = "xlwings.conf"
    for row in ws.iter_rows(min_col=1, max_col=1):
        if row[0].value == "UDF Modules":
            ws.cell(row=row[0].row, column=2, value=UDF_MODULE)
            return
    raise RuntimeError("the quickstart template has no 'UDF Modules' setting")


def _openpyxl_bytes() -> bytes:
    wb = openpyxl.load_workbook(TEMPLATE, keep_vba=True)
    example = wb.worksheets[0]
    example.title = "Leads"
    _example_sheet(example)
    _conf_sheet(wb["_xlwings.conf"])
    props = wb.properties
    props.creator = props.lastModifiedBy = "lead_finder"
    props.title = "lead_finder: =FINDEMAIL in Excel"
    props.created = props.modified = BUILD_TIME
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            # ExcelWriter rather than wb.save(): save() stamps the current time on the workbook.
            ExcelWriter(wb, archive).save()
    finally:
        wb.vba_archive.close()  # openpyxl's in-memory copy of the VBA parts
    return buffer.getvalue()


def _sheet_path(parts: dict[str, bytes], title: str) -> str:
    """The package path of the worksheet called `title`."""
    workbook = parts["xl/workbook.xml"].decode()
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    rid = re.search(rf'<sheet [^>]*name="{re.escape(title)}"[^>]*r:id="([^"]+)"', workbook)
    if rid is None:
        raise RuntimeError(f"no sheet {title!r} in the workbook")
    for element in re.findall(r"<Relationship [^>]*>", rels):
        if f'Id="{rid.group(1)}"' in element:
            target = re.search(r'Target="([^"]+)"', element)
            if target is not None:
                return "xl/" + target.group(1).lstrip("/").removeprefix("xl/")
    raise RuntimeError(f"no relationship for sheet {title!r}")


def _add_dynamic_array(parts: dict[str, bytes]) -> None:
    """Mark the FINDEMAILS formula as a spilling dynamic-array formula."""
    sheet = _sheet_path(parts, "Leads")
    xml = parts[sheet].decode()
    marked = xml.replace(f'<c r="{SPILL_CELL}"', f'<c r="{SPILL_CELL}" cm="1"', 1)
    if marked == xml:
        raise RuntimeError(f"no cell {SPILL_CELL} in {sheet}")
    parts[sheet] = marked.encode()
    parts["xl/metadata.xml"] = _METADATA_XML.encode()
    types_xml = parts["[Content_Types].xml"].decode()
    override = f'<Override PartName="/xl/metadata.xml" ContentType="{_METADATA_TYPE}"/>'
    parts["[Content_Types].xml"] = types_xml.replace("</Types>", override + "</Types>").encode()
    rels = parts["xl/_rels/workbook.xml.rels"].decode()
    used = {int(n) for n in re.findall(r'Id="rId(\d+)"', rels)}
    rel = (f'<Relationship Id="rId{max(used, default=0) + 1}" Type="{_METADATA_REL}" '
           'Target="metadata.xml"/>')
    parts["xl/_rels/workbook.xml.rels"] = rels.replace(
        "</Relationships>", rel + "</Relationships>").encode()


def _fix_core_properties(parts: dict[str, bytes]) -> None:
    stamp = BUILD_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
    core = parts["docProps/core.xml"].decode()
    core = re.sub(r"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)", rf"\g<1>{stamp}\2",
                  core)
    parts["docProps/core.xml"] = core.encode()


def build_workbook() -> bytes:
    """The bytes of lead_finder.xlsm: identical on every run with the same library versions."""
    with zipfile.ZipFile(io.BytesIO(_openpyxl_bytes())) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    _add_dynamic_array(parts)
    _fix_core_properties(parts)
    # A fixed order: openpyxl copies the VBA parts in set order, which varies between runs.
    order = sorted(parts, key=lambda name: (name != "[Content_Types].xml", name))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in order:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0  # the same bytes whichever OS builds it
            info.external_attr = 0
            archive.writestr(info, parts[name], compresslevel=9)
    return out.getvalue()


@contextlib.contextmanager
def _pywin32_stand_ins() -> Iterator[None]:
    """Let `import xlwings.udfs` succeed off Windows: it imports pywin32 modules at the top but
    `generate_vba_wrapper` uses none of them. Everything is removed again afterwards."""
    names = ["pythoncom", "pywintypes", "win32com", "win32com.client", "xlwings.udfs"]
    saved = {name: sys.modules.get(name) for name in names}
    pythoncom = types.ModuleType("pythoncom")
    pythoncom.CoInitialize = lambda: None  # type: ignore[attr-defined]
    pywintypes = types.ModuleType("pywintypes")
    pywintypes.com_error = type("com_error", (Exception,), {})  # type: ignore[attr-defined]
    win32com = types.ModuleType("win32com")
    client = types.ModuleType("win32com.client")
    client.Dispatch = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    win32com.client = client  # type: ignore[attr-defined]
    sys.modules.update({"pythoncom": pythoncom, "pywintypes": pywintypes,
                        "win32com": win32com, "win32com.client": client})
    sys.modules.pop("xlwings.udfs", None)
    had_attr = hasattr(xlwings, "udfs")
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if not had_attr and hasattr(xlwings, "udfs"):
            delattr(xlwings, "udfs")


class _Workbook:
    """What generate_vba_wrapper asks of the workbook: its name (for ThisWorkbook vs add-in)."""

    Name = WORKBOOK.name


def vba_wrapper() -> str:
    """The VBA module xlwings' Import Functions writes for lead_finder.excel.udfs."""
    with _pywin32_stand_ins():
        import xlwings.udfs as classic

        spec = importlib.util.find_spec(UDF_MODULE)
        assert spec is not None and spec.origin is not None
        # A fresh copy of the module, decorated by xlwings' Windows decorators (the ones
        # imported on Linux do nothing); the real module is left alone.
        fresh = importlib.util.spec_from_file_location(UDF_MODULE, spec.origin)
        assert fresh is not None and fresh.loader is not None
        module = importlib.util.module_from_spec(fresh)
        inert = {name: getattr(xlwings, name) for name in ("func", "arg", "ret")}
        xlwings.func, xlwings.arg, xlwings.ret = classic.xlfunc, classic.xlarg, classic.xlret
        try:
            fresh.loader.exec_module(module)
        finally:
            for name, decorator in inert.items():
                setattr(xlwings, name, decorator)
        out = io.StringIO()
        out.write('Attribute VB_Name = "xlwings_udfs"\n')
        out.write("'Autogenerated code by xlwings - changes will be lost with next import!\n")
        out.write("""#Const App = "Microsoft Excel" 'Adjust when using outside of Excel\n""")
        classic.generate_vba_wrapper(UDF_MODULE, module, out, _Workbook())
        # Windows line ends, as in the file xlwings imports (the VBA editor expects them).
        return out.getvalue().replace("\r\n", "\n").replace("\n", "\r\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the files are up to date")
    parser.add_argument("--output", type=Path, default=HERE, help="where to write the files")
    args = parser.parse_args(argv)
    outputs = {args.output / WORKBOOK.name: build_workbook(),
               args.output / VBA_MODULE.name: vba_wrapper().encode()}
    stale = [path for path, data in outputs.items()
             if not path.exists() or path.read_bytes() != data]
    if args.check:
        for path in stale:
            sys.stderr.write(f"out of date: {path.name} (run python workbook/build.py)\n")
        return 1 if stale else 0
    for path, data in outputs.items():
        path.write_bytes(data)
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
