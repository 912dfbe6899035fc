"""Where the server's answers come from: the `Backend` protocol and the `DirectoryBackend`.

A backend is asked about one lead at a time and answers with the email entries it found, in the
API's `[address, status, type]` form. Pricing, the documented special cases (an email the lead
already has, free-mail in PERSONAL mode) and result shaping are the server's job, not the
backend's, so every backend behaves the same on the wire.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidLeadError, LeadFinderError
from ..leads import Lead, company_key, name_key, registrable_domain
from ..models import Mode

if TYPE_CHECKING:
    from ..finder import LeadFinder

__all__ = [
    "Backend",
    "BackendAnswer",
    "BackendError",
    "DirectoryBackend",
    "FinderBackend",
    "Person",
    "not_found",
    "parse_lead",
]

_COLUMNS = ("name", "company", "domain", "email", "email_status", "personal_email",
            "personal_status")


def not_found(kind: str = "COMPANY") -> list[str]:
    """The API's entry for "nothing discovered": `["", "NOT_FOUND", kind]`."""
    return ["", "NOT_FOUND", kind]


@dataclass(frozen=True)
class BackendAnswer:
    """What a backend found for one lead: company emails and personal emails as
    `[address, status, type]` entries (an empty list means the backend has nothing to say)."""

    email: list[list[str]] = field(default_factory=list)
    personal_email: list[list[str]] = field(default_factory=list)


class Backend(Protocol):
    """Anything that can look up one lead for the server."""

    async def find(self, lead: Mapping[str, Any], mode: Mode, verify: bool) -> BackendAnswer:
        """Find emails for `lead` (the request's lead object, every key the client sent)."""
        ...


@dataclass(frozen=True)
class Person:
    """One row of a directory: who they are, and the emails the directory knows for them."""

    name: str
    company: str = ""
    domain: str = ""
    email: str = ""
    email_status: str = "OK"
    personal_email: str = ""
    personal_status: str = "OK"


def parse_lead(lead: Mapping[str, Any]) -> Lead:
    """The request's lead object as a `Lead` (LinkedIn also read from `linkedin_url`).

    Raises InvalidLeadError when it does not describe a person.
    """
    return Lead.parse(
        lead.get("name"),
        lead.get("company"),
        domain=lead.get("domain"),
        linkedin=lead.get("linkedin") or lead.get("linkedin_url"),
        email=lead.get("email"),
        first_name=lead.get("first_name"),
        last_name=lead.get("last_name"),
    )


def _places(company: str | None, domain: str | None) -> set[str]:
    """Normalised forms of where someone works: the company key and the registrable domain
    (a company written as a URL normalises to its domain, so the two meet)."""
    places = set()
    if company:
        places.add(company_key(company))
    if domain:
        registrable = registrable_domain(domain)
        if registrable:
            places.add(registrable)
    places.discard("")
    return places


