"""Everything a user can call is documented: CLI commands in the README, public names with
docstrings (Excel shows UDF docstrings in its function wizard)."""

from __future__ import annotations

import inspect
from pathlib import Path

import click
import pytest

import lead_finder
from lead_finder.cli import cli
from lead_finder.excel import udfs

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix}{name} ")
    return names


@pytest.mark.parametrize("command", _commands(cli))
def test_every_cli_command_is_in_the_readme_and_has_help(command: str) -> None:
    assert command in README, f"`lead-finder {command}` is not in the README"
    ctx = click.Context(cli)
    target: click.Command = cli
    for part in command.split(" "):
        assert isinstance(target, click.Group)
        found = target.get_command(ctx, part)
        assert found is not None
        target = found
    assert (target.help or "").strip(), f"`lead-finder {command}` has no help text"


@pytest.mark.parametrize("name", [n for n in lead_finder.__all__ if not n.startswith("__")])
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(lead_finder, name)
    assert inspect.getdoc(obj), f"lead_finder.{name} has no docstring"


@pytest.mark.parametrize("name", ["FINDEMAIL", "FINDEMAILS", "EMAILSTATUS", "PERSONALEMAIL"])
def test_every_udf_is_documented(name: str) -> None:
    assert inspect.getdoc(getattr(udfs, name))
    assert name in README
