"""Synthetic leads for tests and benchmarks: 800 fictional people at 20 fictional companies, and
the twelve ways a messy list writes the same person. The data is made up; nothing here is real."""

from __future__ import annotations

import csv
import random
import unicodedata
from collections.abc import Callable
from pathlib import Path

FIRST = ["Jane", "John", "José", "Zoë", "Björn", "François", "Łukasz", "Siobhán", "Ana", "Peter",
         "Mary", "Omar", "Priya", "Chen", "Fatima", "Lars", "Ingrid", "Diego", "Aisha", "Tomás",
         "Yuki", "Noah", "Emma", "Liam", "Olivia", "Mateo", "Sofia", "Hugo", "Clara", "Felix",
         "Greta", "Ivan", "Nadia", "Oscar", "Paula", "Rafael", "Selma", "Tariq", "Ursula", "Viktor"]
LAST = ["Doe", "Smith", "Álvarez", "Müller", "Åkesson", "Lefèvre", "Wójcik", "O'Brien", "García",
        "Gibbons", "Watson", "Haddad", "Sharma", "Wei", "Khan", "Nilsson", "Berg", "Fernández",
        "Bello", "Núñez"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Wonka", "Cyberdyne",
             "Tyrell", "Soylent", "Stark", "Wayne", "Oscorp", "Nakatomi", "Gringotts", "Monarch",
             "Aperture", "Massive Dynamic", "Dunder Mifflin", "Pied Piper"]
SUFFIXES = ["Inc.", "LLC", "GmbH", "Ltd", "SA", "BV", "Corp.", "AG", "PLC", "S.A."]


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _person(first: str, last: str, company: str, suffix: str) -> dict[str, str]:
    """One fictional person at `company` (written with a legal `suffix`), with a first.last
    address at the company's made-up domain."""
    domain = company.lower().replace(" ", "-") + "-test.com"
    local = _ascii(f"{first}.{last}").lower().replace("'", "").replace("ł", "l")
    return {"name": f"{first} {last}", "company": f"{company} {suffix}", "base": company,
            "domain": domain, "email": f"{local}@{domain}"}


def synthetic_people() -> list[dict[str, str]]:
    people = []
    for i, (first, last) in enumerate((f, la) for f in FIRST for la in LAST):
        company = COMPANIES[i % len(COMPANIES)]
        people.append(_person(first, last, company, SUFFIXES[i % len(SUFFIXES)]))
    return people


#: Twelve ways a messy list writes the same person at the same company.
SPELLINGS: list[Callable[[str, str, str], tuple[str, str]]] = [
    lambda f, la, c: (f"{f} {la}", f"{c} Inc."),
    lambda f, la, c: (f"{la}, {f}", c),
    lambda f, la, c: (f"  {f.upper()}   {la.upper()} ", c.lower() + ", inc"),
    lambda f, la, c: ("".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch
                              for ch in f"{f} {la}"), f"{c} Incorporated"),
    lambda f, la, c: (f"Dr. {f} {la}", c.upper()),
    lambda f, la, c: (f"{f} {la}, PhD", f"{c} LLC"),
    lambda f, la, c: (unicodedata.normalize("NFD", f"{f} {la}"), f"{c} GmbH"),
    lambda f, la, c: (f"{f}\u200b {la}", f"{c} Ltd."),
    lambda f, la, c: (f"{f} {la} \U0001f680", f"  {c}  "),
    lambda f, la, c: (_ascii(f"{f} {la}"), f"{c} Corporation"),
    lambda f, la, c: (f"{f.lower()} {la.lower()}", f"{c.lower()} co."),
    lambda f, la, c: (f"\u200e{f} {la}\u200f", f"{c}, Inc."),
]


def write_directory(path: Path) -> Path:
    """The synthetic people as a directory CSV for the local server's DirectoryBackend."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["name", "company", "domain", "email", "email_status"])
        writer.writeheader()
        for p in synthetic_people():
            writer.writerow({"name": p["name"], "company": p["company"], "domain": p["domain"],
                             "email": p["email"], "email_status": "OK"})
    return path


def thousand_leads() -> tuple[list[tuple[str, str]], list[str]]:
    """1,000 leads: 800 unique people, 200 more rows that repeat them, written 12 ways."""
    rng = random.Random(7)
    people = synthetic_people()
    leads = [(p["name"], p["company"]) for p in people]
    expected = [p["email"] for p in people]
    for n in range(200):
        p = rng.choice(people)
        first, last = p["name"].split(" ", 1)
        leads.append(SPELLINGS[n % len(SPELLINGS)](first, last, p["base"]))
        expected.append(p["email"])
    order = list(range(len(leads)))
    rng.shuffle(order)
    return [leads[i] for i in order], [expected[i] for i in order]


def many_people(count: int) -> list[dict[str, str]]:
    """Up to 2,400 distinct fictional people: the 800 names of `synthetic_people`, each also at
    two other companies (the same name at another company is another lead)."""
    if not 0 <= count <= 2400:
        raise ValueError("many_people makes at most 2,400 people")
    base = synthetic_people()
    people = []
    for i in range(count):
        block, p = divmod(i, len(base))
        first, last = base[p]["name"].split(" ", 1)
        c = (p % len(COMPANIES) + 7 * block) % len(COMPANIES)
        company = COMPANIES[c]
        people.append(_person(first, last, company, SUFFIXES[i % len(SUFFIXES)]))
    return people


def write_people(path: Path, people: list[dict[str, str]]) -> Path:
    """`people` as a directory CSV for the local server's DirectoryBackend (`--directory`)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["name", "company", "domain", "email", "email_status"])
        writer.writeheader()
        for p in people:
            writer.writerow({"name": p["name"], "company": p["company"], "domain": p["domain"],
                             "email": p["email"], "email_status": "OK"})
    return path


def lead_rows(rows: int, unique: int, *, unknown: int = 0,
              seed: int = 11) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """`rows` lead rows ({"Full Name", "Company"}) naming `unique` distinct people, the repeats
    written the twelve messy ways, shuffled. The last `unknown` people are left out of the
    returned directory (the second value), so the server answers NOT_FOUND for them."""
    if not 0 < unique <= rows:
        raise ValueError("need 0 < unique <= rows")
    rng = random.Random(seed)
    people = many_people(unique)
    out = [{"Full Name": p["name"], "Company": p["company"]} for p in people]
    for n in range(rows - unique):
        p = rng.choice(people)
        first, last = p["name"].split(" ", 1)
        name, company = SPELLINGS[n % len(SPELLINGS)](first, last, p["base"])
        out.append({"Full Name": name, "Company": company})
    rng.shuffle(out)
    return out, people[:unique - unknown]
