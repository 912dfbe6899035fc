"""A Sixtyfour-compatible Find Email API server over a pluggable backend.

It is the team gateway (`lead-finder serve`: only the server holds the real key) and the loopback
peer that the client's integration tests run against. Needs the `server` extra:
`pip install 'lead-finder[server]'`.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "lead_finder.server needs FastAPI and uvicorn: pip install 'lead-finder[server]'"
    ) from exc

from .app import MAX_BULK_LEADS, build_backend, create_app, run
from .backend import (
    Backend,
    BackendAnswer,
    BackendError,
    DirectoryBackend,
    FinderBackend,
    Person,
)
from .gateway import FAULTS, Stats

__all__ = [
    "FAULTS",
    "MAX_BULK_LEADS",
    "Backend",
    "BackendAnswer",
    "BackendError",
    "DirectoryBackend",
    "FinderBackend",
    "Person",
    "Stats",
    "build_backend",
    "create_app",
    "run",
]
