"""Leads: what the user knows about a person, cleaned for the API and keyed for the cache.

Every field exists in two forms:

- the *API text*: the user's own text with control, zero-width and bidi characters and emoji
  removed and whitespace folded. This is what the Find Email API sees.
- the *key*: an aggressive normal form (NFKC, casefold, transliterated to ASCII, titles and legal
  suffixes dropped, "Last, First" reordered, URLs and emails reduced to the registrable domain).
  It is never sent anywhere; it only recognises the same lead written differently, so that the
  lead is never paid for twice.

Bad input (empty, numbers, dates, spreadsheet errors, formulas, placeholders, over-long text) is
refused here with an `InvalidLeadError` whose reason fits in a spreadsheet cell.

The public suffix list comes from tldextract's bundled snapshot: nothing in this module touches
the network.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import numbers
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote, urlsplit

import idna
import tldextract
from anyascii import anyascii
from cleanco import basename
from nameparser import HumanName

from .columns import COLUMN_ROLES, detect_columns
from .errors import InvalidLeadError
from .models import Mode

__all__ = [
    "COLUMN_ROLES",
    "KEY_VERSION",
    "LEAD_FIELDS",
    "MAX_FIELD_LENGTH",
    "Lead",
    "clean_text",
    "company_key",
    "detect_columns",
    "name_key",
    "registrable_domain",
]

#: Longest field (in characters, after cleaning) that is sent to the API.
MAX_FIELD_LENGTH = 256

#: Bumped whenever the normal form changes, so old cache entries are not matched by mistake.
KEY_VERSION = 1

#: Lead fields, in the order the API knows them.
LEAD_FIELDS = ("name", "company", "domain", "linkedin", "email")

# ---------------------------------------------------------------------------------------------
# Invisible characters and emoji
# ---------------------------------------------------------------------------------------------

# Format (zero-width, bidi, tags), surrogates, private use and "other symbols" (emoji, dingbats,
# (R), (C)) never belong in a name, a company or an address.
_DROPPED_CATEGORIES = frozenset({"Cf", "Cs", "Co", "So"})
# Emoji parts outside those categories, and invisible fillers that render as nothing.
_DROPPED_POINTS = frozenset(
    {
        0x034F,  # combining grapheme joiner
        0x115F, 0x1160, 0x3164, 0xFFA0,  # Hangul fillers
        0x20E3,  # combining enclosing keycap
        0x203C, 0x2049,  # double exclamation / exclamation question emoji
    }
)
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")


@functools.lru_cache(maxsize=8192)
def _is_dropped(ch: str) -> bool:
    cp = ord(ch)
    if (
        cp in _DROPPED_POINTS
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (emoji presentation)
        or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF  # skin-tone modifiers
    ):
        return True
    category = unicodedata.category(ch)
    if category == "Cc":
        # Tabs and newlines are whitespace: they separate words, so they are folded, not dropped.
        return not ch.isspace()
    return category in _DROPPED_CATEGORIES


def _strip_invisible(text: str) -> str:
    if text.isascii():
        return _ASCII_CONTROLS.sub("", text)
    return "".join(ch for ch in text if not _is_dropped(ch))


def _clean(text: str) -> str:
    """The API text: invisibles and emoji removed, whitespace trimmed and folded to one space."""
    return " ".join(_strip_invisible(text).split())


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _fold(text: str) -> str:
    """Clean, NFKC, casefold. NFKC runs again after casefold because casefold can denormalise."""
    folded = _nfkc(_nfkc(_strip_invisible(text)).casefold())
    return " ".join(_strip_invisible(folded).split())


def _shown(text: str, limit: int = 20) -> str:
    """A value short enough to quote in a reason."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

