"""Where a domain's mail goes: MX records, the A/AAAA fallback, null MX, and what failed.

`mail_domain_flow` follows RFC 5321 section 5.1 and RFC 7505: the MX records sorted by
preference; with no MX records at all, the domain's own address records (an "implicit MX");
a single MX of "." (null MX) says the domain takes no mail. `mail_targets_flow` turns the mail
hosts into IP addresses through the same resolver, because the SMTP probe must connect to the
address our resolver gave (the system resolver knows nothing of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .flow import DnsAnswer, Flow, dns

__all__ = ["MAX_TARGETS", "MailDomain", "mail_domain_flow", "mail_targets_flow"]

#: At most this many (host, IP) pairs are tried for one domain, so that a domain whose mail
#: hosts are all silent costs a bounded time.
MAX_TARGETS = 3

MailStatus = Literal["mx", "implicit", "null_mx", "nxdomain", "no_mx", "dns_error"]


@dataclass(frozen=True, slots=True)
class MailDomain:
    """What DNS says about a domain's mail.

    `status`: mx (MX records), implicit (no MX, but address records: mail goes to the domain
    itself), null_mx, nxdomain, no_mx (neither), dns_error (no answer). `hosts` are the mail
    hosts by preference; `detail` is a sentence for people.
    """

    domain: str
    status: MailStatus
    hosts: tuple[str, ...] = ()
    detail: str = ""

    @property
    def accepts_mail(self) -> bool:
        return self.status in ("mx", "implicit")


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def mail_domain_flow(domain: str, *, implicit: bool = True) -> Flow[MailDomain]:
    """Find the mail hosts of `domain` (a registrable domain in A-labels).

    With `implicit=False` only MX records count (evidence for a guessed domain: a parked domain
    has an address but takes no mail).
    """
    answer = yield from dns(_absolute(domain), "MX")
    if answer.status == "nxdomain":
        return MailDomain(domain, "nxdomain", detail=f"{domain} does not exist in DNS")
    if answer.status == "error":
        return MailDomain(
            domain, "dns_error", detail=f"DNS lookup of {domain} failed: {answer.error}"
        )
    if answer.status == "ok" and answer.mx:
        real = sorted((pref, host.rstrip(".").lower()) for pref, host in answer.mx
                      if host.rstrip("."))
        if not real:
            return MailDomain(
                domain, "null_mx", detail=f"{domain} publishes a null MX: it accepts no mail"
            )
        # Several MX records with equal preference: RFC 5321 wants them in random order to
        # spread load; a probe reaches one of them at most, so a stable order is kinder to tests
        # and to people reading the transcript.
        hosts = tuple(dict.fromkeys(host for _, host in real))
        return MailDomain(domain, "mx", hosts, detail=f"mail for {domain} goes to {hosts[0]}")
    if not implicit:
        return MailDomain(domain, "no_mx", detail=f"{domain} has no MX records")
    # No MX records: an implicit MX, if the domain itself has an address.
    failure: DnsAnswer | None = None
    for rdtype in ("A", "AAAA"):
        address = yield from dns(_absolute(domain), rdtype)
        if address.status == "ok" and address.addresses:
            return MailDomain(
                domain, "implicit", (domain,),
                detail=f"{domain} has no MX records; mail goes to its own address",
            )
        if address.status == "error":
            failure = address
    if failure is not None:
        return MailDomain(
            domain, "dns_error", detail=f"DNS lookup of {domain} failed: {failure.error}"
        )
    return MailDomain(domain, "no_mx", detail=f"{domain} has no mail server (no MX, no address)")


@dataclass(frozen=True, slots=True)
class MailTargets:
    """The (host, IP) pairs to try, in order, and whether some lookups failed."""

    targets: tuple[tuple[str, str], ...]
    dns_failed: bool = False


def mail_targets_flow(mail: MailDomain, limit: int = MAX_TARGETS) -> Flow[MailTargets]:
    """Resolve the mail hosts to IP addresses, IPv4 first, at most `limit` pairs."""
    targets: list[tuple[str, str]] = []
    failed = False
    for host in mail.hosts:
        for rdtype in ("A", "AAAA"):
            answer = yield from dns(_absolute(host), rdtype)
            if answer.status == "error":
                failed = True
            found = [(host, ip) for ip in answer.addresses if (host, ip) not in targets]
            targets.extend(found)
            if found:
                break  # IPv6 only when the host has no IPv4 address
        if len(targets) >= limit:
            break
    return MailTargets(tuple(targets[:limit]), failed)
