"""`python -m lead_finder.server`: serve the API (keys only from LEAD_FINDER_SERVER_KEYS, so
they never show in the process list)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from .app import run
from .delivery import DEFAULT_RETRY_DELAYS


def _delays(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the server until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m lead_finder.server",
        description="Sixtyfour-compatible Find Email API server. "
        "Client keys: LEAD_FINDER_SERVER_KEYS (comma-separated).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8064)
    parser.add_argument("--directory", help="CSV of known people (default: the bundled demo)")
    parser.add_argument("--jobs", help="SQLite file for async jobs")
    parser.add_argument("--rate-limit", type=float, default=500, help="requests/minute per key")
    parser.add_argument("--job-delay", type=float, default=0.0, help="seconds before a job runs")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per lookup")
    parser.add_argument(
        "--webhook-retry-delays",
        type=_delays,
        default=DEFAULT_RETRY_DELAYS,
        help="comma-separated seconds between webhook attempts",
    )
    parser.add_argument("--faults", action="store_true", help="enable test fault switches")
    parser.add_argument("--fault-rates", type=json.loads, help='JSON, e.g. {"429": 0.1}')
    parser.add_argument("--seed", type=int)
    parser.add_argument("--free-not-found", action="store_true", help="do not bill NOT_FOUND")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    run(
        args.host,
        args.port,
        directory=args.directory,
        jobs_path=args.jobs,
        rate_limit_per_minute=args.rate_limit,
        webhook_retry_delays=args.webhook_retry_delays,
        job_delay=args.job_delay,
        latency=args.latency,
        enable_faults=args.faults or bool(args.fault_rates),
        fault_rates=args.fault_rates,
        seed=args.seed,
        charge_not_found=not args.free_not_found,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
