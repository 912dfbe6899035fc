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


def synthetic_people() -> list[dict[str, str]]:
    people = []
    for i, (first, last) in enumerate((f, la) for f in FIRST for la in LAST):
        company = COMPANIES[i % len(COMPANIES)]
        domain = company.lower().replace(" ", "-") + "-test.com"
        local = _ascii(f"{first}.{last}").lower().replace("'", "").replace("ł", "l")
        people.append({
            "name": f"{first} {last}", "company": f"{company} {SUFFIXES[i % len(SUFFIXES)]}",
            "base": company, "domain": domain, "email": f"{local}@{domain}",
        })
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


