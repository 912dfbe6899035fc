"""How much learning per-domain patterns helps the engine rank the right address first.

    python benchmarks/pattern_learning.py [--companies 600] [--people 20] [--seed 7]

THE DATA IS SYNTHETIC. Companies are generated with a known address-pattern mix: each has a
dominant pattern, drawn from the distribution `WORLD` below (it is not the engine's prior), that
60-100 % of its employees follow; the others follow another pattern at random. German companies
(.de) write umlauts as ue/oe (80 %); a few addresses follow no pattern at all (a digit added, as
when the plain address was taken), so no ranking can find them. Names come from small lists with
umlauts, particles and hyphens mixed in. The ground truth is built here, independently of the
engine's candidate generator.

For every company, `k` employees' addresses are "known" (learned with `Engine.learn`); the
others are looked up at half of the companies (the same half for every condition). Top-1 /
top-3 is the share whose true address is the engine's first / among its first three
candidates. Nothing touches the network: only ranking is measured.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from lead_finder.engine import Engine

# The synthetic world's distribution of dominant patterns (an assumption for the benchmark).
WORLD = {
    "{first}.{last}": 0.30, "{f}{last}": 0.18, "{first}": 0.10, "{first}{last}": 0.09,
    "{f}.{last}": 0.07, "{first}{l}": 0.05, "{first}_{last}": 0.05, "{last}.{first}": 0.05,
    "{last}{f}": 0.04, "{last}": 0.03, "{first}.{l}": 0.02, "{first}-{last}": 0.02,
}

# (display text, plain ASCII, German-style ASCII). Surnames with particles are written joined.
FIRST = [
    ("Anna", "anna", "anna"), ("Ben", "ben", "ben"), ("Clara", "clara", "clara"),
    ("David", "david", "david"), ("Emma", "emma", "emma"), ("Felix", "felix", "felix"),
    ("Grace", "grace", "grace"), ("Hugo", "hugo", "hugo"), ("Ines", "ines", "ines"),
    ("Jonas", "jonas", "jonas"), ("Karin", "karin", "karin"), ("Liam", "liam", "liam"),
    ("Maria", "maria", "maria"), ("Noah", "noah", "noah"), ("Olivia", "olivia", "olivia"),
    ("Paul", "paul", "paul"), ("Rosa", "rosa", "rosa"), ("Sam", "sam", "sam"),
    ("Tom", "tom", "tom"), ("Vera", "vera", "vera"), ("Jürgen", "jurgen", "juergen"),
    ("Jörg", "jorg", "joerg"), ("Björn", "bjorn", "bjoern"), ("Søren", "soren", "soeren"),
    ("Zoë", "zoe", "zoe"), ("José", "jose", "jose"), ("Chloé", "chloe", "chloe"),
    ("Ahmed", "ahmed", "ahmed"), ("Wei", "wei", "wei"), ("Priya", "priya", "priya"),
]
LAST = [
    ("Smith", "smith", "smith"), ("Jones", "jones", "jones"), ("Brown", "brown", "brown"),
    ("Taylor", "taylor", "taylor"), ("Wilson", "wilson", "wilson"), ("Evans", "evans", "evans"),
    ("Clark", "clark", "clark"), ("Walker", "walker", "walker"), ("Wright", "wright", "wright"),
    ("Hall", "hall", "hall"), ("Green", "green", "green"), ("Baker", "baker", "baker"),
    ("Moreau", "moreau", "moreau"), ("Rossi", "rossi", "rossi"), ("Novak", "novak", "novak"),
    ("Kim", "kim", "kim"), ("Patel", "patel", "patel"), ("Chen", "chen", "chen"),
    ("Müller", "muller", "mueller"), ("Schröder", "schroder", "schroeder"),
    ("Größ", "gross", "groess"), ("Jørgensen", "jorgensen", "joergensen"),
    ("van der Berg", "vanderberg", "vanderberg"), ("de Vries", "devries", "devries"),
    ("Smith-Jones", "smithjones", "smithjones"), ("O'Brien", "obrien", "obrien"),
    ("García", "garcia", "garcia"), ("Núñez", "nunez", "nunez"),
]


@dataclass(frozen=True)
class Person:
    name: str
    address: str
    follows_pattern: bool


def fill(template: str, first: str, last: str) -> str:
    return (template.replace("{first}", first).replace("{last}", last)
            .replace("{f}", first[0]).replace("{l}", last[0]))


def company(rng: random.Random, index: int, people: int) -> tuple[str, list[Person]]:
    german = rng.random() < 0.25
    domain = f"company{index}.{'de' if german else 'com'}"
    expanded = german and rng.random() < 0.8
    patterns, weights = list(WORLD), list(WORLD.values())
    dominant = rng.choices(patterns, weights)[0]
    share = rng.uniform(0.6, 1.0)
    staff: list[Person] = []
    used: set[str] = set()
    while len(staff) < people:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first[0]} {last[0]}"
        f_ascii = first[2] if expanded else first[1]
        l_ascii = last[2] if expanded else last[1]
        pattern = dominant if rng.random() < share else rng.choice(patterns)
        local = fill(pattern, f_ascii, l_ascii)
        follows = True
        if local in used or rng.random() < 0.03:
            local = f"{local}{rng.randint(2, 99)}"  # taken, or an old address: no pattern fits
            follows = False
        used.add(local)
        staff.append(Person(name, f"{local}@{domain}", follows))
    return domain, staff


def evaluate(engine: Engine, tests: list[tuple[str, list[Person]]]) -> tuple[float, float, int]:
    top1 = top3 = total = 0
    for domain, people in tests:
        for person in people:
            ranked = [f"{c.local}@{domain}" for c in engine.rank(person.name, domain)[:3]]
            total += 1
            top1 += ranked[:1] == [person.address]
            top3 += person.address in ranked
    return top1 / total, top3 / total, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=int, default=600)
    parser.add_argument("--people", type=int, default=20, help="looked-up people per company")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    max_known = 5
    world = [company(rng, i, args.people + max_known) for i in range(args.companies)]
    # Every condition is measured on the same companies (the even-numbered ones); the odd ones
    # exist so that one condition can learn elsewhere only.
    tests = [(domain, staff[max_known:]) for i, (domain, staff) in enumerate(world) if i % 2 == 0]
    looked_up = sum(len(ps) for _, ps in tests)
    ceiling = sum(p.follows_pattern for _, ps in tests for p in ps) / looked_up

    rows: list[tuple[str, float, float]] = []
    started = time.perf_counter()

    def run(label: str, known: int, *, names: bool = True, here: bool = True) -> None:
        engine = Engine(smtp_probe=False, resolver=None)
        for number, (_, staff) in enumerate(world):
            teach = here or number % 2 == 1  # "elsewhere": learn at odd companies only
            if teach and known:
                sample = staff[:known]
                if names:
                    engine.learn((p.name, p.address) for p in sample)
                else:
                    engine.learn(("", p.address) for p in sample)
        top1, top3, _ = evaluate(engine, tests)
        rows.append((label, top1, top3))

    run("priors only (no learning)", 0)
    run("1 known address per company", 1)
    run("3 known addresses per company", 3)
    run("5 known addresses per company", 5)
    run("3 known addresses, without names (shape only)", 3, names=False)
    run("none here; 3 known at each of the other companies", 3, here=False)
    elapsed = time.perf_counter() - started

    print("Pattern learning benchmark - SYNTHETIC data (see the module docstring)")
    print(f"{args.companies} companies ({len(tests)} measured), {looked_up:,} people looked up, "
          f"seed {args.seed}; "
          f"{ceiling:.1%} of addresses follow a pattern (the ceiling)\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'condition':<{width}}  {'top-1':>6}  {'top-3':>6}")
    print(f"{'-' * width}  {'-' * 6}  {'-' * 6}")
    for label, top1, top3 in rows:
        print(f"{label:<{width}}  {top1:>6.1%}  {top3:>6.1%}")
    print(f"\n({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