class DirectoryBackend:
    """A deterministic backend over a table of known people (a CSV, or the bundled demo).

    A lead matches a person by normalised name plus company or domain (lead_finder's own key
    normalisation, so "JOSÉ ÁLVAREZ" at "Acme, Inc." finds "José Álvarez" at "Acme Inc."), or by
    an email the lead already has. Unknown people get a NOT_FOUND entry. `latency` seconds are
    awaited on every lookup, to give benchmarks a realistic, repeatable cost per call. With
    `verify=False` found addresses come back `UNKNOWN`: nothing was checked.
    """

    def __init__(self, people: Iterable[Person], *, latency: float = 0.0) -> None:
        if latency < 0:
            raise ValueError("latency must be zero or more seconds")
        self.latency = latency
        self.people = tuple(people)
        self._index: dict[tuple[str, str], Person] = {}
        self._by_email: dict[str, Person] = {}
        for person in self.people:
            name = name_key(person.name)
            # the first row wins, so a repeated person does not silently change answers
            for place in _places(person.company, person.domain):
                self._index.setdefault((name, place), person)
            for address in (person.email, person.personal_email):
                if address:
                    self._by_email.setdefault(address.casefold(), person)

    @classmethod
    def from_csv(cls, path: str | Path, *, latency: float = 0.0) -> DirectoryBackend:
        """A directory read from a CSV file with columns name, company, domain, email,
        email_status, personal_email, personal_status (only name is required)."""
        with Path(path).open(newline="", encoding="utf-8-sig") as fh:
            return cls(_read_people(fh, str(path)), latency=latency)

    @classmethod
    def demo(cls, *, latency: float = 0.0) -> DirectoryBackend:
        """The bundled demo directory: about 40 fictional people at fictional companies."""
        text = resources.files(__package__).joinpath("demo_directory.csv").read_text("utf-8")
        return cls(_read_people(io.StringIO(text), "demo_directory.csv"), latency=latency)

    def lookup(self, lead: Mapping[str, Any]) -> Person | None:
        """The person this lead names, or None: by normalised name plus company or domain
        (a domain also comes from a company written as a URL, or from the lead's email), else
        by the email the lead already has."""
        try:
            parsed = parse_lead(lead)
        except InvalidLeadError:
            return None
        if parsed.name is not None:
            name = name_key(parsed.name)
            places = _places(parsed.company, parsed.domain)
            if parsed.company_domain:
                places.add(parsed.company_domain)
            for place in sorted(places):
                if (name, place) in self._index:
                    return self._index[(name, place)]
        if parsed.email is not None:
            return self._by_email.get(parsed.email.casefold())
        return None

    async def find(self, lead: Mapping[str, Any], mode: Mode, verify: bool) -> BackendAnswer:
        """Answer from the directory after the configured latency."""
        if self.latency:
            await asyncio.sleep(self.latency)
        person = self.lookup(lead)
        if person is None:
            personal = [not_found("PERSONAL")] if mode is Mode.PERSONAL else []
            return BackendAnswer(email=[not_found("COMPANY")], personal_email=personal)
        email = [_entry(person.email, person.email_status, "COMPANY", verify)]
        personal = []
        if mode is Mode.PERSONAL:
            personal = [_entry(person.personal_email, person.personal_status, "PERSONAL", verify)]
        return BackendAnswer(email=email, personal_email=personal)


def _entry(address: str, status: str, kind: str, verify: bool) -> list[str]:
    if not address:
        return not_found(kind)
    return [address, (status or "OK").upper() if verify else "UNKNOWN", kind]


def _read_people(lines: Iterable[str], where: str) -> list[Person]:
    reader = csv.DictReader(lines)
    columns = [c.strip().lower() for c in reader.fieldnames or ()]
    if "name" not in columns:
        raise ValueError(f"{where}: a directory needs a 'name' column (has {columns})")
    people = []
    for row in reader:
        # k is None for surplus cells in a long row: ignored
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if not values.get("name"):
            continue
        people.append(Person(**{c: values[c] for c in _COLUMNS if values.get(c)}))
    return people


class BackendError(LeadFinderError):
    """The backend could not answer for a lead (budget reached, upstream API down, ...)."""


class FinderBackend:
    """Answers through LeadFinder, with its cache, ledger, batching and budget.

    `local` serves the built-in engine; `hosted` makes the server a team gateway to the hosted
    API that only the server holds the key for. Concurrent requests for single leads coalesce
    into bulk lookups, and everything the team asks for is bought once. `make_finder(verify)`
    builds the LeadFinder for one `verify_emails` setting (the option is part of the cache key).
    """

    def __init__(self, make_finder: Callable[[bool], LeadFinder]) -> None:
        self._make_finder = make_finder
        self._finders: dict[bool, LeadFinder] = {}

    def finder(self, verify: bool) -> LeadFinder:
        if verify not in self._finders:
            self._finders[verify] = self._make_finder(verify)
        return self._finders[verify]

    async def find(self, lead: Mapping[str, Any], mode: Mode, verify: bool) -> BackendAnswer:
        """Look the lead up through the finder; a lookup that could not be done raises."""
        result = await asyncio.wrap_future(self.finder(verify).submit(parse_lead(lead), mode))
        if result.error is not None:
            raise BackendError(result.error)
        return BackendAnswer(
            email=[e.to_entry() for e in result.emails],
            personal_email=[e.to_entry() for e in result.personal_emails],
        )

    def close(self) -> None:
        for finder in self._finders.values():
            finder.close()
