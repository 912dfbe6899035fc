"""The values every layer passes around: modes, statuses, emails and results."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import InvalidLeadError

__all__ = ["Email", "EmailType", "Mode", "Result", "Source", "Status", "PRICE_CENTS"]


class Mode(enum.StrEnum):
    """Which address to look for: a work email, or a personal one (Gmail, Yahoo, ...)."""

    PROFESSIONAL = "PROFESSIONAL"
    PERSONAL = "PERSONAL"

    @classmethod
    def parse(cls, value: object) -> Mode:
        """Read a mode from user input; only case and surrounding spaces are forgiven.

        A typo is an error, never a silent fallback: PERSONAL costs four times as much.
        """
        if isinstance(value, Mode):
            return value
        if value is None:
            return cls.PROFESSIONAL
        if isinstance(value, str):
            text = value.strip().upper()
            if text == "":
                return cls.PROFESSIONAL
            if text in cls.__members__:
                return cls[text]
        shown = str(value)[:40]
        raise InvalidLeadError(
            "mode", f"mode must be PROFESSIONAL or PERSONAL, not {shown!r}"
        )


    @classmethod
    def parse_or_default(cls, value: object) -> Mode:
        """`parse`, but PROFESSIONAL for a bad value: only for labelling a result that already
        reports the bad value as its error (a lookup never runs with a guessed mode)."""
        try:
            return cls.parse(value)
        except InvalidLeadError:
            return cls.PROFESSIONAL


#: Documented list prices per request, in cents.
PRICE_CENTS: Mapping[Mode, int] = {Mode.PROFESSIONAL: 5, Mode.PERSONAL: 20}


class Status(enum.StrEnum):
    """What a result says about the lead.

    `OK`, `UNKNOWN` and `NOT_FOUND` come from the API; `PENDING` (still being looked up) and
    `ERROR` (the lookup could not be done) are lead_finder's own, for cells and rows.
    """

    OK = "OK"
    UNKNOWN = "UNKNOWN"
    NOT_FOUND = "NOT_FOUND"
    PENDING = "PENDING"
    ERROR = "ERROR"

    @classmethod
    def from_raw(cls, raw: str | None) -> Status:
        """Map a raw API status for display: unknown values (CATCH_ALL, RISKY, ...) are UNKNOWN."""
        text = (raw or "").strip().upper()
        if text == "OK":
            return cls.OK
        if text in ("NOT_FOUND", "INVALID", ""):
            return cls.NOT_FOUND
        return cls.UNKNOWN


class EmailType(enum.StrEnum):
    COMPANY = "COMPANY"
    PERSONAL = "PERSONAL"


class Source(enum.StrEnum):
    """Where a result came from."""

    CACHE = "cache"
    API = "api"
    ENGINE = "engine"
    NONE = "none"  # never looked up: invalid input, budget reached, ...


@dataclass(frozen=True, slots=True)
class Email:
    """One address with the status and type the API gave it. `status` keeps the raw string."""

    address: str
    status: str
    type: str

    @property
    def display_status(self) -> Status:
        if not self.address:
            return Status.NOT_FOUND
        return Status.from_raw(self.status)

    def to_entry(self) -> list[str]:
        """The API's `[address, status, type]` form."""
        return [self.address, self.status, self.type]


_RANK = {Status.OK: 0, Status.UNKNOWN: 1, Status.NOT_FOUND: 2}


@dataclass(frozen=True, slots=True)
class Result:
    """The answer for one lead.

    `lead` holds the lead fields as sent to the API (the user's text); `key` is the normalised cache
    key; `ref` is the bulk join key the API echoed (`lead_finder_ref`), when there was one.
    `status` is OK / UNKNOWN / NOT_FOUND for answers, PENDING or ERROR otherwise; `error` then says
    why in a short phrase fit for a cell.
    """

    lead: Mapping[str, Any]
    mode: Mode = Mode.PROFESSIONAL
    emails: tuple[Email, ...] = ()
    personal_emails: tuple[Email, ...] = ()
    cost_cents: int | None = None
    source: Source = Source.API
    key: str | None = None
    error: str | None = None
    pending: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The join key echoed by a bulk answer (`lead_finder_ref`), to match results to inputs.
    ref: str | None = None

    @property
    def candidates(self) -> tuple[Email, ...]:
        """The emails that answer this lead's mode, best first."""
        pool = self.personal_emails if self.mode is Mode.PERSONAL else self.emails
        found = [e for e in pool if e.address]
        return tuple(sorted(found, key=lambda e: _RANK[e.display_status]))

    @property
    def best(self) -> Email | None:
        """The best email for the mode, or None."""
        found = self.candidates
        return found[0] if found else None

    @property
    def email(self) -> str | None:
        """The best address, or None."""
        best = self.best
        return best.address if best else None

    @property
    def status(self) -> Status:
        if self.pending:
            return Status.PENDING
        if self.error is not None:
            return Status.ERROR
        best = self.best
        return best.display_status if best else Status.NOT_FOUND

    @property
    def ok(self) -> bool:
        """True when the lookup was done (whatever it found); False for PENDING and ERROR."""
        return not self.pending and self.error is None

    def with_source(self, source: Source) -> Result:
        return replace(self, source=source)

    @classmethod
    def failed(
        cls, lead: Mapping[str, Any], error: str, *, mode: Mode = Mode.PROFESSIONAL,
        key: str | None = None,
    ) -> Result:
        """A result for a lead that could not be looked up; `error` is the user-facing reason."""
        return cls(lead=lead, mode=mode, key=key, error=error, source=Source.NONE)
