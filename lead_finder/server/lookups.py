"""From a request's lead to a result object: the documented behaviours, prices and charges.

Everything here is the same whatever the backend: an email the lead already has comes back
unchanged; in PERSONAL mode an existing free-mail address is answered at once at no cost; every
result carries `cost_cents`; the lead's own keys are echoed at the top level.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidLeadError
from ..models import PRICE_CENTS, Mode
from .backend import Backend, BackendAnswer, parse_lead
from .gateway import Stats

__all__ = [
    "CENTS_PER_CREDIT",
    "FREE_MAIL_DOMAINS",
    "Lookups",
    "charge_key",
    "is_free_mail",
    "shuffle_results",
]

#: The server's credit unit (SIXTYFOUR_API.md: one example implies 1 credit = 10 cents).
CENTS_PER_CREDIT = 10
#: Result fields that win over a lead key of the same name.
_RESULT_FIELDS = frozenset({"email", "personal_email", "cost_cents"})

#: Domains whose addresses are personal (the API's PERSONAL type), not a company's.
FREE_MAIL_DOMAINS = frozenset(
    {
        "aol.com", "fastmail.com", "gmail.com", "gmx.com", "gmx.de", "gmx.net", "googlemail.com",
        "hey.com", "hotmail.co.uk", "hotmail.com", "hotmail.fr", "icloud.com", "live.com",
        "mac.com", "mail.com", "mail.ru", "me.com", "msn.com", "outlook.com", "pm.me",
        "proton.me", "protonmail.com", "qq.com", "t-online.de", "web.de", "yahoo.co.uk",
        "yahoo.com", "yahoo.fr", "yandex.com", "yandex.ru", "ymail.com", "zoho.com",
    }
)


def is_free_mail(address: str) -> bool:
    """True for an address at a free-mail provider (gmail.com, yahoo.com, ...)."""
    domain = address.rsplit("@", 1)[-1].strip().lower().rstrip(".")
    return domain in FREE_MAIL_DOMAINS


def charge_key(lead: Mapping[str, Any], mode: Mode) -> str:
    """The normalised key a lookup is charged under: `Lead.key(mode)`, as the client computes it.

    A lead that does not parse (no name, say) is still looked up and billed, as the real API
    would; it is keyed by its raw fields.
    """
    try:
        return parse_lead(lead).key(mode)
    except InvalidLeadError:
        raw = {k: v for k, v in lead.items() if not str(k).startswith("lead_finder_")}
        return f"{mode.value}|raw|{json.dumps(raw, sort_keys=True, default=str)}"


def _existing_email(lead: Mapping[str, Any]) -> str | None:
    value = lead.get("email")
    if isinstance(value, str) and "@" in value.strip():
        return value.strip()
    return None


def _status_in(answer: BackendAnswer, address: str) -> str | None:
    wanted = address.casefold()
    for entry in (*answer.email, *answer.personal_email):
        if entry and entry[0].casefold() == wanted and len(entry) > 1:
            return entry[1]
    return None


def _found(entries: Sequence[Sequence[str]]) -> bool:
    return any(e and e[0] and (len(e) < 2 or e[1].upper() != "NOT_FOUND") for e in entries)


def result_object(
    lead: Mapping[str, Any],
    mode: Mode,
    email: list[list[str]],
    personal_email: list[list[str]],
    cost_cents: int,
) -> dict[str, Any]:
    """The API's result object: the lead's keys, then `email`, `personal_email`, `cost_cents`."""
    out = {k: v for k, v in lead.items() if k not in _RESULT_FIELDS}
    out["email"] = email
    if mode is Mode.PERSONAL or personal_email:
        out["personal_email"] = personal_email
    out["cost_cents"] = cost_cents
    return out


class Lookups:
    """Looks leads up in a backend and bills them, counting every charge in `stats`."""

    def __init__(
        self,
        backend: Backend,
        stats: Stats,
        *,
        prices: Mapping[Mode, int] = PRICE_CENTS,
        charge_not_found: bool = True,
        credits: float = 1_000_000.0,
    ) -> None:
        self.backend = backend
        self.stats = stats
        self.prices = dict(prices)
        self.charge_not_found = charge_not_found
        self.initial_credits = credits
        self.spent_cents = 0

    @property
    def balance_credits(self) -> float:
        """What is left, in credits (1 credit = 10 cents)."""
        return self.initial_credits - self.spent_cents / CENTS_PER_CREDIT

    def can_afford(self, leads: int, mode: Mode) -> bool:
        """Whether the balance covers `leads` lookups at list price (checked before any work)."""
        return leads * self.prices[mode] <= self.balance_credits * CENTS_PER_CREDIT

    def _bill(self, lead: Mapping[str, Any], mode: Mode, cents: int) -> None:
        self.spent_cents += cents
        self.stats.charge(charge_key(lead, mode), cents)

    async def answer(self, lead: Mapping[str, Any], mode: Mode, verify: bool) -> dict[str, Any]:
        """The result object for one lead; the lookup is billed as it is made."""
        existing = _existing_email(lead)
        if existing and mode is Mode.PERSONAL and is_free_mail(existing):
            # Documented: answered at once, with no processing, at no cost. Nothing was checked,
            # so the status says so.
            self.stats.charge(charge_key(lead, mode), 0)
            return result_object(lead, mode, [], [[existing, "UNKNOWN", "PERSONAL"]], 0)

        answer = await self.backend.find(lead, mode, verify)
        email = [list(e) for e in answer.email]
        personal = [list(e) for e in answer.personal_email]
        if existing:
            # Documented: an email the lead already has comes back unchanged.
            kind = "PERSONAL" if is_free_mail(existing) else "COMPANY"
            entry = [existing, _status_in(answer, existing) or "UNKNOWN", kind]
            if kind == "COMPANY":
                email = [entry]
            else:
                personal = [entry]
        found = _found(personal if mode is Mode.PERSONAL else email)
        cost = self.prices[mode] if found or self.charge_not_found else 0
        self._bill(lead, mode, cost)
        return result_object(lead, mode, email, personal, cost)

    async def answer_many(
        self, leads: Sequence[Mapping[str, Any]], mode: Mode, verify: bool
    ) -> list[dict[str, Any]]:
        """Result objects for every lead, in input order; the lookups run concurrently."""
        return list(await asyncio.gather(*(self.answer(lead, mode, verify) for lead in leads)))


def shuffle_results(results: Sequence[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The `shuffle` fault: results in random order, about half with 2-item entries."""
    out = [dict(r) for r in results]
    rng.shuffle(out)
    for result in out:
        if rng.random() < 0.5:
            for name in ("email", "personal_email"):
                if name in result:
                    result[name] = [list(e[:2]) for e in result[name]]
    return out
