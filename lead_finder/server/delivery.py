"""Signed webhook delivery with retries, the way Sixtyfour's outgoing webhooks behave.

One event per finished job. The same `Sixtyfour-Event-Id` is sent on every attempt (receivers
dedupe on it); the signature is made afresh on each attempt so a late retry is not rejected as
stale by a receiver that checks the timestamp.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from ..sixtyfour.webhooks import sign_payload

__all__ = ["DEFAULT_RETRY_DELAYS", "deliver"]

log = logging.getLogger("lead_finder.server")

#: Seconds to wait before each retry: 5 retries after the first attempt.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1, 2, 4, 8, 16)

#: A receiver must answer within this many seconds.
DELIVERY_TIMEOUT = 10.0


async def deliver(
    url: str,
    payload: Mapping[str, Any],
    *,
    event_id: str,
    event_type: str,
    secret: str | None,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    on_attempt: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> bool:
    """POST `payload` to `url` until a 2xx answer, retrying after each delay; True if delivered.

    `on_attempt` is told the outcome of each attempt ("2xx", "500", "error", ...), for stats.
    """
    body = json.dumps(payload).encode()
    attempts = len(retry_delays) + 1
    async with httpx.AsyncClient(
        timeout=DELIVERY_TIMEOUT, follow_redirects=False, trust_env=False
    ) as client:
        for attempt in range(1, attempts + 1):
            headers = {
                "content-type": "application/json",
                "user-agent": "lead-finder-server",
                "Sixtyfour-Event-Id": event_id,
                "Sixtyfour-Event-Type": event_type,
                "Sixtyfour-Delivery-Attempt": str(attempt),
            }
            if secret:
                headers["Sixtyfour-Signature"] = sign_payload(body, secret, int(clock()))
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                outcome = "error"
                log.info("webhook attempt %d for %s failed: %s", attempt, event_id,
                         type(exc).__name__)
            else:
                outcome = "2xx" if 200 <= response.status_code < 300 else str(
                    response.status_code
                )
                log.info("webhook attempt %d for %s: %s", attempt, event_id, response.status_code)
            if on_attempt is not None:
                on_attempt(outcome)
            if outcome == "2xx":
                return True
            if attempt < attempts:
                await asyncio.sleep(retry_delays[attempt - 1])
    return False
