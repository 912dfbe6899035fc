"""What the panel shows, as pure functions from values to text and HTML (tested without widgets).

Everything that came from data is escaped: a lead list can hold `<script>` as easily as `=cmd`.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Iterable, Mapping

import pandas as pd

from ..finder import Estimate, Progress
from ..models import Result, Source, Status
from ..tables import table_bytes

__all__ = [
    "STATUS_LABELS",
    "downloads_html",
    "duration",
    "estimate_html",
    "progress_text",
    "result_counts",
    "run_summary",
    "status_counts",
    "status_chart_html",
    "table_html",
]

#: How each status is named in the panel, in the order the panel lists them.
STATUS_LABELS: Mapping[Status, str] = {
    Status.OK: "found",
    Status.UNKNOWN: "unknown",
    Status.NOT_FOUND: "not found",
    Status.ERROR: "error",
}
_COLOURS: Mapping[Status, str] = {
    Status.OK: "#2e7d32",
    Status.UNKNOWN: "#f9a825",
    Status.NOT_FOUND: "#9e9e9e",
    Status.ERROR: "#c62828",
}


def duration(seconds: float | None) -> str:
    """`75.2` -> "1:15"; hours when needed ("1:02:03"); None -> "–"."""
    if seconds is None:
        return "–"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_counts(counts: Mapping[Status, int]) -> dict[str, int]:
    """Counts by the panel's names: found / unknown / not found / error (PENDING counts as
    error: at the end of a run nothing is still pending)."""
    out = {label: 0 for label in STATUS_LABELS.values()}
    for status, n in counts.items():
        out[STATUS_LABELS.get(status, "error")] += n
    return out


def progress_text(progress: Progress) -> str:
    """"1,155 of 2,000 · found 812 · unknown 40 · not found 300 · error 3 · 0:12 elapsed ·
    ETA 0:09"."""
    parts = [f"{progress.done:,} of {progress.total:,}"]
    parts += [f"{label} {n:,}" for label, n in status_counts(progress.counts).items()]
    parts.append(f"{duration(progress.elapsed)} elapsed")
    parts.append(f"ETA {duration(progress.eta)}")
    return " · ".join(parts)


def estimate_html(estimate: Estimate) -> str:
    """The estimate line, plus what is left of the budget when one is set."""
    text = html.escape(estimate.describe())
    if estimate.budget_left_cents is not None:
        text += f" · budget left ${estimate.budget_left_cents / 100:,.2f}"
        if estimate.budget_left_cents < estimate.cost_cents:
            text += " <b>(the run stops at the budget)</b>"
    return f"<span class='lf-estimate-text'>{text}</span>"


def run_summary(results: Iterable[Result], elapsed: float) -> str:
    """One line about a finished run: rows, where answers came from, cancelled, spent.

    Money is counted once per lead bought (duplicates share one answer)."""
    rows = api = cached = engine = cancelled = 0
    bought: dict[str, int] = {}
    for result in results:
        rows += 1
        if result.source is Source.CACHE:
            cached += 1
        elif result.source is Source.ENGINE:
            engine += 1
        elif result.source is Source.API:
            api += 1
            if result.key is not None:
                bought[result.key] = result.cost_cents or 0
        if result.extra.get("cancelled"):  # find_many marks what a Cancel kept back
            cancelled += 1
    spent = sum(bought.values())
    parts = [f"{rows:,} rows in {duration(elapsed)}",
             f"{api:,} from the API ({len(bought):,} leads bought)",
             f"{cached:,} from the cache"]
    if engine:
        parts.append(f"{engine:,} from the built-in engine")
    parts.append(f"spent ${spent / 100:,.2f}")
    text = " · ".join(parts)
    if cancelled:
        text = (f"Cancelled: {cancelled:,} rows were not sent. What was sent is cached; Run "
                f"again to finish the rest. " + text)
    return text


def status_chart_html(counts: Mapping[Status, int]) -> str:
    """A small horizontal bar chart of the status mix (plain HTML: no plotting library)."""
    total = sum(counts.values()) or 1
    by_label = status_counts(counts)
    rows = []
    for status, label in STATUS_LABELS.items():
        n = by_label[label]
        width = 100 * n / total
        rows.append(
            f"<div class='lf-bar' data-status='{status.value}' style='display:flex;"
            f"align-items:center;gap:6px;margin:1px 0'>"
            f"<span style='width:70px;text-align:right'>{label}</span>"
            f"<span style='display:inline-block;height:12px;width:{width * 2:.1f}px;"
            f"background:{_COLOURS[status]}'></span>"
            f"<span class='lf-count'>{n:,}</span></div>"
        )
    return "<div class='lf-chart-bars'>" + "".join(rows) + "</div>"


_TABLE_STYLE = (
    "<style>.lf-results-table{border-collapse:collapse;font-size:12px}"
    ".lf-results-table th,.lf-results-table td{padding:2px 10px;text-align:left;"
    "white-space:nowrap;border-bottom:1px solid #e0e0e0}"
    ".lf-results-table th{position:sticky;top:0;background:#f5f5f5}</style>"
)


def table_html(df: pd.DataFrame, columns: list[str], limit: int) -> str:
    """The first `limit` rows of `columns` as an escaped HTML table, in a scrolling box."""
    shown = df[columns].head(limit)
    table = shown.to_html(index=False, escape=True, na_rep="", border=0,
                          classes="lf-results-table")
    note = ""
    if len(df) > limit:
        note = (f"<div>First {limit:,} of {len(df):,} rows; <code>panel.result</code> holds "
                f"them all.</div>")
    return f"{_TABLE_STYLE}<div style='max-height:320px;overflow:auto'>{table}</div>{note}"


def _link(data: bytes, filename: str, mime: str, label: str, css: str) -> str:
    href = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return (f"<a class='{css}' download='{html.escape(filename, quote=True)}' href='{href}' "
            f"style='display:inline-block;padding:4px 12px;margin-right:8px;"
            f"border:1px solid #888;border-radius:2px;text-decoration:none'>{label}</a>")


def downloads_html(df: pd.DataFrame, stem: str) -> str:
    """Download links for the results as CSV and XLSX, written like `write_table` (no value
    can become a formula). The files travel inside the page as data: URLs, so nothing is
    written next to the notebook."""
    stem = stem or "leads"
    csv = table_bytes(df, ".csv")
    xlsx = table_bytes(df, ".xlsx")
    return (
        _link(csv, f"{stem}-emails.csv", "text/csv", "Download CSV", "lf-download-csv")
        + _link(xlsx, f"{stem}-emails.xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "Download XLSX", "lf-download-xlsx")
    )


def result_counts(results: Iterable[Result]) -> Counter[Status]:
    """How many results have each status."""
    return Counter(r.status for r in results)
