"""`lead_finder.enrich` on DataFrames, and safe exports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from servers import live_server

import lead_finder
from lead_finder.errors import InvalidLeadError
from lead_finder.finder import Estimate, LeadFinder
from lead_finder.tables import FORMULA_PREFIXES, neutralise, read_table, write_table

pytestmark = pytest.mark.integration


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Full Name": ["Jane Doe", "doe, jane", "Hank Scorpio", "", "Pat Unknown"],
            "Employer": ["Acme Inc.", "ACME", "Globex Corporation", "Acme", "Nowhere Ltd"],
            "Score": [1, 2, 3, 4, 5],
        },
        index=pd.Index([10, 20, 30, 40, 50], name="row"),
    )


def test_enrich_adds_columns_and_keeps_index(make_finder: Callable[..., LeadFinder]) -> None:
    with live_server() as srv:
        finder = make_finder(srv)
        out = lead_finder.enrich(frame(), finder=finder, progress=False)  # columns detected
        assert len(srv.stats.charges) == 3
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == [10, 20, 30, 40, 50] and out.index.name == "row"
    assert list(out.columns) == ["Full Name", "Employer", "Score", "email", "email_status",
                                 "email_type", "lookup_error"]
    assert out.loc[10, "email"] == out.loc[20, "email"] == "jane.doe@acme-inc.com"
    assert out.loc[30, "email_status"] == "OK" and out.loc[30, "email_type"] == "COMPANY"
    assert out.loc[40, "email_status"] == "ERROR" and out.loc[40, "lookup_error"] == (
        "name is empty")
    assert out.loc[50, "email_status"] == "NOT_FOUND"
    assert "email" not in frame().columns  # the input is untouched


def test_personal_mode_adds_personal_email(make_finder: Callable[..., LeadFinder]) -> None:
    with live_server() as srv:
        out = lead_finder.enrich(frame().iloc[:1], name="Full Name", company="Employer",
                                 mode="personal", finder=make_finder(srv), progress=False)
        assert srv.stats.total_cents == 20
    assert isinstance(out, pd.DataFrame)
    assert out.iloc[0]["personal_email"] == "janedoe.personal@gmail.com"
    assert out.iloc[0]["email_type"] == "PERSONAL"


def test_dry_run_spends_nothing(make_finder: Callable[..., LeadFinder]) -> None:
    with live_server() as srv:
        estimate = lead_finder.enrich(frame(), finder=make_finder(srv), dry_run=True)
        assert sum(srv.stats.requests.values()) == 0
    assert isinstance(estimate, Estimate)
    assert (estimate.rows, estimate.invalid, estimate.unique, estimate.billable) == (5, 1, 3, 3)


def test_unknown_column_is_a_clear_error(make_finder: Callable[..., LeadFinder]) -> None:
    with live_server() as srv, pytest.raises(InvalidLeadError, match="no column 'Name'"):
        lead_finder.enrich(frame(), name="Name", company="Employer", finder=make_finder(srv))


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_exports_never_hold_formulas(tmp_path: Path, prefix: str) -> None:
    df = pd.DataFrame({"note": [f"{prefix}1+2", "plain", None], "n": [1, 2, 3]})
    write_table(df, tmp_path / "o.xlsx")
    write_table(df, tmp_path / "o.csv")
    sheet = openpyxl.load_workbook(tmp_path / "o.xlsx").active
    assert sheet is not None
    cell = sheet["A2"]
    # a text cell, value intact (XML itself turns a bare CR into LF when the file is read)
    assert cell.data_type == "s" and cell.value == f"{prefix}1+2".replace("\r", "\n")
    assert sheet["B2"].value == 1
    back = read_table(tmp_path / "o.csv")
    assert back.loc[0, "note"] == neutralise(f"{prefix}1+2") == f"'{prefix}1+2"
    assert back.loc[1, "note"] == "plain"
