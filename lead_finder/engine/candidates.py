"""Candidate addresses from a person's name, ranked by how companies actually write them.

Pure functions and one small thread-safe learner; nothing here touches the network.

A candidate is one way of writing a name as a local part: a *pattern* (`{first}.{last}`,
`{f}{last}`, ...), a *transliteration style* for letters outside ASCII (`plain`: Müller -> muller,
Søren -> soren; `expanded`: Müller -> mueller, Søren -> soeren, Åsa -> aasa) and a *surname form*
for compound surnames (`joined`: vanderberg / smithjones, `core`: berg, `hyphen`: smith-jones,
`first_part`: smith, `last_part`: jones). Each of the three is scored by a prior, replaced little
by little by what `PatternBook` learned from addresses the user already has (per domain first,
then across all domains), and a candidate's score is the product. Different ways of writing that
give the same local part add up.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr

from anyascii import anyascii
from nameparser import HumanName

from ..leads import registrable_domain

__all__ = [
    "PATTERNS",
    "Candidate",
    "NameParts",
    "Pattern",
    "PatternBook",
    "candidates",
    "local_part",
    "name_parts",
]


@dataclass(frozen=True, slots=True)
class Pattern:
    """One way of building a local part; `template` uses {first} {last} {f} {l}."""

    template: str
    prior: float

    @property
    def uses_first(self) -> bool:
        return "{first}" in self.template or "{f}" in self.template

    @property
    def uses_last(self) -> bool:
        return "{last}" in self.template or "{l}" in self.template


# Hand-set priors: the usual order of corporate address formats (first.last far ahead, then
# flast and first). They are deliberately rough: a handful of the user's own addresses at a
# domain outweighs them (see PatternBook), and benchmarks/pattern_learning.py measures that.
_PRIORS: tuple[tuple[str, float], ...] = (
    ("{first}.{last}", 0.34),
    ("{f}{last}", 0.20),
    ("{first}", 0.13),
    ("{first}{last}", 0.08),
    ("{f}.{last}", 0.05),
    ("{first}{l}", 0.04),
    ("{first}_{last}", 0.03),
    ("{last}.{first}", 0.03),
    ("{last}{f}", 0.03),
    ("{last}", 0.025),
    ("{first}.{l}", 0.02),
    ("{first}-{last}", 0.015),
)
_TOTAL = sum(p for _, p in _PRIORS)
#: The patterns tried, with their prior probabilities (summing to 1), most likely first.
PATTERNS: tuple[Pattern, ...] = tuple(Pattern(t, p / _TOTAL) for t, p in _PRIORS)
_PATTERN_BY_TEMPLATE: Mapping[str, Pattern] = {p.template: p for p in PATTERNS}

# German and Scandinavian spellings of letters that plain transliteration would drop to a bare
# vowel. Everything else goes through anyascii (which already writes ß as ss and æ as ae).
_EXPANSIONS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "oe", "å": "aa",
                             "æ": "ae"})
_GERMAN_TLDS = frozenset({"de", "at", "ch", "li"})
_NORDIC_TLDS = frozenset({"se", "no", "dk", "fi", "is"})

# Surname particles: "van der Berg" is written vanderberg or berg, never van.
_PARTICLES = frozenset(
    {"van", "von", "der", "den", "de", "del", "della", "di", "da", "das", "dos", "do", "du",
     "la", "le", "lo", "ter", "ten", "te", "zu", "zum", "zur", "af", "av", "al", "el", "bin",
     "ibn", "ben", "y", "e"}
)

_LOCAL_SAFE = re.compile(r"[^a-z0-9]+")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")

# Priors for the two other dimensions. Transliteration depends on the country of the domain:
# German companies write ü as ue, Nordic ones mostly drop the ring and the slash.
_STYLE_PRIORS: Mapping[str, Mapping[str, float]] = {
    "german": {"expanded": 0.65, "plain": 0.35},
    "nordic": {"plain": 0.7, "expanded": 0.3},
    "other": {"plain": 0.6, "expanded": 0.4},
}
_SURNAME_PRIORS: Mapping[str, float] = {
    "joined": 0.5, "core": 0.3, "hyphen": 0.35, "first_part": 0.2, "last_part": 0.1,
}

#: How much a domain's own evidence is smoothed towards the global picture (one pseudo-address),
#: and the global picture towards the priors (twenty pseudo-addresses).
DOMAIN_SMOOTHING = 1.0
GLOBAL_SMOOTHING = 20.0


@dataclass(frozen=True, slots=True)
class _Spelling:
    """A name written in ASCII one way: first and last-name forms for one transliteration."""

    style: str
    firsts: tuple[str, ...]  # hyphenated first names: "jean-pierre", "jeanpierre"
    lasts: tuple[tuple[str, str], ...]  # (surname form, text)

    @property
    def first_options(self) -> tuple[str, ...]:
        """The first-name forms to fill in ("" for a name without one)."""
        return self.firsts or ("",)

    @property
    def last_options(self) -> tuple[tuple[str, str], ...]:
        """The (surname form, text) pairs to fill in ("joined", "" for a name without one)."""
        return self.lasts or (("joined", ""),)


@dataclass(frozen=True, slots=True)
class NameParts:
    """A name split for address building: the ASCII spellings of its first and last names.

    `spellings` holds one entry per transliteration style that gives a different result
    ("Jürgen Müller": plain jurgen/muller and expanded juergen/mueller; "Jane Doe": plain only).
    """

    first: str
    last: str
    spellings: tuple[_Spelling, ...]

    @property
    def has_styles(self) -> bool:
        return len(self.spellings) > 1

    @property
    def has_surname_forms(self) -> bool:
        return any(len(s.lasts) > 1 for s in self.spellings)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate local part with the way it was built and its score (a probability)."""

    local: str
    pattern: str
    style: str
    surname: str
    score: float

    def address(self, domain: str) -> str:
        return f"{self.local}@{domain}"


