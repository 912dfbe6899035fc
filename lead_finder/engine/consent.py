"""The user's consent to SMTP probing: off unless they said yes.

Consent comes from `LEAD_FINDER_SMTP_PROBE` (1/true/yes/on enables it, 0/false/no/off disables it
even when consent was recorded) or from a small file in the user's config directory written by
`lead-finder config enable-smtp-probe` (`enable_smtp_probe`). The file holds no secret; it is
written with mode 0600 anyway, like the rest of the user's configuration.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

__all__ = [
    "SMTP_PROBE_ENV",
    "SMTP_PROBE_WARNING",
    "consent_file_path",
    "disable_smtp_probe",
    "enable_smtp_probe",
    "smtp_probe_enabled",
]

#: The environment variable that switches probing on (1) or off (0) for one process.
SMTP_PROBE_ENV = "LEAD_FINDER_SMTP_PROBE"

#: What the CLI shows before recording consent.
SMTP_PROBE_WARNING = (
    "SMTP probing checks whether an address exists by connecting to the company's mail server "
    "on port 25 and asking it (RCPT TO), then hanging up without sending any message.\n"
    "Mail providers can read this as address harvesting: the IP address you probe from may be "
    "put on block lists, which can stop mail sent from your network from being delivered. "
    "Many home, office and cloud networks block outgoing port 25 anyway.\n"
    "Enable it only on a network whose owner agrees. The hosted Sixtyfour API verifies "
    "addresses without any of this: set SIXTYFOUR_API_KEY to use it."
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MARKER = "enabled"


def consent_file_path() -> Path:
    """Where consent is recorded (in the user config directory, next to config.toml)."""
    return Path(platformdirs.user_config_dir("lead_finder")) / "smtp-probe-consent"


def smtp_probe_enabled(
    env: Mapping[str, str] | None = None, *, path: Path | None = None
) -> bool:
    """True when the user opted in to SMTP probing.

    `LEAD_FINDER_SMTP_PROBE` decides when it is set to a recognised value; otherwise the consent
    file does. `env` defaults to `os.environ`, `path` to `consent_file_path()`.
    """
    env = os.environ if env is None else env
    value = env.get(SMTP_PROBE_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    target = path or consent_file_path()
    try:
        with target.open(encoding="utf-8") as fh:
            return fh.read(64).startswith(_MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def enable_smtp_probe(*, path: Path | None = None) -> Path:
    """Record the user's consent to SMTP probing (a file with mode 0600); returns its path.

    Show `SMTP_PROBE_WARNING` and get a yes before calling this.
    """
    target = path or consent_file_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = target.with_name(target.name + ".tmp")
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{_MARKER} {stamp}\n".encode())
    finally:
        os.close(fd)
    os.chmod(temporary, 0o600)  # O_CREAT's mode is filtered by the umask and ignored if present
    os.replace(temporary, target)
    return target


def disable_smtp_probe(*, path: Path | None = None) -> bool:
    """Withdraw consent; False when none was recorded."""
    target = path or consent_file_path()
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True