# Excel's error values (and the localised ones most often seen in exported files) that do not end
# in "!" or "?"; those that do are caught by _GENERIC_ERROR.
_ERROR_VALUES = frozenset({"#N/A", "#NV", "#N/D", "#N/B", "#NA", "#GETTING_DATA"})
_GENERIC_ERROR = re.compile(r"#[^\s#]{1,24}[!?]")
_LIBREOFFICE_ERROR = re.compile(r"err:\d{3}", re.IGNORECASE)
# Windows Excel hands error cells to COM as these integers when err_to_str is not set.
_COM_ERRORS: Mapping[int, str] = {
    -2146826281: "#DIV/0!",
    -2146826246: "#N/A",
    -2146826259: "#NAME?",
    -2146826288: "#NULL!",
    -2146826252: "#NUM!",
    -2146826265: "#REF!",
    -2146826273: "#VALUE!",
}

_FORMULA_STARTS = frozenset("=+@")

# Compared after casefolding and removing spaces, dots, dashes, underscores, quotes and brackets,
# so "N.A.", "<NA>", "(blank)", "n - a" and "-none-" are all caught.
_PLACEHOLDERS = frozenset(
    {
        "n/a", "na", "n/d", "none", "unknown", "unk", "null", "nil", "nan", "nat", "tbd", "tba",
        "tbc", "undefined", "notavailable", "notapplicable", "missing", "blank", "empty",
        "noname", "nocompany", "notknown", "unspecified",
    }
)
# Real first and last names that are also placeholders elsewhere ("Na", "Nan", "Nat", "Nil").
_NAME_PART_PLACEHOLDERS = _PLACEHOLDERS - {"na", "nan", "nat", "nil"}
_PLACEHOLDER_NOISE = re.compile(r"[\s.\-_()\[\]<>{}'\"*]+")

_NUMBER = re.compile(r"[-+]?[$€£¥]?\s?\d[\d.,' ]*(?:e[-+]?\d+)?\s?%?")
_DATE = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
    r"(?:[ t]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?[ap]\.?m\.?)?)?"
    r"(?:z|\s?[-+]\d{2}:?\d{2})?"
)
_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?[ap]\.?m\.?)?")
_MONTH_DATE = re.compile(
    r"(?:\d{1,2}[ -/])?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
    r"[ -/,]+\d{1,4}(?:,? \d{2,4})?"
)
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_NAME_FIELDS = frozenset({"name", "first_name", "last_name"})
_WORDY_FIELDS = _NAME_FIELDS | {"company"}


def _label(field: str) -> str:
    return field.replace("_", " ")


def _as_text(value: object, field: str) -> str | None:
    """The text in a cell value; None when the cell is empty; raise when it holds no text."""
    label = _label(field)
    if value is None:
        return None
    if isinstance(value, str):
        # str.__str__ gives a plain str even for subclasses (numpy.str_) without calling their code.
        return str.__str__(value)
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("pandas") and kind.__name__ in ("NAType", "NaTType"):
        return None  # pandas' missing-value markers: an empty cell
    if module == "numpy":
        if kind.__name__ in ("datetime64", "timedelta64"):
            if str(value) == "NaT":
                return None
            raise InvalidLeadError(field, f"{label} is a date, not text")
        item = getattr(value, "item", None)
        try:
            plain = item() if callable(item) else value
        except (TypeError, ValueError):  # an array of several values
            plain = value
        if type(plain).__module__ != "numpy":
            return _as_text(plain, field)  # a numpy scalar: judge the Python value it holds
    if isinstance(value, bool):
        raise InvalidLeadError(field, f"{label} is TRUE/FALSE, not text")
    if isinstance(value, int) and value in _COM_ERRORS:
        raise InvalidLeadError(field, f"{label} is an error value ({_COM_ERRORS[value]})")
    if isinstance(value, float) and math.isnan(value):
        return None  # pandas' NaN for an empty cell
    if isinstance(value, Decimal) and value.is_nan():
        return None
    if isinstance(value, numbers.Number):
        raise InvalidLeadError(field, f"{label} is a number, not text")
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        raise InvalidLeadError(field, f"{label} is a date, not text")
    if isinstance(value, Mapping):
        # Office.js passes error cells as {"type": "Error", "basicValue": "#N/A", ...}.
        kind_name = value.get("type")
        if isinstance(kind_name, str) and kind_name == "Error":
            shown = value.get("basicValue")
            shown = shown if isinstance(shown, str) else "#N/A"
            raise InvalidLeadError(field, f"{label} is an error value ({_shown(shown)})")
    raise InvalidLeadError(field, f"{label} is not text")