def _ascii(text: str, style: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold()
    if style == "expanded":
        text = text.translate(_EXPANSIONS)
    return str(anyascii(text)).lower()


def _words(text: str, style: str) -> list[str]:
    """ASCII words of a name part; apostrophes and dots join ("O'Brien" -> obrien)."""
    plain = re.sub(r"['’`.]", "", _ascii(text, style))
    return [w for w in _LOCAL_SAFE.split(plain) if w]


def _first_forms(first: str, style: str) -> tuple[str, ...]:
    words = _words(first, style)
    if not words:
        return ()
    if len(words) == 1:
        return (words[0],)
    return ("-".join(words), "".join(words))


def _last_forms(last: str, style: str) -> tuple[tuple[str, str], ...]:
    """Surname forms: joined always; core (no particles), hyphen and parts when they apply."""
    hyphen_groups = [g for g in re.split(r"\s*[-‐‑–]\s*", last.strip()) if g]
    words = _words(last, style)
    if not words:
        return ()
    forms: dict[str, str] = {"joined": "".join(words)}
    core = [w for w in words if w not in _PARTICLES]
    if core and len(core) < len(words):
        forms["core"] = "".join(core)
    if len(hyphen_groups) > 1:
        groups = ["".join(_words(g, style)) for g in hyphen_groups]
        groups = [g for g in groups if g]
        if len(groups) > 1:
            forms["hyphen"] = "-".join(groups)
            if groups[0] not in _PARTICLES:
                forms["first_part"] = groups[0]
            forms["last_part"] = groups[-1]
    seen: set[str] = set()
    unique: list[tuple[str, str]] = []
    for kind, text in forms.items():
        if text not in seen:
            seen.add(text)
            unique.append((kind, text))
    return tuple(unique)


def _split_name(name: str) -> tuple[str, str]:
    """(first, last) of a full name: titles, suffixes and nicknames dropped, "Doe, Jane" read."""
    text = " ".join(name.split())
    if " " not in text and "," not in text:
        # "王伟", "김민준": Chinese and Korean names are written family name first, unspaced.
        if (_HAN.fullmatch(text[:1]) or _HANGUL.fullmatch(text[:1])) and 2 <= len(text) <= 4:
            return text[1:], text[:1]
    parsed = HumanName(text)
    first, last = str(parsed.first).strip(), str(parsed.last).strip()
    if not first and last and " " not in last:
        first, last = last, ""
    return first, last


def name_parts(name: str) -> NameParts | None:
    """Split and transliterate a full name; None when nothing usable is left."""
    first, last = _split_name(name)
    spellings: list[_Spelling] = []
    seen: set[tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = set()
    for style in ("plain", "expanded"):
        firsts = _first_forms(first, style) if first else ()
        lasts = _last_forms(last, style) if last else ()
        if not firsts and not lasts:
            continue
        signature = (firsts, lasts)
        if signature in seen:
            continue
        seen.add(signature)
        spellings.append(_Spelling(style, firsts, lasts))
    if not spellings:
        return None
    return NameParts(first, last, tuple(spellings))


def _fill(template: str, first: str, last: str) -> str | None:
    if ("{first}" in template or "{f}" in template) and not first:
        return None
    if ("{last}" in template or "{l}" in template) and not last:
        return None
    local = (
        template.replace("{first}", first)
        .replace("{last}", last)
        .replace("{f}", first[:1])
        .replace("{l}", last[:1])
    )
    return local if _valid_local(local) else None


def _valid_local(local: str) -> bool:
    return (
        0 < len(local) <= 64
        and local[0] not in ".-_"
        and local[-1] not in ".-_"
        and ".." not in local
    )


def local_part(address: str) -> tuple[str, str] | None:
    """(local part, domain) of an address, lowercased; "+tags" dropped. None if not one."""
    _, addr = parseaddr(address)
    addr = addr.strip().lower()
    if addr.count("@") != 1:
        return None
    local, domain = addr.split("@")
    local = local.split("+", 1)[0]
    if not local or not domain or "." not in domain:
        return None
    return local, domain


def _region(domain: str) -> str:
    tld = domain.rsplit(".", 1)[-1].lower()
    if tld in _GERMAN_TLDS:
        return "german"
    if tld in _NORDIC_TLDS:
        return "nordic"
    return "other"


def _combos(parts: NameParts) -> Iterable[tuple[str, Pattern, _Spelling, str]]:
    """Every (local, pattern, spelling, surname form) the name allows, unscored."""
    for spelling in parts.spellings:
        firsts, lasts = spelling.first_options, spelling.last_options
        for pattern in PATTERNS:
            for first in firsts if pattern.uses_first else firsts[:1]:
                for surname, last in lasts if pattern.uses_last else lasts[:1]:
                    local = _fill(pattern.template, first, last)
                    if local is not None:
                        yield local, pattern, spelling, surname


class _Counts:
    """Fractional observations along the three dimensions, for one domain or overall."""

    __slots__ = ("pattern", "style", "surname")

    def __init__(self) -> None:
        self.pattern: defaultdict[str, float] = defaultdict(float)
        self.style: defaultdict[str, float] = defaultdict(float)
        self.surname: defaultdict[str, float] = defaultdict(float)


def _smoothed(
    counts: Mapping[str, float], base: Mapping[str, float], strength: float
) -> dict[str, float]:
    """Dirichlet smoothing: (count + strength * base) / (total + strength), for every key."""
    total = sum(counts.values()) + strength
    keys = set(base) | set(counts)
    return {k: (counts.get(k, 0.0) + strength * base.get(k, 0.0)) / total for k in keys}


@dataclass(frozen=True, slots=True)
class Weights:
    """Probabilities for each pattern, transliteration style and surname form at one domain."""

    pattern: Mapping[str, float]
    style: Mapping[str, float]
    surname: Mapping[str, float]


def _priors(domain: str) -> Weights:
    return Weights(
        {p.template: p.prior for p in PATTERNS},
        dict(_STYLE_PRIORS[_region(domain)]),
        dict(_SURNAME_PRIORS),
    )


def _shape_patterns(local: str) -> list[str]:
    """Patterns that could have produced `local` when the person's name is not known."""
    for sep in "._-":
        if sep in local:
            left, _, right = local.partition(sep)
            if not left or not right or sep in right:
                return []
            if sep == ".":
                if len(left) == 1:
                    return ["{f}.{last}"]
                if len(right) == 1:
                    return ["{first}.{l}"]
                return ["{first}.{last}", "{last}.{first}"]
            return ["{first}_{last}"] if sep == "_" else ["{first}-{last}"]
    if not local.isalpha():
        return []
    return ["{first}", "{f}{last}", "{first}{last}", "{first}{l}", "{last}{f}", "{last}"]


class PatternBook:
    """What the user's own addresses say about how each domain writes names.

    `learn(name, address)` finds which ways of writing `name` give the address's local part and
    counts them for its domain (split evenly when several fit). Without a name, only the shape of
    the local part counts ("a.b" is first.last or last.first). `weights(domain)` blends the
    domain's counts with the counts over all domains and the priors. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._domains: dict[str, _Counts] = {}
        self._overall = _Counts()
        self._seen: set[str] = set()

    def learn(self, name: str | None, address: str) -> bool:
        """Count one known address; True when it told something (its pattern was recognised).

        An address counts once, however often it is seen (the same rows come back run after
        run), so a domain's counts say how many people follow a pattern, not how many runs.
        """
        split = local_part(address)
        if split is None:
            return False
        seen = address.strip().lower()
        with self._lock:
            if seen in self._seen:
                return False
        local, host = split
        # Keyed like the engine's lookups: jane@mail.acme.com teaches acme.com.
        domain = registrable_domain(host) or host
        if name:
            parts = name_parts(name)
            if parts is None:
                return False
            matches = [c for c in _combos(parts) if c[0] == local]
            if not matches:
                return False
            patterns = {m[1].template for m in matches}
            styles = {m[2].style for m in matches} if parts.has_styles else set()
            # A surname form only says something when the pattern used the surname.
            surnames = (
                {m[3] for m in matches if m[1].uses_last}
                if parts.has_surname_forms
                else set()
            )
            pattern_weights = {p: 1.0 / len(patterns) for p in patterns}
        else:
            shaped = _shape_patterns(local)
            if not shaped:
                return False
            # P(pattern | shape) is proportional to the prior among the patterns that fit.
            mass = sum(_PATTERN_BY_TEMPLATE[p].prior for p in shaped)
            pattern_weights = {p: _PATTERN_BY_TEMPLATE[p].prior / mass for p in shaped}
            styles, surnames = set(), set()
        with self._lock:
            if seen in self._seen:  # another thread counted it meanwhile
                return False
            self._seen.add(seen)
            counts = self._domains.setdefault(domain, _Counts())
            for target in (counts, self._overall):
                for pattern, weight in pattern_weights.items():
                    target.pattern[pattern] += weight
                for style in styles:
                    target.style[style] += 1.0 / len(styles)
                for surname in surnames:
                    target.surname[surname] += 1.0 / len(surnames)
        return True

    def weights(self, domain: str) -> Weights:
        """The blended probabilities for `domain` (priors alone for a domain never seen)."""
        base = _priors(domain)
        with self._lock:
            overall = self._overall
            g_pattern = _smoothed(overall.pattern, base.pattern, GLOBAL_SMOOTHING)
            g_style = _smoothed(overall.style, base.style, GLOBAL_SMOOTHING)
            g_surname = _smoothed(overall.surname, base.surname, GLOBAL_SMOOTHING)
            own = self._domains.get(domain)
            if own is None:
                return Weights(g_pattern, g_style, g_surname)
            return Weights(
                _smoothed(own.pattern, g_pattern, DOMAIN_SMOOTHING),
                _smoothed(own.style, g_style, DOMAIN_SMOOTHING),
                _smoothed(own.surname, g_surname, DOMAIN_SMOOTHING),
            )

    def known_domains(self) -> int:
        """How many domains have at least one learned address."""
        with self._lock:
            return len(self._domains)


def candidates(
    parts: NameParts,
    domain: str,
    *,
    book: PatternBook | None = None,
    limit: int = 12,
) -> list[Candidate]:
    """The `limit` most likely local parts for a name at `domain`, best first.

    Scores are probabilities under the model described in the module docstring: pattern
    probability times style probability (when the name's letters have several ASCII spellings)
    times surname-form probability (when the surname has several forms and the pattern uses it).
    Ties keep the pattern order of `PATTERNS`.
    """
    weights = book.weights(domain) if book is not None else _priors(domain)
    order = {p.template: i for i, p in enumerate(PATTERNS)}
    style_p = _normalised(weights.style, [s.style for s in parts.spellings])
    surname_p = {  # each spelling has its own surname forms
        s.style: _normalised(weights.surname, [kind for kind, _ in s.last_options])
        for s in parts.spellings
    }
    scored: dict[str, _Scored] = {}
    for local, pattern, spelling, surname in _combos(parts):
        score = weights.pattern.get(pattern.template, 0.0) * style_p[spelling.style]
        if pattern.uses_last:
            score *= surname_p[spelling.style][surname]
        if pattern.uses_first:
            score /= len(spelling.first_options)
        if local in scored:
            # Another way of writing the name gives the same address: add up.
            scored[local].score += score
        else:
            scored[local] = _Scored(
                score, pattern.template, spelling.style, surname, order[pattern.template]
            )
    ranked = sorted(scored.items(), key=lambda kv: (-kv[1].score, kv[1].order, kv[0]))
    return [
        Candidate(local, v.pattern, v.style, v.surname, v.score) for local, v in ranked[:limit]
    ]


@dataclass(slots=True)
class _Scored:
    score: float
    pattern: str
    style: str
    surname: str
    order: int


def _normalised(probabilities: Mapping[str, float], keys: list[str]) -> dict[str, float]:
    """The probabilities of `keys` rescaled to sum to 1 (evenly when none has any)."""
    values = {k: max(probabilities.get(k, 0.0), 0.0) for k in keys}
    total = sum(values.values())
    if total <= 0:
        return {k: 1.0 / len(keys) for k in keys}
    return {k: v / total for k, v in values.items()}
