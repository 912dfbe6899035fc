"""How fast =FINDEMAIL answers a cell while Excel recalculates, against a do-nothing UDF.

    python benchmarks/excel_recalc.py [--rounds 5]

Each round: 1,000 FINDEMAIL cells over 800 synthetic leads (12 spellings of the duplicates),
called at once from a pool of xlwings' size, as Excel does; then, when the answers have landed,
three more recalculations. The server (`python -m lead_finder.server`, own process, 127.0.0.1)
holds each job for 2 s, so every first answer is the cache or the PENDING placeholder. The
baseline, measured in the same run, is the same pool calling a UDF that only returns a constant:
what the thread pool itself costs. Prints per-call latency (median, 99th percentile, max), the
share of the 50 ms budget the issue sets for a cell, and the bulk requests made.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from excel_sim import Excel, Formula, Recalcs  # noqa: E402
from servers import serve_subprocess  # noqa: E402
from synthetic import thousand_leads, write_directory  # noqa: E402

from lead_finder.excel import udfs  # noqa: E402
from lead_finder.excel.session import EXCEL_QUIET, ExcelSession, set_default_session  # noqa: E402
from lead_finder.finder import LeadFinder  # noqa: E402


def constant(*args: Any, caller: Any = None) -> str:
    return "PENDING"


def summary(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    leads, _ = thousand_leads()
    cells: dict[str, Formula] = {f"C{i}": (udfs.FINDEMAIL, lead)
                                 for i, lead in enumerate(leads, start=2)}
    baseline_cells: dict[str, Formula] = {a: (constant, lead) for a, (_, lead) in cells.items()}
    cold: list[float] = []
    warm: list[float] = []
    base: list[float] = []
    requests: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = write_directory(Path(tmp) / "people.csv")
        for round_ in range(args.rounds):
            recalcs = Recalcs()
            with serve_subprocess("--directory", str(directory), "--job-delay", "2") as srv:
                finder = LeadFinder(srv.api_key, base_url=srv.base_url,
                                    cache_path=Path(tmp) / f"c{round_}.sqlite3",
                                    use_keyring=False, quiet=EXCEL_QUIET, poll_interval=0.2,
                                    requests_per_minute=float("inf"))
                session = ExcelSession(finder, recalculate=recalcs)
                set_default_session(session)
                session.warm_up(serving=True)
                excel = Excel()
                excel.recalc(baseline_cells)
                base += excel.latencies
                excel.latencies = []
                first = excel.recalc(cells)
                cold += excel.latencies
                recalcs.wait_for({a for a, v in first.items() if v == "PENDING"}, timeout=60)
                excel.latencies = []
                for _ in range(3):
                    excel.recalc(cells)
                warm += excel.latencies
                requests.append(srv.stats()["requests"]["/find-email-bulk-async"])
                excel.close()
                set_default_session(None)
                session.close()

    print(f"{args.rounds} rounds of 1,000 FINDEMAIL cells over 800 leads "
          f"(pool of {Excel().pool._max_workers} threads)\n")
    print(f"{'per-call latency, ms':<42} {'median':>7} {'p99':>7} {'max':>7}")
    rows = [("baseline: a UDF returning a constant", summary(base)),
            ("FINDEMAIL, first pass (placeholders)", summary(cold)),
            ("FINDEMAIL, recalculations (cache)", summary(warm))]
    for label, (p50, p99, top) in rows:
        print(f"{label:<42} {p50:>7.2f} {p99:>7.2f} {top:>7.2f}")
    for label, (_, p99, top) in rows[1:]:
        print(f"{label}: p99 {p99 / 50:.0%} and slowest {top / 50:.0%} of the 50 ms budget")
    print(f"bulk requests per round: {requests} (ceil(800/100) = 8)")


if __name__ == "__main__":
    main()
