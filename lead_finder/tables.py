"""Reading lead lists and writing results: CSV and XLSX, safe from spreadsheet formula injection."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any, cast

import pandas as pd

from .errors import InvalidLeadError

__all__ = ["FORMULA_PREFIXES", "neutralise", "read_table", "table_bytes", "write_table"]

#: A text cell starting with one of these is run as a formula by Excel, LibreOffice or Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")

_READERS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx"}


def read_table(path: str | Path, *, sheet: str | int = 0) -> pd.DataFrame:
    """Read a CSV or XLSX lead list as text columns (no number or date guessing)."""
    path = Path(path)
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise InvalidLeadError("file", f"{path.name}: use a .csv or .xlsx file")
    if not path.exists():
        raise InvalidLeadError("file", f"{path} does not exist")
    try:
        if kind == "xlsx":
            return pd.read_excel(path, sheet_name=sheet, dtype=object)
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            sample = fh.read(64 * 1024)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
            sep = dialect.delimiter
        except csv.Error:
            sep = ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                           encoding="utf-8-sig")
    except (ValueError, OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise InvalidLeadError("file", f"{path.name} could not be read: {exc}") from None


def neutralise(value: object) -> object:
    """Make a text value safe for a spreadsheet: formula-looking text gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write results as CSV or XLSX; no value that came from data can become a formula.

    CSV has no cell types, so formula-looking text gets a leading apostrophe (OWASP's advice).
    XLSX cells are written with an explicit text type, so the value is kept exactly as it was.
    """
    path = Path(path)
    path.write_bytes(table_bytes(df, path.suffix, name=path.name))
    return path


def table_bytes(df: pd.DataFrame, suffix: str, *, name: str | None = None) -> bytes:
    """The bytes `write_table` would write for a file ending in `suffix` (".csv", ".tsv",
    ".txt" or ".xlsx"), for download buttons and web responses that need no file."""
    suffix = suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        safe = df.apply(lambda column: column.map(neutralise))
        text = io.StringIO()
        # CRLF rows (RFC 4180) also make pandas quote values holding a bare CR
        safe.to_csv(text, index=False, sep="\t" if suffix == ".tsv" else ",",
                    lineterminator="\r\n")
        return text.getvalue().encode("utf-8")
    if suffix == ".xlsx":
        buffer = io.BytesIO()
        _write_xlsx(df, buffer)
        return buffer.getvalue()
    raise InvalidLeadError("output", f"{name or 'file' + suffix}: write to a .csv or .xlsx file")


def _write_xlsx(df: pd.DataFrame, target: Path | io.BytesIO) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Leads"
    sheet.append([str(c) for c in df.columns])
    for row in df.itertuples(index=False, name=None):
        sheet.append([None if _missing(v) else v for v in row])
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # never "f": openpyxl makes any "=..." string a formula
    sheet.freeze_panes = "A2"
    book.save(target)


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(cast(Any, value))))
