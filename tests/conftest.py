"""Shared pytest fixtures. Server fixtures live in tests/servers.py."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import (  # noqa: F401 - imported so pytest finds the fixtures
    sixtyfour_server,
    sixtyfour_server_factory,
    webhook_receiver,
)

_SETTINGS_ENV = (
    "SIXTYFOUR_API_KEY", "LEAD_FINDER_BASE_URL", "LEAD_FINDER_CACHE", "LEAD_FINDER_BACKEND",
    "LEAD_FINDER_BUDGET", "LEAD_FINDER_DAILY_BUDGET", "LEAD_FINDER_SERVER_KEYS",
    "LEAD_FINDER_SMTP_PROBE",
)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's key, keyring, config file or cache."""
    for name in _SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    yield


@pytest.fixture
def make_finder(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build LeadFinders pointed at a live server, closed at teardown.

    make_finder(server, cache_path=..., **LeadFinder kwargs)
    """
    from lead_finder.finder import LeadFinder

    made: list[LeadFinder] = []

    def make(server: Any, **kwargs: Any) -> LeadFinder:
        kwargs.setdefault("cache_path", tmp_path / "cache.sqlite3")
        kwargs.setdefault("poll_interval", 0.02)
        kwargs.setdefault("requests_per_minute", float("inf"))
        kwargs.setdefault("use_keyring", False)
        finder = LeadFinder(server.api_key, base_url=server.base_url, **kwargs)
        made.append(finder)
        return finder

    yield make
    for finder in made:
        finder.close()



@pytest.fixture(scope="module")
def world() -> Iterator[Any]:
    """The loopback mail world (tests/mailworld.py): DNS and SMTP servers on 127.0.0.x."""
    from mailworld import MailWorld

    running = MailWorld.start()
    try:
        yield running
    finally:
        running.stop()
