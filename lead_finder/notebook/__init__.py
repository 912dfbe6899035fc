"""Jupyter front-end: `lead_finder.panel(df)` shows a panel that maps columns, shows the cost,
runs, shows progress, cancels, and hands back `panel.result`.

Needs the `notebook` extra: `pip install 'lead-finder[notebook]'` (ipywidgets 8).
"""

from __future__ import annotations

try:
    import ipywidgets  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "lead_finder.notebook needs ipywidgets 8: pip install 'lead-finder[notebook]'"
    ) from exc

from .panel import MAX_UPLOAD_BYTES, Panel, panel

__all__ = ["MAX_UPLOAD_BYTES", "Panel", "panel"]
