"""The Jupyter panel: pick leads, map columns, see the cost, run, watch, stop, download.

Threading. Widget callbacks run on the kernel's main thread and return at once. Estimates run on
one estimate thread (the newest request wins) and a run on one run thread; those threads only
set traits, which ipykernel sends to the browser from any thread (ipykernel 7.0.0 could not:
hence `ipykernel!=7.0.0`). They never `print`, `display` or enter an `Output` context, which
would write into whichever cell is executing. Cancel is a `threading.Event` that `find_many`
checks before sending each group of leads: jobs already sent finish and are cached.

The API key never enters a trait that stays set: the password field is emptied the moment its
value reaches the kernel, so neither the notebook, its outputs nor its saved widget state hold it.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ipywidgets as widgets
import pandas as pd

from ..columns import COLUMN_ROLES, detect_columns
from ..config import Secret
from ..errors import LeadFinderError, user_message
from ..finder import Estimate, LeadFinder, Progress
from ..frames import frame_leads, results_frame
from ..models import Mode, Result
from ..tables import read_table
from . import views

__all__ = ["MAX_UPLOAD_BYTES", "Panel", "panel"]

log = logging.getLogger("lead_finder.notebook")

#: Jupyter's default websocket message limit: bigger uploads never reach the kernel.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024

ROLE_LABELS: Mapping[str, str] = {
    "name": "Full name",
    "first_name": "First name",
    "last_name": "Last name",
    "company": "Company",
    "domain": "Domain / website",
    "linkedin": "LinkedIn",
    "email": "Existing email",
}
_NAME_ROLES = frozenset({"name", "first_name", "linkedin", "email"})
_NONE = "—"
# Progress callbacks arrive once per lead; the browser needs far fewer updates than that.
_PROGRESS_EVERY = 0.15


@dataclass(frozen=True)
class _Plan:
    """Everything a run needs, frozen when Run is clicked (later edits do not leak in)."""

    df: pd.DataFrame
    mapping: Mapping[str, Any]
    mode: Mode

    def leads(self) -> list[dict[str, Any]]:
        """One lead dict per row (built on a worker thread: it touches every row)."""
        return frame_leads(self.df, self.mapping)


def _css(widget: widgets.DOMWidget, name: str) -> Any:
    # Stable class names for browser tests: ipywidgets' own classes differ between versions.
    widget.add_class(name)
    return widget


class Panel:
    """An enrichment panel for a DataFrame, a CSV/XLSX path or an uploaded file.

    >>> panel = lead_finder.panel(df)          # doctest: +SKIP
    >>> panel.result                            # the DataFrame with email columns, after Run

    `finder` defaults to a new `LeadFinder()` (settings from the environment, keyring or config
    file; the panel closes it in `close()`). The verify toggle sets `finder.verify`. Runs whose
    estimate is above `confirm_above_cents` (default: the `confirm_above` setting, $5) ask
    first; None never asks. `table_rows` caps the rows shown (all are in `result`).
    """

    def __init__(
        self,
        df: pd.DataFrame | str | os.PathLike[str] | None = None,
        *,
        finder: LeadFinder | None = None,
        mode: Mode | str = Mode.PROFESSIONAL,
        confirm_above_cents: int | None | Literal["settings"] = "settings",
        table_rows: int = 200,
    ) -> None:
        self._owns_finder = finder is None
        self.finder = finder if finder is not None else LeadFinder()
        self.confirm_above_cents: int | None = (
            self.finder.settings.confirm_above_cents if confirm_above_cents == "settings"
            else confirm_above_cents
        )
        self.table_rows = table_rows
        #: The leads the panel works on, and where they came from.
        self.df: pd.DataFrame | None = None
        self.source_name = ""
        #: The input rows with the email columns added, once a run has finished.
        self.result: pd.DataFrame | None = None
        #: The per-row results of the last run, in row order.
        self.results: list[Result] | None = None
        #: The newest estimate shown.
        self.estimate: Estimate | None = None
        #: The exception that stopped the last run, if one did (the panel shows one line).
        self.error: BaseException | None = None

        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._run_thread: threading.Thread | None = None
        self._estimates = ThreadPoolExecutor(1, thread_name_prefix="lead-finder-estimate")
        self._estimate_future: Future[None] | None = None
        self._generation = 0
        self._quiet = False  # set while the panel itself changes several inputs at once
        self._busy = False
        self._pending: _Plan | None = None
        self._last_progress = 0.0

        self._build(Mode.parse(mode))
        if df is not None:
            if isinstance(df, pd.DataFrame):
                self.set_dataframe(df, "DataFrame")
            else:
                self.load_path(df)

    # -- widgets ---------------------------------------------------------------------------------

    def _build(self, mode: Mode) -> None:
        self.source_label = _css(widgets.HTML("No leads yet: pass a DataFrame, type a path or "
                                              "upload a file."), "lf-source")
        self.path_input = _css(widgets.Text(placeholder="path/to/leads.csv or .xlsx",
                                            description="File", continuous_update=False),
                               "lf-path")
        self.load_button = _css(widgets.Button(description="Load", icon="folder-open"), "lf-load")
        self.upload = _css(widgets.FileUpload(accept=".csv,.tsv,.txt,.xlsx,.xlsm",
                                              multiple=False, description="Upload"), "lf-upload")
        upload_note = widgets.HTML(
            "<small>Uploads are limited to about 10 MB; for bigger files type a path or pass a "
            "DataFrame. An uploaded file is read, then cleared, so it is not saved into the "
            "notebook.</small>"
        )
        self.key_input = _css(widgets.Password(
            placeholder="Sixtyfour API key, for this session only", description="API key",
            continuous_update=False), "lf-key")
        self.key_note = _css(widgets.HTML(
            "<small>No API key is configured, so lookups use the built-in engine (free, and "
            "less sure than the hosted API). To use the Sixtyfour API, paste a key here: this "
            "panel uses it until the kernel stops, and it is never written into the notebook. "
            "To keep one, set SIXTYFOUR_API_KEY or run <code>lead-finder config set-key</code>."
            "</small>"),
            "lf-key-note")
        self.key_box = widgets.VBox([self.key_note, self.key_input])
        if self.finder.settings.api_key is not None:
            self.key_box.layout.display = "none"

        self.mapping: dict[str, widgets.Dropdown] = {
            role: _css(widgets.Dropdown(options=[(_NONE, None)], value=None,
                                        description=ROLE_LABELS[role],
                                        style={"description_width": "120px"}),
                       f"lf-map-{role.replace('_', '-')}")
            for role in COLUMN_ROLES
        }
        self.mode = _css(widgets.ToggleButtons(
            options=[("Professional", Mode.PROFESSIONAL), ("Personal", Mode.PERSONAL)],
            value=mode, description="Look for", style={"description_width": "initial"}),
            "lf-mode")
        self.verify = _css(widgets.Checkbox(value=self.finder.verify, description="Verify emails",
                                            indent=False), "lf-verify")
        self.estimate_label = _css(widgets.HTML(""), "lf-estimate")
        self.run_button = _css(widgets.Button(description="Run", button_style="primary",
                                              icon="play", disabled=True), "lf-run")
        self.cancel_button = _css(widgets.Button(description="Cancel", icon="stop",
                                                 disabled=True), "lf-cancel")
        self.confirm_text = _css(widgets.HTML(""), "lf-confirm-text")
        self.confirm_button = _css(widgets.Button(description="Spend it", button_style="warning"),
                                   "lf-confirm")
        self.decline_button = _css(widgets.Button(description="Not now"), "lf-decline")
        self.confirm_box = widgets.HBox([self.confirm_text, self.confirm_button,
                                         self.decline_button])
        self.confirm_box.layout.display = "none"
        self.progress = _css(widgets.IntProgress(value=0, min=0, max=1, bar_style="info"),
                             "lf-progress")
        self.progress_text = _css(widgets.HTML(""), "lf-progress-text")
        self.message = _css(widgets.HTML(""), "lf-message")
        self.chart = _css(widgets.HTML(""), "lf-chart")
        self.table = _css(widgets.HTML(""), "lf-table")
        self.downloads = _css(widgets.HTML(""), "lf-downloads")

        roles = list(self.mapping.values())
        self.widget = _css(widgets.VBox([
            widgets.HTML("<b>Find emails</b>"),
            self.source_label,
            widgets.HBox([self.path_input, self.load_button, self.upload]),
            upload_note,
            self.key_box,
            widgets.GridBox(roles, layout=widgets.Layout(
                grid_template_columns="repeat(2, minmax(260px, 1fr))")),
            widgets.HBox([self.mode, self.verify]),
            self.estimate_label,
            widgets.HBox([self.run_button, self.cancel_button]),
            self.confirm_box,
            widgets.HBox([self.progress, self.progress_text]),
            self.message,
            widgets.HBox([self.chart, self.downloads]),
            self.table,
        ]), "lf-panel")

        self.load_button.on_click(lambda _: self._on_load())
        self.path_input.observe(lambda _: self._on_load(), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.key_input.observe(self._on_key, names="value")
        for dropdown in roles:
            dropdown.observe(lambda _: self.refresh_estimate(), names="value")
        self.mode.observe(lambda _: self.refresh_estimate(), names="value")
        self.verify.observe(self._on_verify, names="value")
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.confirm_button.on_click(lambda _: self._on_confirm())
        self.decline_button.on_click(lambda _: self._hide_confirm("Not started."))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- sources ---------------------------------------------------------------------------------

    def set_dataframe(self, df: pd.DataFrame, source_name: str = "DataFrame") -> None:
        """Work on `df`: fill the column dropdowns by auto-detection and show the estimate."""
        if self.running:
            self._say("A run is in progress: cancel it or wait before changing the leads.")
            return
        self.df = df
        self.source_name = source_name
        self.result = self.results = None
        labels = list(df.columns)
        by_name = {str(label): label for label in labels}
        detected = detect_columns(list(by_name))
        options = [(_NONE, None)] + [(str(label), label) for label in labels]
        self._quiet = True  # the dropdowns change one by one: estimate once, after
        try:
            for role, dropdown in self.mapping.items():
                dropdown.options = options
                dropdown.value = by_name[detected[role]] if role in detected else None
        finally:
            self._quiet = False
        self.source_label.value = (
            f"<b>{_escape(source_name)}</b>: {len(df):,} rows × {len(labels):,} columns"
        )
        self.chart.value = self.table.value = self.downloads.value = ""
        self.progress.value = 0
        self.progress_text.value = ""
        self._say("")
        self.refresh_estimate()

    def load_path(self, path: str | os.PathLike[str]) -> None:
        """Read a CSV or XLSX file (as text: no number or date guessing) and work on it."""
        df = self._read(Path(path))
        if df is not None:
            self.set_dataframe(df, Path(path).name)

    def _read(self, path: Path) -> pd.DataFrame | None:
        try:
            return read_table(path)
        except LeadFinderError as exc:
            self._say(str(exc), error=True)
        except Exception as exc:  # a file the readers choke on is the user's problem to fix
            self.error = exc
            self._say(f"{path.name} could not be read ({type(exc).__name__})", error=True)
        return None

    def _on_load(self) -> None:
        path = self.path_input.value.strip()
        if path:
            self.load_path(path)

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        name = Path(str(item.get("name") or "upload.csv")).name
        content = bytes(item["content"])
        # Clear first, so the file's bytes are not kept in the widget state even if reading fails.
        self.upload.value = ()
        with tempfile.TemporaryDirectory(prefix="lead-finder-upload-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(content)
            df = self._read(path)
        if df is not None:
            self.set_dataframe(df, name)

    # -- the key ---------------------------------------------------------------------------------

    def _on_key(self, change: Mapping[str, Any]) -> None:
        text = str(change["new"] or "").strip()
        if not text:
            return
        self.key_input.value = ""  # out of the widget state before anything else happens
        if self.running:
            self._say("A run is in progress: set the key after it ends.", error=True)
            return
        self.use_key(Secret(text))

    def use_key(self, key: Secret) -> None:
        """Use `key` for this panel's lookups until the kernel stops (it is not stored)."""
        if self.running:
            self._say("A run is in progress: set the key after it ends.", error=True)
            return
        new = self.finder.with_key(key)
        new.verify = self.verify.value
        old, self.finder = self.finder, new
        if self._owns_finder:
            self._wait_estimate()
            old.close()
        self._owns_finder = True
        self.key_note.value = "<small>API key set for this session only (not saved).</small>"
        self.key_input.layout.display = "none"
        self._say("")
        self.refresh_estimate()

    # -- estimate --------------------------------------------------------------------------------

    def _plan(self) -> _Plan | str:
        """The run the widgets describe, or why there is none."""
        if self.df is None:
            return "No leads yet: pass a DataFrame, type a path or upload a file."
        mapping = {role: d.value for role, d in self.mapping.items() if d.value is not None}
        if not _NAME_ROLES & mapping.keys():
            return "Choose the column with the names (or the first and last names)."
        columns = list(mapping.values())
        if len(set(map(str, columns))) < len(columns):
            return "Each column can be used for one field only."
        return _Plan(self.df, mapping, Mode.parse(self.mode.value))

    def refresh_estimate(self) -> None:
        """Recompute the estimate in the background (the newest request wins)."""
        if self._quiet:
            return
        self._hide_confirm("")
        with self._lock:
            self._generation += 1
            generation = self._generation
        plan = self._plan()
        if isinstance(plan, str):
            self.estimate = None
            self.estimate_label.value = f"<i>{_escape(plan)}</i>"
            self.run_button.disabled = True
            return
        self.run_button.disabled = self._busy
        self.estimate_label.value = "<i>estimating…</i>"
        finder = self.finder

        def work() -> None:
            if generation != self._generation:
                return  # a newer request is queued behind this one
            try:
                estimate = finder.estimate(plan.leads(), mode=plan.mode)
            except Exception as exc:  # shown in the panel; a callback thread has no traceback UI
                if generation == self._generation:
                    self.estimate_label.value = f"<i>{_escape(_reason(exc))}</i>"
                return
            if generation == self._generation:
                self.estimate = estimate
                self.estimate_label.value = views.estimate_html(estimate)

        self._estimate_future = self._estimates.submit(work)

    def _on_verify(self, change: Mapping[str, Any]) -> None:
        self.finder.verify = bool(change["new"])  # part of the cache key: estimate again
        self.refresh_estimate()

    # -- run -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from Run until the run (or its cost check) has finished."""
        return self._busy

    def run(self) -> None:
        """What the Run button does: check the cost, ask above the threshold, then find emails
        on a background thread. Returns at once; `wait()` blocks until it is done."""
        self._start(confirmed=False)

    def _on_confirm(self) -> None:
        if self._pending is None:
            return
        plan, self._pending = self._pending, None
        self.confirm_box.layout.display = "none"
        self._start(confirmed=True, plan=plan)

    def _start(self, *, confirmed: bool, plan: _Plan | None = None) -> None:
        with self._lock:
            if self.running:
                return
            if plan is None:
                made = self._plan()
                if isinstance(made, str):
                    self._say(made, error=True)
                    return
                plan = made
            self._hide_confirm("")
            self._cancel.clear()
            self._busy = True
            self._set_busy(True)
            self.progress.max = max(1, len(plan.df))
            self.progress.value = 0
            self.progress_text.value = ""
            self._say("Checking the cost…")
            self._run_thread = threading.Thread(
                target=self._work, args=(plan, confirmed), name="lead-finder-panel-run",
                daemon=True,
            )
            self._run_thread.start()

    def cancel(self) -> None:
        """Stop sending leads; jobs already sent finish and are cached, so nothing paid is lost."""
        if not self.running:
            return
        self._cancel.set()
        self.cancel_button.disabled = True
        self._say("Stopping: no more leads are sent. Jobs already sent finish and are cached, "
                  "so nothing paid for is lost.")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run and estimate are done; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        thread = self._run_thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._wait_estimate(left)

    def _wait_estimate(self, timeout: float | None = None) -> bool:
        future = self._estimate_future
        if future is None:
            return True
        try:
            future.result(timeout)
        except TimeoutError:
            return False
        return True

    def _work(self, plan: _Plan, confirmed: bool) -> None:
        """The run thread: estimate, maybe ask, find, show. Sets traits only."""
        finder = self.finder
        started = time.monotonic()
        self.error = None
        try:
            leads = plan.leads()
            estimate = finder.estimate(leads, mode=plan.mode)
            self.estimate = estimate
            self.estimate_label.value = views.estimate_html(estimate)
            limit = self.confirm_above_cents
            if not confirmed and limit is not None and estimate.cost_cents > limit:
                self._ask(plan, estimate, limit)
                return
            self.progress.max = max(1, len(leads))
            self.progress.value = 0
            self.progress.bar_style = "info"
            self._say("Finding emails…")
            results = finder.find_many(leads, mode=plan.mode, progress=self._on_progress,
                                       cancel=self._cancel)
            self._show(plan, results, time.monotonic() - started)
        except Exception as exc:  # the panel is the edge: a message, never a traceback
            # logged at debug only: a handler-less warning would go to stderr, which ipykernel
            # prints into whichever cell happens to be running
            log.debug("the panel's run failed", exc_info=True)
            self.error = exc
            self.progress.bar_style = "danger"
            self._say(_reason(exc), error=True)
        finally:
            self._busy = False
            self._set_busy(False)

    def _on_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last_progress < _PROGRESS_EVERY and progress.done < progress.total:
            return
        self._last_progress = now
        self.progress.max = max(1, progress.total)
        self.progress.value = progress.done
        self.progress_text.value = _escape(views.progress_text(progress))

    def _ask(self, plan: _Plan, estimate: Estimate, limit: int) -> None:
        self._pending = plan
        cost = f"${estimate.cost_cents / 100:,.2f}"
        self.confirm_text.value = (
            f"This run costs about <b>{cost}</b> ({estimate.billable:,} leads to buy), more "
            f"than the ${limit / 100:,.2f} that needs a confirmation."
        )
        self.confirm_button.description = f"Spend {cost}"
        self.confirm_box.layout.display = "flex"
        self._say("Waiting for your confirmation.")

    def _hide_confirm(self, message: str) -> None:
        if self._pending is None and self.confirm_box.layout.display == "none":
            return
        self._pending = None
        self.confirm_box.layout.display = "none"
        self._say(message)

    def _show(self, plan: _Plan, results: list[Result], elapsed: float) -> None:
        out = plan.df.copy()
        added = results_frame(results, plan.df.index, plan.mode)
        for column in added.columns:
            out[column] = added[column]
        self.results = results
        self.result = out
        counts = views.result_counts(results)
        self.progress.value = self.progress.max
        cancelled = self._cancel.is_set()
        self.progress.bar_style = "warning" if cancelled else "success"
        final = Progress(done=len(results), total=len(results), counts=counts,
                         started=time.monotonic() - elapsed)
        self.progress_text.value = _escape(views.progress_text(final))
        self.chart.value = views.status_chart_html(counts)
        # who, then what was found, then the other inputs (a long URL column goes last)
        who = [plan.mapping[r] for r in ("name", "first_name", "last_name", "company")
               if r in plan.mapping]
        others = [c for r, c in plan.mapping.items() if c not in who and str(c) not in added]
        shown = [*who, *added.columns, *others]
        self.table.value = views.table_html(out, shown, self.table_rows)
        self.downloads.value = views.downloads_html(out, Path(self.source_name).stem.lower()
                                                    if self.source_name != "DataFrame" else "")
        self._say(_escape(views.run_summary(results, elapsed)), error=False, escaped=True)

    def _set_busy(self, busy: bool) -> None:
        for control in (*self.mapping.values(), self.mode, self.verify, self.path_input,
                        self.load_button, self.upload, self.key_input):
            control.disabled = busy
        self.run_button.disabled = busy or isinstance(self._plan(), str)
        self.cancel_button.disabled = not busy
        if not busy and self._pending is None:
            self.refresh_estimate()  # cached counts changed

    def _say(self, text: str, *, error: bool = False, escaped: bool = False) -> None:
        body = text if escaped else _escape(text)
        self.message.value = (f"<span style='color:#c62828'>{body}</span>" if error and body
                              else body)

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel a run, wait for it, close the widgets and the panel's own LeadFinder."""
        self.cancel()
        self.wait()
        self._estimates.shutdown(wait=True)
        _close_tree(self.widget)
        if self._owns_finder:
            self.finder.close()


def _close_tree(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LeadFinderError):
        return user_message(exc)
    return f"unexpected error ({type(exc).__name__}): panel.error holds the details"


def panel(
    df: pd.DataFrame | str | os.PathLike[str] | None = None, **kwargs: Any
) -> Panel:
    """Display an enrichment panel for `df` (a DataFrame or a CSV/XLSX path) and return it.

    `kwargs` go to `Panel` (finder=, mode=, confirm_above_cents=, table_rows=). After a run,
    `panel.result` holds the DataFrame with the email columns.
    """
    from IPython.display import display

    made = Panel(df, **kwargs)
    display(made)  # type: ignore[no-untyped-call]  # IPython ships no annotations for it
    return made