def _error_value(text: str) -> str | None:
    plain = _nfkc(text)
    upper = plain.upper()
    if upper in _ERROR_VALUES:
        return upper
    if _GENERIC_ERROR.fullmatch(plain) or _LIBREOFFICE_ERROR.fullmatch(plain):
        return plain
    return None


def _is_placeholder(folded: str, field: str) -> bool:
    if not any(ch.isalnum() for ch in folded):
        return True  # "-", "?", "...", "—"
    canon = _PLACEHOLDER_NOISE.sub("", folded)
    known = _PLACEHOLDERS if field not in ("first_name", "last_name") else _NAME_PART_PLACEHOLDERS
    return canon in known


def _check_text(text: str, field: str) -> None:
    """Raise InvalidLeadError if cleaned, non-empty `text` cannot be sent as `field`."""
    label = _label(field)
    if len(text) > MAX_FIELD_LENGTH:
        raise InvalidLeadError(field, f"{label} is too long (over {MAX_FIELD_LENGTH} characters)")
    error = _error_value(text)
    if error is not None:
        raise InvalidLeadError(field, f"{label} is an error value ({_shown(error)})")
    # Judged on the folded form so that case, width and Unicode normal form never change the
    # verdict ("＝1+1" is a formula, "Ｎ／Ａ" a placeholder).
    folded = _fold(text)
    if folded[:1] in _FORMULA_STARTS:
        raise InvalidLeadError(field, f"{label} looks like a formula")
    if _is_placeholder(folded, field):
        raise InvalidLeadError(field, f"{label} is a placeholder ({_shown(text)})")
    if field in _WORDY_FIELDS:
        if _NUMBER.fullmatch(folded):
            raise InvalidLeadError(field, f"{label} is a number, not text")
        if _DATE.fullmatch(folded) or _TIME.fullmatch(folded) or _MONTH_DATE.fullmatch(folded):
            raise InvalidLeadError(field, f"{label} is a date, not text")
    if field in _NAME_FIELDS:
        if not any(ch.isalpha() for ch in folded):
            raise InvalidLeadError(field, f"{label} has no letters")
        if field == "name" and _EMAIL_LIKE.fullmatch(folded):
            raise InvalidLeadError(field, "name is an email address, not a name")
    elif field == "email":
        if _email_parts(text) is None:
            raise InvalidLeadError(field, "email is not an email address")
    elif field == "domain":
        if registrable_domain(text) is None:
            raise InvalidLeadError(field, "domain is not a domain or website")
    elif field == "linkedin":
        if _linkedin_key(text) is None:
            raise InvalidLeadError(field, "linkedin is not a LinkedIn URL or profile name")


def clean_text(value: object, field: str) -> str | None:
    """Clean one cell for `field` ("name", "company", "domain", "linkedin", "email", ...).

    Accepts anything a spreadsheet or DataFrame may hold. Returns None when the cell is empty
    (None, NaN, pandas NA, blank or only invisible characters); otherwise the text to send: control,
    zero-width and bidi characters and emoji removed, whitespace trimmed and folded. Raises
    `InvalidLeadError(field, reason)` for numbers, dates, booleans, error values, formulas,
    placeholders, text over `MAX_FIELD_LENGTH` characters, and values that are not what the
    field needs (an email that is not an address, a domain that is not a domain).
    """
    raw = _as_text(value, field)
    if raw is None:
        return None
    text = _clean(raw)
    if not text:
        return None
    _check_text(text, field)
    return text


# ---------------------------------------------------------------------------------------------
# Domains, emails and LinkedIn profiles
# ---------------------------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    # suffix_list_urls=() and cache_dir=None: the bundled snapshot only, no download, no files.
    return tldextract.TLDExtract(
        cache_dir=None,
        suffix_list_urls=(),
        fallback_to_snapshot=True,
        # Private suffixes keep acme.myshopify.com apart from other.myshopify.com.
        include_psl_private_domains=True,
    )


