"""Which columns of a sheet, CSV or DataFrame hold the lead fields.

Shared by the CLI and the notebook panel; `lead_finder.leads` re-exports `detect_columns`. The
roles are `Lead.parse`'s keyword names, so `Lead.parse(**{role: row[column] ...})` builds a lead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from anyascii import anyascii

__all__ = ["COLUMN_ROLES", "detect_columns"]

#: What `detect_columns` can find, in the order it reports them.
COLUMN_ROLES = ("name", "first_name", "last_name", "company", "domain", "linkedin", "email")

# Headers reduced to lowercase ASCII letters and digits; earlier synonyms win within a role.
_EXACT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "name": (
        "fullname", "name", "contactname", "contactfullname", "personname", "leadname",
        "prospectname", "displayname", "contact", "person", "lead", "prospect", "names",
    ),
    "first_name": (
        "firstname", "first", "givenname", "given", "forename", "fname", "vorname", "prenom",
    ),
    "last_name": (
        "lastname", "last", "surname", "familyname", "family", "lname", "nachname", "apellido",
        "apellidos",
    ),
    "company": (
        "company", "companyname", "organisation", "organization", "organisationname",
        "organizationname", "org", "orgname", "employer", "employername", "accountname",
        "account", "business", "businessname", "firm", "currentcompany", "currentemployer",
        "empresa", "unternehmen", "firma", "entreprise", "societe",
    ),
    "domain": (
        "domain", "website", "companydomain", "companywebsite", "websiteurl", "companyurl",
        "web", "url", "site", "homepage", "webaddress", "emaildomain", "domainname", "www",
    ),
    "linkedin": (
        "linkedin", "linkedinurl", "linkedinprofile", "linkedinprofileurl", "personlinkedinurl",
        "linkedinhandle", "linkedinlink", "contactlinkedinurl", "li", "liurl",
    ),
    "email": (
        "email", "emailaddress", "workemail", "businessemail", "workemailaddress", "mail",
        "contactemail", "primaryemail", "existingemail", "knownemail", "emails",
        "personalemail",
    ),
}

# A header with one of these words describes something else ("Email Status", "Lead Owner",
# "Account ID", "Job Title", "Parent Company").
_OTHER_WORDS = frozenset(
    {
        "id", "owner", "status", "phone", "mobile", "title", "date", "type", "score",
        "confidence", "count", "size", "industry", "city", "country", "state", "source",
        "verified", "valid", "validity", "created", "updated", "modified", "job", "position",
        "revenue", "employees", "headcount", "zip", "postal", "stage", "note", "notes", "rep",
        "seniority", "department", "description", "tag", "tags", "twitter", "facebook",
        "github", "instagram", "sequence", "campaign", "result", "found", "bounce",
        "deliverable", "format", "pattern", "guess", "number", "sent", "opened", "clicked",
        "replied", "timezone", "language", "keywords", "logo", "photo", "image", "avatar",
        "parent", "previous", "former", "past", "nick", "nickname", "user", "username", "file",
        "list", "deal", "opportunity", "manager", "assistant", "reference", "ref",
    }
)
_COMPANY_WORDS = ("company", "organisation", "organization", "employer", "account", "business")


def _header_compact(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", str(anyascii(unicodedata.normalize("NFKC", column))).lower())


def _header_words(column: str) -> list[str]:
    text = str(anyascii(unicodedata.normalize("NFKC", column)))
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)  # camelCase -> camel Case
    return re.findall(r"[a-z0-9]+", text.lower())


def _guess_role(column: str) -> str | None:
    words = _header_words(column)
    if not words or any(w in _OTHER_WORDS for w in words):
        return None
    compact = "".join(words)
    company = any(w in compact for w in _COMPANY_WORDS) or "org" in words or "firm" in words
    # In a leads sheet a bare "Profile URL" is the person's LinkedIn profile (Sales Navigator).
    linkedin = "linkedin" in compact or "profile" in words
    email = "email" in compact or "mail" in words
    web = any(w in compact for w in ("website", "domain", "homepage")) or any(
        w in words for w in ("url", "web", "site", "www")
    )
    if linkedin:
        return None if company else "linkedin"  # a company's LinkedIn page is not the person's
    if email:
        if web:
            return "domain"  # "Email Domain"
        return None if company else "email"  # "Company Email" is not the person's address
    if any(w in compact for w in ("firstname", "givenname", "forename")):
        return "first_name"
    if any(w in compact for w in ("lastname", "surname", "familyname")):
        return "last_name"
    if web:
        return "domain"
    if company:
        return "company"
    if "name" in words or "contact" in words or "person" in words:
        return "name"
    return None


def detect_columns(columns: Sequence[str]) -> dict[str, str]:
    """Guess which columns hold the lead fields.

    Returns `{role: column}` for the roles found among "name" (full name), "first_name",
    "last_name", "company", "domain" (domain, website or URL), "linkedin" and "email" (an existing
    address). Matching ignores case, spaces, dashes and underscores and knows common synonyms
    ("Full Name", "Contact", "Organisation", "Employer", "Account Name", "Website", "LinkedIn URL",
    "E-mail", "Work Email", "Given name", "Surname", ...). Each column is used at most once;
    columns that describe something else ("Email Status", "Lead Owner") are skipped.
    """
    headers = [(i, c) for i, c in enumerate(columns) if isinstance(c, str)]
    found: dict[str, str] = {}
    used: set[int] = set()
    for role, synonyms in _EXACT_COLUMNS.items():
        best: tuple[int, int, str] | None = None
        for index, column in headers:
            compact = _header_compact(column)
            if index in used or compact not in synonyms:
                continue
            rank = synonyms.index(compact)
            if best is None or rank < best[0]:
                best = (rank, index, column)
        if best is not None:
            found[role] = best[2]
            used.add(best[1])
    for index, column in headers:
        if index in used:
            continue
        guessed = _guess_role(column)
        if guessed is not None and guessed not in found:
            found[guessed] = column
            used.add(index)
    return {role: found[role] for role in COLUMN_ROLES if role in found}
