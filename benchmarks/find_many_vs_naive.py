"""find_many vs a naive per-row loop, against our local Sixtyfour-compatible server.

    python benchmarks/find_many_vs_naive.py [--leads 1000] [--latency 0.05]

Both runs use the same 1,000 synthetic leads (800 people, 200 duplicates written 12 different
ways) and the same server, started as a separate process on 127.0.0.1 with a simulated latency
per lookup (a bulk request looks its leads up concurrently, as a real bulk API does). The naive
baseline is what a script without lead_finder does: one sync POST /find-email per row. The
server's rate limit is switched off for both, so the numbers show batching and deduplication only;
under the real API's 500 requests/minute the naive loop would be slower still.

Prints requests made, leads charged and wall time for each, and the ratios, all measured in the
same run (the machines are noisy).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from synthetic import thousand_leads, write_directory  # noqa: E402

from lead_finder import LeadFinder  # noqa: E402
from lead_finder.sixtyfour import Client  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    directory: Path, latency: float, key: str, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, LEAD_FINDER_SERVER_KEYS=key)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lead_finder.server", "--port", str(port), "--directory",
             str(directory), "--latency", str(latency), "--rate-limit", "0",
             "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/check-balance", headers={"x-api-key": key}, timeout=1)
            return proc, base
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the local server did not start; see " + str(log)) from None
            time.sleep(0.1)


def server_stats(base: str, key: str) -> dict[str, object]:
    stats: dict[str, object] = httpx.get(base + "/_lf/stats", headers={"x-api-key": key}).json()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds per lookup on the server (default 0.05)")
    args = parser.parse_args()

    leads, _ = thousand_leads()
    leads = leads[: args.leads]
    key = "bench_" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        directory = write_directory(tmpdir / "people.csv")
        proc, base = start_server(directory, args.latency, key, tmpdir / "server.log")
        try:
            rows = []

            before = server_stats(base, key)
            started = time.perf_counter()
            with Client(key, base_url=base, requests_per_minute=float("inf")) as client:
                for name, company in leads:
                    client.find_email({"name": name, "company": company})
            naive_time = time.perf_counter() - started
            rows.append(("naive loop, sync /find-email per row", naive_time,
                         *_delta(before, server_stats(base, key))))

            before = server_stats(base, key)
            started = time.perf_counter()
            with LeadFinder(key, base_url=base, cache_path=tmpdir / "cache.sqlite3",
                            poll_interval=0.05, requests_per_minute=float("inf"),
                            use_keyring=False) as finder:
                finder.find_many(leads)
            batched_time = time.perf_counter() - started
            rows.append(("LeadFinder.find_many (cold cache)", batched_time,
                         *_delta(before, server_stats(base, key))))

            before = server_stats(base, key)
            started = time.perf_counter()
            with LeadFinder(key, base_url=base, cache_path=tmpdir / "cache.sqlite3",
                            use_keyring=False) as finder:
                finder.find_many(leads)
            warm_time = time.perf_counter() - started
            rows.append(("LeadFinder.find_many (warm cache, a re-run)", warm_time,
                         *_delta(before, server_stats(base, key))))
        finally:
            proc.terminate()
            proc.wait(10)

    print(f"{len(leads):,} leads, server latency {args.latency * 1000:.0f} ms per lookup\n")
    print(f"{'run':<46} {'time s':>8} {'requests':>9} {'charged':>8}")
    for label, seconds, requests, charged in rows:
        print(f"{label:<46} {seconds:>8.2f} {requests:>9,} {charged:>8,}")
    print()
    print(f"find_many is {naive_time / batched_time:,.1f}x faster than the naive loop, "
          f"with {rows[0][2] / max(rows[1][2], 1):,.0f}x fewer requests and "
          f"{rows[0][3] - rows[1][3]:,} fewer paid lookups")


def _delta(before: dict[str, object], after: dict[str, object]) -> tuple[int, int]:
    def total(stats: dict[str, object], field: str) -> int:
        value = stats.get(field, {})
        return sum(value.values()) if isinstance(value, dict) else 0

    return (total(after, "requests") - total(before, "requests"),
            total(after, "charges") - total(before, "charges"))


if __name__ == "__main__":
    main()
