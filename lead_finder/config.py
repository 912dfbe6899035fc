"""Settings: arguments, then environment, then the OS keyring, then the user's config file.

The API key is held in a `Secret`, whose repr and str never show it. It is read from an argument,
`SIXTYFOUR_API_KEY`, the OS keyring (`lead-finder config set-key`), or a config file that only its
owner can read. It is never read from a workbook or notebook, and never written anywhere but the
keyring.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigurationError

__all__ = [
    "Secret",
    "Settings",
    "config_file_path",
    "delete_keyring_key",
    "load_settings",
    "parse_money",
    "set_keyring_key",
]

log = logging.getLogger("lead_finder.config")

KEYRING_SERVICE = "lead_finder"
KEYRING_USER = "sixtyfour_api_key"
BACKENDS = ("sixtyfour", "local")


class Secret:
    """A string that does not show itself: repr, str and format give a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Call only where it is sent (the x-api-key header)."""
        return self._value

    @property
    def masked(self) -> str:
        tail = self._value[-4:] if len(self._value) >= 12 else ""
        return f"****{tail}"

    def __repr__(self) -> str:
        return f"Secret({self.masked!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # pickling would write the key somewhere: refuse
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Settings:
    """Everything lead_finder needs to know, after precedence has been applied.

    `sources` records where each value came from ("argument", "environment", "keyring",
    "config file", "default") for `lead-finder doctor`.
    """

    api_key: Secret | None = None
    base_url: str | None = None
    cache_path: Path | None = None
    backend: str | None = None
    budget_cents: int | None = None
    daily_budget_cents: int | None = None
    confirm_above_cents: int = 500
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def resolved_backend(self) -> str:
        """`sixtyfour` when a key is set (or chosen), else `local` (the built-in engine)."""
        if self.backend:
            return self.backend
        return "sixtyfour" if self.api_key else "local"


def parse_money(value: object, what: str) -> int | None:
    """Dollars ("$5", "5.00", 5) to whole cents; None/blank is no limit."""
    if value is None:
        return None
    text = str(value).strip().replace("$", "").replace(",", "")
    if text == "" or text.lower() in ("none", "off", "unlimited"):
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ConfigurationError(
            f"{what} must be an amount in dollars such as 5 or 12.50, not {str(value)[:20]!r}"
        ) from None
    if not amount.is_finite() or amount < 0 or amount > 10**9:
        raise ConfigurationError(f"{what} must be between 0 and 1,000,000,000 dollars")
    return int((amount * 100).to_integral_value())


def config_file_path() -> Path:
    """The user's config file (TOML)."""
    return Path(platformdirs.user_config_dir("lead_finder")) / "config.toml"


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"The config file {path} can be read by other users, and it may hold your API key. "
            f"Run `chmod 600 {path}` and try again."
        )
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"The config file {path} could not be read: {exc}") from None


def _keyring_key() -> str | None:
    """The key from the OS keyring; a missing or broken keyring backend is not an error."""
    try:
        import keyring

        value = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception as exc:  # any backend failure just means "no key there"
        log.debug("keyring not available: %s", type(exc).__name__)
        return None
    return value or None


def set_keyring_key(key: str) -> None:
    """Store the API key in the OS keyring."""
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, KEYRING_USER, key)
    except Exception as exc:
        raise ConfigurationError(
            "No usable OS keyring on this machine "
            f"({type(exc).__name__}). Set SIXTYFOUR_API_KEY instead, or put api_key in "
            f"{config_file_path()} with permissions 600."
        ) from None


def delete_keyring_key() -> bool:
    """Remove the API key from the OS keyring; False when there was none."""
    try:
        import keyring

        keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception:
        return False
    return True


_ENV = {
    "api_key": "SIXTYFOUR_API_KEY",
    "base_url": "LEAD_FINDER_BASE_URL",
    "cache_path": "LEAD_FINDER_CACHE",
    "backend": "LEAD_FINDER_BACKEND",
    "budget_cents": "LEAD_FINDER_BUDGET",
    "daily_budget_cents": "LEAD_FINDER_DAILY_BUDGET",
}
_FILE = {
    "api_key": "api_key",
    "base_url": "base_url",
    "cache_path": "cache",
    "backend": "backend",
    "budget_cents": "budget",
    "daily_budget_cents": "daily_budget",
    "confirm_above_cents": "confirm_above",
}


def _convert(name: str, value: Any) -> Any:
    if name == "api_key":
        text = str(value).strip()
        return Secret(text) if text else None
    if name == "cache_path":
        return Path(str(value)).expanduser()
    if name in ("budget_cents", "daily_budget_cents", "confirm_above_cents"):
        return parse_money(value, _ENV.get(name, name))
    if name == "backend":
        text = str(value).strip().lower()
        if text in ("", "auto"):
            return None
        if text in ("api", "hosted"):
            text = "sixtyfour"
        if text not in BACKENDS:
            raise ConfigurationError(
                f"backend must be one of {', '.join(BACKENDS)}, not {str(value)[:20]!r}"
            )
        return text
    return str(value).strip() or None


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    use_keyring: bool = True,
    config_path: Path | None = None,
    **arguments: Any,
) -> Settings:
    """Resolve settings: arguments > environment > keyring (key only) > config file > defaults."""
    env = os.environ if env is None else env
    names = {f.name for f in fields(Settings)} - {"sources"}
    unknown = set(arguments) - names
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    file_values = _read_config_file(config_path or config_file_path())
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in sorted(names):
        layers: list[tuple[str, Any]] = [("argument", arguments.get(name))]
        if name in _ENV:
            layers.append(("environment", env.get(_ENV[name])))
        if name == "api_key" and use_keyring:
            layers.append(("keyring", _keyring_key))
        layers.append(("config file", file_values.get(_FILE.get(name, name))))
        for source, raw in layers:
            if callable(raw):
                raw = raw()
            if raw is None or (isinstance(raw, str) and raw.strip() == ""):
                continue
            converted = raw if isinstance(raw, Secret) else _convert(name, raw)
            if converted is None and name not in ("budget_cents", "daily_budget_cents"):
                continue
            values[name] = converted
            sources[name] = source
            break
    settings = Settings(**values)
    return replace(settings, sources=sources)
