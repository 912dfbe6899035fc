"""Webhook signatures: the table from TESTING.md, plus a vector computed independently."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from lead_finder.errors import ConfigurationError, WebhookVerificationError
from lead_finder.sixtyfour import sign_payload, verify_signature

SECRET = "sk_whsec_" + "ab" * 32
OLD_SECRET = "sk_whsec_" + "cd" * 32
T = 1_700_000_000
BODY = b'{"task_id":"t-1","status":"completed","task_type":"find_email","result":{}}'


def _hex(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_sign_payload_matches_the_documented_recipe() -> None:
    assert sign_payload(BODY, SECRET, T) == f"t={T},v1={_hex(SECRET, T, BODY)}"
    rotated = sign_payload(BODY, SECRET, T, extra_secrets=[OLD_SECRET])
    assert rotated == f"t={T},v1={_hex(SECRET, T, BODY)},v1={_hex(OLD_SECRET, T, BODY)}"


def test_secret_is_utf8() -> None:
    secret = "sk_whsec_clé"
    assert sign_payload(BODY, secret, T).endswith(_hex(secret, T, BODY))


VALID = sign_payload(BODY, SECRET, T)


@pytest.mark.parametrize(
    ("body", "header", "secret", "now", "ok"),
    [
        (BODY, VALID, SECRET, T, True),
        (BODY, VALID, OLD_SECRET, T, False),  # wrong secret
        (BODY[:-1] + b"]", VALID, SECRET, T, False),  # body changed by one byte
        (BODY + b" ", VALID, SECRET, T, False),  # body grew by one byte
        (BODY, VALID, SECRET, T + 300, True),  # stale, right at the edge
        (BODY, VALID, SECRET, T + 301, False),  # stale
        (BODY, VALID, SECRET, T - 300, True),  # from the future, at the edge
        (BODY, VALID, SECRET, T - 301, False),  # from the future
        # Two v1 values (rotation): new first, or old first; either matching is enough.
        (BODY, sign_payload(BODY, SECRET, T, extra_secrets=[OLD_SECRET]), SECRET, T, True),
        (BODY, sign_payload(BODY, SECRET, T, extra_secrets=[OLD_SECRET]), OLD_SECRET, T, True),
        (BODY, f"t={T},v1={'0' * 64},v1={_hex(SECRET, T, BODY)}", SECRET, T, True),
        (BODY, f"t={T}, v1={_hex(SECRET, T, BODY).upper()}", SECRET, T, True),
        (BODY, f"v1={_hex(SECRET, T, BODY)},t={T}", SECRET, T, True),  # order does not matter
        (BODY, f"t={T},v0=abc,v1={_hex(SECRET, T, BODY)}", SECRET, T, True),  # other schemes
        (BODY, None, SECRET, T, False),  # missing header
        (BODY, "", SECRET, T, False),
        (BODY, f"t={T},v1=é{_hex(SECRET, T, BODY)[1:]}", SECRET, T, False),  # non-ASCII
        (BODY, VALID + "\u00a0", SECRET, T, False),
        (BODY, f"t={T}", SECRET, T, False),  # no v1
        (BODY, f"v1={_hex(SECRET, T, BODY)}", SECRET, T, False),  # no timestamp
        (BODY, f"t={T},t={T},v1={_hex(SECRET, T, BODY)}", SECRET, T, False),  # two timestamps
        (BODY, f"t=-{T},v1={_hex(SECRET, T, BODY)}", SECRET, T, False),
        (BODY, f"t=1e9,v1={_hex(SECRET, T, BODY)}", SECRET, T, False),
        (BODY, f"t={T},v1", SECRET, T, False),  # item without "="
        (BODY, f"t={T},v1={_hex(SECRET, T, BODY)[:-2]}", SECRET, T, False),  # truncated
        (BODY, f"t={T + 1},v1={_hex(SECRET, T, BODY)}", SECRET, T, False),  # timestamp swapped
        (BODY, "t=" + "1" * 5000, SECRET, T, False),  # absurdly long
    ],
)
def test_verify_signature_table(
    body: bytes, header: str | None, secret: str, now: float, ok: bool
) -> None:
    if ok:
        verify_signature(body, header, secret, now=now)
    else:
        with pytest.raises(WebhookVerificationError) as caught:
            verify_signature(body, header, secret, now=now)
        assert SECRET not in str(caught.value)


def test_tolerance_is_configurable_and_now_defaults_to_the_clock() -> None:
    verify_signature(BODY, VALID, SECRET, now=T + 1000, tolerance=1000)
    with pytest.raises(WebhookVerificationError, match="from now"):
        verify_signature(BODY, VALID, SECRET)  # signed in 2023: far too old today


def test_missing_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        verify_signature(BODY, VALID, "", now=T)


def test_sign_payload_argument_checks() -> None:
    with pytest.raises(ValueError):
        sign_payload(BODY, SECRET, -1)
    with pytest.raises(TypeError):
        sign_payload(BODY, SECRET, T, extra_secrets=OLD_SECRET)