def _ascii_host(host: str) -> str | None:
    """A host name in lowercase A-labels (punycode), or None if it is not a valid host name."""
    host = host.replace("\u3002", ".").replace("\uff61", ".").rstrip(".")
    if not host or len(host) > 253:
        return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except UnicodeError:  # idna.IDNAError is a UnicodeError
            return None
    host = host.lower()
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return host


def _registrable(host: str) -> str | None:
    if host.startswith("www.") and host.count(".") > 1:
        # "www." names a company's web site, never a tenant of a private suffix (www.x0.com).
        host = host[4:]
    result = _extractor()(host)
    if result.domain and result.suffix:
        return f"{result.domain}.{result.suffix}"
    if result.is_private:
        # "github.io" itself is a private suffix; as a company it is still GitHub's domain.
        result = _extractor()(host, include_psl_private_domains=False)
        if result.domain and result.suffix:
            return f"{result.domain}.{result.suffix}"
    return None


def _host_of(text: str) -> str | None:
    plain = " ".join(_nfkc(_strip_invisible(text)).split())
    if not plain or " " in plain:
        return None
    if plain[:7].lower() == "mailto:":
        plain = plain[7:]
    if "://" not in plain and "@" in plain:
        plain = plain.rpartition("@")[2]  # an email: its domain
    try:
        host = urlsplit(plain if "://" in plain else "//" + plain).hostname
    except ValueError:  # bad IPv6 literal, invalid characters in the network location
        return None
    return _ascii_host(host) if host else None


def registrable_domain(text: str) -> str | None:
    """The registrable domain ("acme.co.uk") of a domain, URL or email address.

    IDN domains come back as lowercase punycode A-labels ("münchen.de" -> "xn--mnchen-3ya.de").
    Returns None when `text` holds no domain (plain words, IP addresses, "localhost"). Uses the
    public suffix list bundled with tldextract and never the network.
    """
    return _registrable_domain(text)


@functools.lru_cache(maxsize=65536)
def _registrable_domain(text: str) -> str | None:
    host = _host_of(text)
    return _registrable(host) if host else None


_LOCAL_FORBIDDEN = frozenset('<>()[]\\,;:"')


def _email_parts(text: str) -> tuple[str, str] | None:
    """(local part, ASCII host) of an email address, or None if `text` is not one."""
    plain = _nfkc(_strip_invisible(text)).strip()
    if plain.count("@") != 1 or any(ch.isspace() for ch in plain):
        return None
    local, _, host = plain.partition("@")
    if not local or len(local) > 64 or any(ch in _LOCAL_FORBIDDEN for ch in local):
        return None
    ascii_host = _ascii_host(host)
    if ascii_host is None or _registrable(ascii_host) is None:
        return None
    return local, ascii_host


def _email_key(text: str) -> str | None:
    parts = _email_parts(text)
    if parts is None:
        return None
    return f"{_nfkc(parts[0].casefold())}@{parts[1]}"


_HANDLE = re.compile(r"[^\s/?#:@]{2,100}")
_PROFILE_PATH = re.compile(r"/?(in|pub)/(.+)")


def _linkedin_key(text: str) -> str | None:
    """A LinkedIn profile as "in/<handle>", another LinkedIn page as "linkedin.com/<path>".

    Scheme, "www." or country subdomain, query, fragment, trailing slash and case do not count.
    None if `text` is neither a LinkedIn URL nor a profile handle.
    """
    low = _fold(text)
    if not low:
        return None
    if _PROFILE_PATH.fullmatch(low) is None and (
        "://" in low or "linkedin." in low or "/" in low
    ):
        try:
            parts = urlsplit(low if "://" in low else "//" + low)
            host = parts.hostname or ""
        except ValueError:
            return None
        if host != "linkedin.com" and not host.endswith(".linkedin.com"):
            return None
        path = parts.path
    else:
        path = low if "/" in low else "/in/" + low.lstrip("@")
    segments = [_nfkc(_nfkc(unquote(s)).casefold()) for s in path.split("/") if s]
    if not segments:
        return None
    if segments[0] in ("in", "pub") and len(segments) >= 2:
        handle = segments[1] if segments[0] == "in" else "/".join(segments[1:])
        if not _HANDLE.fullmatch(segments[1]):
            return None
        return f"{segments[0]}/{handle}"
    return "linkedin.com/" + "/".join(segments)


