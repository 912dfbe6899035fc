"""Settings precedence, the masked key, and the config file's permissions."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from lead_finder.config import Secret, load_settings, parse_money
from lead_finder.errors import ConfigurationError

CANARY = "sk64_CANARY_config_0123456789"


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_precedence_argument_env_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", 'api_key = "from-file-key-1234"\nbudget = "3"\n'
                       'base_url = "https://file.example"\n')
    env = {"SIXTYFOUR_API_KEY": "from-env-key-5678", "LEAD_FINDER_BUDGET": "$2.50"}
    from_file = load_settings(env={}, config_path=cfg, use_keyring=False)
    from_env = load_settings(env=env, config_path=cfg, use_keyring=False)
    from_arg = load_settings(env=env, config_path=cfg, use_keyring=False,
                             api_key=Secret("from-arg-key-9999"), budget_cents="1")
    assert from_file.api_key == Secret("from-file-key-1234")
    assert from_file.sources["api_key"] == "config file"
    assert from_file.budget_cents == 300
    assert from_env.api_key == Secret("from-env-key-5678") and from_env.budget_cents == 250
    assert from_env.base_url == "https://file.example"
    assert from_arg.api_key == Secret("from-arg-key-9999") and from_arg.budget_cents == 100
    assert from_arg.sources["api_key"] == "argument"


def test_keyring_sits_between_env_and_file(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import lead_finder.config as config

    cfg = write_config(tmp_path / "c.toml", 'api_key = "from-file-key-1234"\n')
    monkeypatch.setattr(config, "_keyring_key", lambda: "from-keyring-4321")
    assert load_settings(env={}, config_path=cfg).sources["api_key"] == "keyring"
    assert load_settings(env={"SIXTYFOUR_API_KEY": "e" * 16},
                         config_path=cfg).sources["api_key"] == "environment"


def test_missing_keyring_backend_is_not_an_error(tmp_path: Path) -> None:
    # the null backend (set for every test) answers nothing; a broken one must not raise either
    settings = load_settings(env={}, config_path=tmp_path / "none.toml")
    assert settings.api_key is None and settings.resolved_backend == "local"


def test_config_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", f'api_key = "{CANARY}"\n', mode=0o644)
    with pytest.raises(ConfigurationError, match="chmod 600") as info:
        load_settings(env={}, config_path=cfg, use_keyring=False)
    assert CANARY not in str(info.value)


def test_secret_never_shows_itself(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(CANARY)
    logging.getLogger("test").warning("key is %s / %r / %s", secret, secret, f"{secret}")
    settings = load_settings(env={"SIXTYFOUR_API_KEY": CANARY}, use_keyring=False,
                             config_path=Path("/nonexistent.toml"))
    shown = " ".join([repr(secret), str(secret), f"{secret}", repr(settings), caplog.text])
    assert CANARY not in shown
    assert secret.masked == "****6789"
    assert secret.reveal() == CANARY
    with pytest.raises(TypeError):
        pickle.dumps(secret)


@pytest.mark.parametrize(("text", "cents"), [
    ("5", 500), ("$5", 500), ("12.50", 1250), (" $1,000 ", 100000), ("0", 0), ("", None),
    ("off", None), (None, None), (1, 100), (0.05, 5),
])
def test_parse_money(text: object, cents: int | None) -> None:
    assert parse_money(text, "LEAD_FINDER_BUDGET") == cents


@pytest.mark.parametrize("text", ["five", "-1", "nan", "inf", "1e999"])
def test_bad_money_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="dollars"):
        parse_money(text, "LEAD_FINDER_BUDGET")


def test_bad_backend_names_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="sixtyfour, local"):
        load_settings(env={"LEAD_FINDER_BACKEND": "sixtyfor"}, use_keyring=False,
                      config_path=Path("/nonexistent.toml"))
    ok = load_settings(env={"LEAD_FINDER_BACKEND": "API"}, use_keyring=False,
                       config_path=Path("/nonexistent.toml"))
    assert ok.resolved_backend == "sixtyfour"
