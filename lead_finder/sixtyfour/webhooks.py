"""Signing and verifying Sixtyfour webhook deliveries.

The API signs each delivery with the account's signing secret:

    Sixtyfour-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]
    v1 = hex(HMAC-SHA256(key=secret as UTF-8, msg=f"{t}.".encode() + raw body))

During a secret rotation two `v1` values are sent (new first); a delivery verifies when any of
them matches. The header is scanned item by item rather than parsed into a dict, because the `v1`
key repeats. Our own server signs with `sign_payload`; receivers check with `verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from ..errors import ConfigurationError, WebhookVerificationError

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "sign_payload",
    "verify_signature",
]

#: The header that carries the signature.
SIGNATURE_HEADER = "Sixtyfour-Signature"
#: Deliveries whose timestamp is further than this from now (seconds) are refused.
DEFAULT_TOLERANCE = 300.0
# Longest header we bother reading: a few v1 values fit with room to spare.
_MAX_HEADER_LENGTH = 4096


def _signature(payload: bytes, secret: str, timestamp: int) -> str:
    if not isinstance(secret, str) or not secret:
        raise ConfigurationError("No webhook signing secret is configured.")
    message = f"{timestamp}.".encode("ascii") + payload
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_payload(
    payload: bytes, secret: str, timestamp: int, *, extra_secrets: Sequence[str] = ()
) -> str:
    """The `Sixtyfour-Signature` header value for `payload` sent at `timestamp` (Unix seconds).

    One `v1` for `secret`, then one per `extra_secrets` (the old secrets during a rotation).
    """
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative integer of Unix seconds")
    if isinstance(extra_secrets, str):
        raise TypeError("extra_secrets must be a sequence of secrets, not one string")
    signatures = [_signature(payload, s, timestamp) for s in (secret, *extra_secrets)]
    return f"t={timestamp}," + ",".join(f"v1={sig}" for sig in signatures)


def verify_signature(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a delivery's `Sixtyfour-Signature` header against the raw body; return or raise.

    `payload` must be the bytes exactly as received (before any JSON parsing). Raises
    WebhookVerificationError when the header is missing, malformed or not ASCII, when no `v1`
    matches, or when the timestamp is more than `tolerance` seconds from `now` (default: the
    current time) in either direction. A web handler should answer 400 to that error.
    """
    if header is None or not header.strip():
        raise WebhookVerificationError(f"The {SIGNATURE_HEADER} header is missing.")
    if not header.isascii() or len(header) > _MAX_HEADER_LENGTH:
        raise WebhookVerificationError(f"The {SIGNATURE_HEADER} header is malformed.")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise WebhookVerificationError(f"The {SIGNATURE_HEADER} header is malformed.")
        name, value = name.strip(), value.strip()
        if name == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                raise WebhookVerificationError(
                    f"The {SIGNATURE_HEADER} header has a bad timestamp."
                )
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value.lower())
        # Other schemes (v0, future versions) are ignored, as their senders intend.
    if timestamp is None:
        raise WebhookVerificationError(f"The {SIGNATURE_HEADER} header has no timestamp.")
    if not candidates:
        raise WebhookVerificationError(f"The {SIGNATURE_HEADER} header has no v1 signature.")
    expected = _signature(payload, secret, timestamp)
    # Compare against every candidate, without stopping early, in constant time each.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(
            "The webhook signature does not match: check the signing secret."
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"The webhook timestamp is more than {tolerance:g} s from now: a replay, or a clock "
            "that is off."
        )