# ---------------------------------------------------------------------------------------------
# Keys for names and companies
# ---------------------------------------------------------------------------------------------

_DROPPED_PUNCT = re.compile(r"['`.\u2019]")  # "O'Brien" = "OBrien", "J.P." = "JP"
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _ascii_words(text: str) -> list[str]:
    ascii_text = str(anyascii(text)).lower()
    return _NON_ALNUM.sub(" ", _DROPPED_PUNCT.sub("", ascii_text)).split()


def name_key(text: str) -> str:
    """The normal form of a person's name, for keys only.

    NFKC, casefold, ASCII transliteration; titles, suffixes and nicknames dropped when a first and
    last name remain ("Dr. Jane Doe PhD" -> "jane doe"); "Doe, Jane" reordered; punctuation dropped.
    """
    return _name_key(text)


@functools.lru_cache(maxsize=65536)
def _name_key(text: str) -> str:
    folded = _fold(text)
    if not folded:
        return ""
    parsed = HumanName(folded)
    core = [str(p) for p in (*parsed.first_list, *parsed.middle_list, *parsed.last_list)]
    words = " ".join(core).split()
    if len(words) < 2:
        # "King Jones", "Judge Judy", "Mr. Smith": without a first and last name left, the title
        # or suffix may be the name itself, so keep every part rather than merge people.
        every = (*parsed.title_list, *core, *parsed.suffix_list)
        words = " ".join(str(p) for p in every).split() or folded.split()
    key = " ".join(_ascii_words(" ".join(words)))
    # Text that transliterates to nothing still needs a key of its own.
    return key or folded


def _strip_legal(text: str) -> str:
    """Remove legal-form suffixes with cleanco until none is left ("Acme Co., Ltd." -> "Acme")."""
    current = text
    for _ in range(5):
        stripped = str(basename(current)).strip()
        if not stripped:
            break  # the name is only a legal form ("Company", "Inc"): keep it
        if stripped == current:
            return current
        current = stripped
    return current


def _domain_token(text: str) -> str | None:
    if " " in text or not any(ch in text for ch in ".@"):
        return None
    return _registrable_domain(text)


def company_key(text: str) -> str:
    """The normal form of a company, for keys only.

    A URL, email or domain becomes its registrable domain ("https://www.acme.co.uk/about" ->
    "acme.co.uk"). A name is NFKC-casefolded, transliterated to ASCII, stripped of legal suffixes
    (Inc, Incorporated, LLC, Ltd, GmbH, SA, BV, Corporation, Company, ...), a leading "the",
    and punctuation; "&" reads as "and".
    """
    return _company_key(text)


@functools.lru_cache(maxsize=65536)
def _company_key(text: str) -> str:
    plain = " ".join(_nfkc(_strip_invisible(text)).split())
    if not plain:
        return ""
    domain = _domain_token(plain)
    if domain is not None:
        return domain
    base = _strip_legal(plain)
    domain = _domain_token(base)  # "Amazon.com, Inc." -> "amazon.com"
    if domain is not None:
        return domain
    folded = _fold(base)
    ascii_text = str(anyascii(folded)).lower()
    if ascii_text != folded:
        # Second pass after transliteration: legal forms written in another script or with
        # accents. (cleanco ignores case, so plain ASCII text needs no second pass.)
        ascii_text = _strip_legal(ascii_text)
    words = _ascii_words(ascii_text.replace("&", " and "))
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return " ".join(words) or _fold(plain)


# ---------------------------------------------------------------------------------------------
# The lead
# ---------------------------------------------------------------------------------------------


