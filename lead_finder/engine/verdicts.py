"""What the engine answers: reasons, decisions and the `Result`s built from them.

`decide` turns one lead's ranked addresses and what probing its domain found into a `Decision`
(status, address, reason); the `*_result` helpers shape `Result`s the way every other backend
does, with the reason in `Result.extra["reason"]`. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..leads import Lead, registrable_domain
from ..models import Email, Mode, Result, Source
from .candidates import local_part
from .smtp import ProbeResult, Verdict

__all__ = [
    "REASONS",
    "SMTP_UNREACHABLE_HINT",
    "UNVERIFIED_HINT",
    "Decision",
    "answer",
    "decide",
    "given_address",
    "no_domain_result",
    "personal_result",
]

#: Every reason the engine gives, with what it means.
REASONS: Mapping[str, str] = {
    "verified": "the mail server accepted this address and rejected a made-up one",
    "unverified": "best-ranked pattern at a domain that receives mail; not checked with its "
                  "mail server (SMTP probing is off)",
    "catch_all": "the mail server accepts any address at this domain, so this one could not "
                 "be checked",
    "greylisted": "the mail server asked to try again later (greylisting), also after a retry",
    "temp_error": "the mail server had a temporary problem or closed the session",
    "policy_block": "the mail server refused to answer us (block list, policy or reputation)",
    "protocol_error": "the mail server did not understand our commands",
    "timeout": "the mail server stopped answering",
    "rcpt_limit": "not every candidate could be checked within the per-session limit; the "
                  "best one not rejected is shown",
    "smtp_unreachable": "port 25 of the domain's mail servers could not be reached from here",
    "rejected": "the mail server rejected every candidate address",
    "no_mx": "the domain has no mail server",
    "null_mx": "the domain says it accepts no mail (null MX)",
    "nxdomain": "the domain does not exist",
    "dns_error": "DNS did not answer (no network, or the domain's DNS is broken)",
    "no_domain": "no company domain: give a domain, website or work email",
    "free_mail_domain": "only a free-mail domain was given, which is not a company's domain",
    "no_name": "no person's name to build addresses from",
    "personal_not_supported": "the built-in engine does not look for personal addresses",
    "engine_error": "the engine failed on this lead (a bug: please report it)",
}

#: Shown with `smtp_unreachable`.
SMTP_UNREACHABLE_HINT = (
    "Outgoing port 25 looks blocked on this network (most home, office and cloud networks block "
    "it). The hosted Sixtyfour API verifies addresses without it: set SIXTYFOUR_API_KEY."
)
UNVERIFIED_HINT = (
    "Run `lead-finder config enable-smtp-probe` to check addresses with the mail server, or set "
    "SIXTYFOUR_API_KEY to use the hosted API."
)
PERSONAL_HINT = "Set SIXTYFOUR_API_KEY to find personal addresses with the hosted API."


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one lead: status (OK, UNKNOWN, NOT_FOUND), address ("" for none),
    reason code and a sentence for people."""

    status: str
    address: str
    reason: str
    detail: str


def decide(addresses: Sequence[str], probe: ProbeResult) -> Decision:
    """The answer for one lead from its ranked addresses and what probing its domain found."""
    if not addresses:
        return Decision("NOT_FOUND", "", "no_name", REASONS["no_name"])
    best = addresses[0]
    session = probe.session
    if session is None or session.failure is not None:
        return Decision("UNKNOWN", best, probe.failure or "temp_error", probe.detail)
    if session.random is Verdict.ACCEPTED:
        return Decision("UNKNOWN", best, "catch_all",
                        f"{session.host} accepts any address, even a made-up one")
    if session.random is not Verdict.REJECTED:
        return Decision("UNKNOWN", best, "greylisted", session.detail)
    for address in addresses:
        if session.verdicts.get(address) is Verdict.ACCEPTED:
            return Decision("OK", address, "verified",
                            f"{session.host} accepted it and rejected a made-up address")
    left = [a for a in addresses if session.verdicts.get(a) is not Verdict.REJECTED]
    if not left:
        return Decision("NOT_FOUND", "", "rejected",
                        f"{session.host} rejected all {len(addresses)} candidate addresses")
    if any(session.verdicts.get(a) is Verdict.TEMPORARY for a in addresses):
        reason = "greylisted" if probe.retried else "temp_error"
    elif session.stopped is not None:
        reason = session.stopped
    else:
        reason = "rcpt_limit"
    rejected = sum(1 for a in addresses if session.verdicts.get(a) is Verdict.REJECTED)
    detail = f"{session.host} rejected {rejected} candidate(s); {REASONS[reason]}"
    return Decision("UNKNOWN", left[0], reason, detail)


def answer(
    lead: Lead,
    mode: Mode,
    decision: Decision,
    *,
    domain: str | None = None,
    guessed: bool = False,
    guess_detail: str = "",
    ranked: Sequence[tuple[str, str]] = (),
    rejected: frozenset[str] = frozenset(),
    **extra: Any,
) -> Result:
    """The engine's `Result` for one lead: the decision's address and status, with the reason,
    domain, pattern and (when UNKNOWN) up to two alternatives not rejected in `extra`."""
    info: dict[str, Any] = {
        "reason": decision.reason,
        "detail": decision.detail,
        "domain": domain,
        "domain_guessed": guessed,
    }
    if guessed:
        info["domain_note"] = guess_detail
    patterns = dict(ranked)
    if decision.address:
        info["pattern"] = patterns.get(decision.address)
    if decision.status == "UNKNOWN":
        info["alternatives"] = [
            a for a, _ in ranked if a != decision.address and a not in rejected
        ][:2]
    info.update(extra)
    return Result(
        lead=lead.to_api(),
        mode=mode,
        emails=(Email(decision.address, decision.status, "COMPANY"),),
        source=Source.ENGINE,
        key=lead.key(mode),
        extra=info,
    )


def given_address(lead: Lead, domain: str | None) -> str | None:
    """The lead's own address, lowercased, when it is at `domain` (or a subdomain of it)."""
    if lead.email is None or domain is None:
        return None
    split = local_part(lead.email)
    if split is None or registrable_domain(split[1]) != domain:
        return None
    return f"{split[0]}@{split[1]}"


def personal_result(lead: Lead) -> Result:
    """NOT_FOUND for PERSONAL mode: the engine never invents personal addresses."""
    return Result(
        lead=lead.to_api(),
        mode=Mode.PERSONAL,
        personal_emails=(Email("", "NOT_FOUND", "PERSONAL"),),
        source=Source.ENGINE,
        key=lead.key(Mode.PERSONAL),
        extra={
            "reason": "personal_not_supported",
            "detail": REASONS["personal_not_supported"],
            "domain": None,
            "domain_guessed": False,
            "hint": PERSONAL_HINT,
        },
    )


def no_domain_result(lead: Lead, mode: Mode, free_mail: str | None) -> Result:
    """NOT_FOUND for a lead with no company domain (saying so when only free mail was given)."""
    if free_mail is not None:
        decision = Decision(
            "NOT_FOUND", "", "free_mail_domain",
            f"{free_mail} is a free-mail provider, not the company's domain; "
            "give the company's domain or website",
        )
    else:
        decision = Decision("NOT_FOUND", "", "no_domain", REASONS["no_domain"])
    return answer(lead, mode, decision)
