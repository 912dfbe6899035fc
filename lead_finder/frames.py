"""pandas: `lead_finder.enrich(df, ...)` adds email columns to a DataFrame."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from .errors import InvalidLeadError
from .finder import Estimate, LeadFinder, Progress
from .leads import detect_columns
from .models import Mode, Result

__all__ = [
    "RESULT_COLUMNS", "enrich", "enrich_mapped", "frame_leads", "lead_columns", "results_frame",
]

RESULT_COLUMNS = ("email", "email_status", "email_type", "personal_email", "lookup_error")
_ROLES = ("name", "company", "domain", "linkedin", "first_name", "last_name", "email")

_default_finder: LeadFinder | None = None


def default_finder() -> LeadFinder:
    """The process-wide LeadFinder used when none is passed (settings from env/keyring/config)."""
    global _default_finder
    if _default_finder is None:
        _default_finder = LeadFinder()
    return _default_finder


def lead_columns(
    columns: list[str], overrides: Mapping[str, str | None]
) -> dict[str, str]:
    """Which column holds each lead field: explicit choices first, then auto-detection.

    Auto-detection is used only when neither a name nor a company column was given.
    """
    chosen = {role: col for role, col in overrides.items() if col is not None}
    for role, col in chosen.items():
        if col not in columns:
            raise InvalidLeadError(role, f"there is no column {col!r} (columns: "
                                         f"{', '.join(map(str, columns[:12]))})")
    if not chosen:
        chosen = detect_columns(columns)
    if not ({"name", "first_name", "linkedin", "email"} & chosen.keys()):
        raise InvalidLeadError(
            "name", "could not tell which column holds the names: pass name= (or first_name= "
                    "and last_name=)"
        )
    return chosen


def frame_leads(df: pd.DataFrame, mapping: Mapping[str, str]) -> list[dict[str, Any]]:
    """One lead dict per row, from the columns `mapping` names (role -> column)."""
    picked = df[list(mapping.values())]
    roles = list(mapping.keys())
    return [dict(zip(roles, row, strict=True)) for row in picked.itertuples(index=False)]


def results_frame(results: list[Result], index: pd.Index, mode: Mode) -> pd.DataFrame:
    """The result columns for a list of results, one row per result."""
    rows: list[dict[str, Any]] = []
    for r in results:
        company = next((e for e in r.emails if e.address), None)
        personal = r.best if mode is Mode.PERSONAL else None
        primary = personal if mode is Mode.PERSONAL else r.best
        rows.append({
            "email": (company.address if mode is Mode.PERSONAL and company else
                      primary.address if primary else None),
            "email_status": str(r.status),
            "email_type": primary.type if primary else None,
            "personal_email": personal.address if personal else None,
            "lookup_error": r.error,
            "email_reason": r.extra.get("reason"),
        })
    columns = list(RESULT_COLUMNS)
    if mode is not Mode.PERSONAL:
        columns.remove("personal_email")
    if any(row["email_reason"] for row in rows):  # the built-in engine says why, per row
        columns.append("email_reason")
    return pd.DataFrame(rows, index=index, columns=columns)


def enrich(
    df: pd.DataFrame,
    *,
    name: str | None = None,
    company: str | None = None,
    domain: str | None = None,
    linkedin: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    email: str | None = None,
    mode: Mode | str = Mode.PROFESSIONAL,
    finder: LeadFinder | None = None,
    progress: bool | Callable[[Progress], None] = True,
    dry_run: bool = False,
) -> pd.DataFrame | Estimate:
    """Return a copy of `df` (same index) with `email`, `email_status`, `email_type`,
    `personal_email` (PERSONAL mode) and `lookup_error` columns.

    Columns are auto-detected when neither `name` nor `company` is given. Duplicate and cached
    leads cost nothing. `dry_run=True` returns the `Estimate` and spends nothing.

    >>> out = lead_finder.enrich(df, name="Full Name", company="Company")   # doctest: +SKIP
    """
    mapping = lead_columns(
        [str(c) for c in df.columns],
        {"name": name, "company": company, "domain": domain, "linkedin": linkedin,
         "first_name": first_name, "last_name": last_name, "email": email},
    )
    finder = finder or default_finder()
    if dry_run:
        return finder.estimate(frame_leads(df, mapping), mode=mode)
    return enrich_mapped(df, mapping, mode=mode, finder=finder, progress=progress)


def enrich_mapped(
    df: pd.DataFrame,
    mapping: Mapping[str, str],
    *,
    mode: Mode | str = Mode.PROFESSIONAL,
    finder: LeadFinder | None = None,
    progress: bool | Callable[[Progress], None] = True,
) -> pd.DataFrame:
    """`enrich` with the column mapping already decided (role -> column)."""
    mode = Mode.parse(mode)
    finder = finder or default_finder()
    leads = frame_leads(df, mapping)
    callback: Callable[[Progress], None] | None
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(leads), desc="Finding emails", unit="lead")

        def callback(p: Progress) -> None:
            assert bar is not None
            bar.update(p.done - bar.n)
    elif callable(progress):
        callback = progress
    else:
        callback = None
    try:
        results = finder.find_many(leads, mode=mode, progress=callback)
    finally:
        if bar is not None:
            bar.close()
    out = df.copy()
    added = results_frame(results, df.index, mode)
    for column in added.columns:
        out[column] = added[column]
    return out
