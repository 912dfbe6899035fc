"""lead_finder: find email addresses for sales leads without paying twice.

    >>> import lead_finder
    >>> finder = lead_finder.LeadFinder()                        # doctest: +SKIP
    >>> finder.find("Doe, Jane", "Acme Inc.").email              # doctest: +SKIP
    >>> lead_finder.enrich(df, name="Full Name", company="Company")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AmbiguousRequestError,
    APIError,
    ConfigurationError,
    InvalidLeadError,
    LeadFinderError,
)
from .finder import Estimate, LeadFinder, Progress
from .leads import Lead
from .models import Email, Mode, Result, Source, Status

if TYPE_CHECKING:
    from .frames import enrich
    from .notebook import panel

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AmbiguousRequestError",
    "ConfigurationError",
    "Email",
    "Estimate",
    "InvalidLeadError",
    "Lead",
    "LeadFinder",
    "LeadFinderError",
    "Mode",
    "Progress",
    "Result",
    "Source",
    "Status",
    "__version__",
    "enrich",
    "find_email",
    "find_emails",
    "panel",
]


def find_email(name: object = None, company: object = None, **kwargs: Any) -> Result:
    """Find one lead's email with the default LeadFinder (settings from env/keyring/config)."""
    from .frames import default_finder

    return default_finder().find(name, company, **kwargs)


def find_emails(leads: Any, **kwargs: Any) -> list[Result]:
    """Find many leads' emails with the default LeadFinder; results in input order."""
    from .frames import default_finder

    return default_finder().find_many(leads, **kwargs)


def __getattr__(name: str) -> Any:
    # pandas is imported only when the pandas front-end is used
    if name == "enrich":
        from .frames import enrich

        return enrich
    if name == "panel":  # ipywidgets is imported only when the panel is used
        from .notebook import panel

        return panel
    raise AttributeError(f"module 'lead_finder' has no attribute {name!r}")