def _providers(providers: Sequence[str] | None) -> list[str] | None:
    if providers is None:
        return None
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence):
        raise InvalidLeadError("providers", "providers must be a list of provider names")
    names = list(providers)
    if not all(isinstance(p, str) and p.strip() for p in names):
        raise InvalidLeadError("providers", "providers must be a list of provider names")
    # Order is the provider waterfall and IDs are opaque: kept exactly as given.
    return names


@dataclass(frozen=True, slots=True)
class Lead:
    """One person to find an email for.

    Every field is cleaned on construction (see `clean_text`) and stored as the text to send to
    the API. A lead needs a name plus a company, domain or email; or a LinkedIn profile; or an
    email. Otherwise `InvalidLeadError` says which field is missing.

    `domain` may be a domain, a website URL or an email address; `linkedin` a profile URL or
    handle; `email` an address the user already has.
    """

    name: str | None = None
    company: str | None = None
    domain: str | None = None
    linkedin: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        for field in LEAD_FIELDS:
            object.__setattr__(self, field, clean_text(getattr(self, field), field))
        if self.linkedin is not None or self.email is not None:
            return
        if self.name is None:
            raise InvalidLeadError("name", "name is empty")
        if self.company is None and self.domain is None:
            raise InvalidLeadError("company", "company is empty (give a company or a domain)")

    @classmethod
    def parse(
        cls,
        name: object = None,
        company: object = None,
        *,
        domain: object = None,
        linkedin: object = None,
        email: object = None,
        first_name: object = None,
        last_name: object = None,
    ) -> Lead:
        """Build a lead from spreadsheet or DataFrame cells of any type.

        None, NaN, pandas NA and blank cells in optional fields count as absent. When `name` is
        absent, `first_name` and `last_name` are joined into it. Raises `InvalidLeadError` with a
        reason fit for a cell.
        """
        full = clean_text(name, "name")
        if full is None:
            parts = [clean_text(first_name, "first_name"), clean_text(last_name, "last_name")]
            full = " ".join(p for p in parts if p) or None
        return cls(
            full,
            clean_text(company, "company"),
            domain=clean_text(domain, "domain"),
            linkedin=clean_text(linkedin, "linkedin"),
            email=clean_text(email, "email"),
        )

    def key(
        self,
        mode: Mode | str = Mode.PROFESSIONAL,
        *,
        verify: bool = True,
        providers: Sequence[str] | None = None,
    ) -> str:
        """The cache key: `v1:<MODE>:<sha256 hex>` over the normalised fields and the options.

        Equivalent spellings of a lead share a key; a different person, company, mode, `verify`
        or `providers` gives a different one.
        """
        parsed_mode = Mode.parse(mode)
        if not isinstance(verify, bool):
            raise InvalidLeadError("verify", "verify must be TRUE or FALSE")
        payload = {
            "version": KEY_VERSION,
            "mode": parsed_mode.value,
            "verify": verify,
            "providers": _providers(providers),
            "name": _name_key(self.name) if self.name is not None else None,
            "company": _company_key(self.company) if self.company is not None else None,
            "domain": _registrable_domain(self.domain) if self.domain is not None else None,
            "linkedin": _linkedin_key(self.linkedin) if self.linkedin is not None else None,
            "email": _email_key(self.email) if self.email is not None else None,
        }
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
        return f"v{KEY_VERSION}:{parsed_mode.value}:{digest}"

    def to_api(self) -> dict[str, str]:
        """The lead as the API's `lead` object: the fields that are set, with their API names."""
        values = (self.name, self.company, self.domain, self.linkedin, self.email)
        return {f: v for f, v in zip(LEAD_FIELDS, values, strict=True) if v is not None}

    @property
    def company_domain(self) -> str | None:
        """The company's registrable domain: from `domain`, else from a company that is a URL,
        domain or email, else from `email`. None when none of them names a domain."""
        if self.domain is not None:
            return _registrable_domain(self.domain)
        if self.company is not None:
            # Name keys never contain a dot; a company key that is a domain came from one.
            key = _company_key(self.company)
            if _domain_token(key) == key:
                return key
        if self.email is not None:
            parts = _email_parts(self.email)
            return _registrable(parts[1]) if parts else None
        return None
