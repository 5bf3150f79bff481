"""The root's lazy entries: every one builds, lists the help its command has, and runs as before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from cocoon.cli.lazy import LazyCommands
from cocoon.cli.main import ENTRIES, app


def _root() -> typer.core.TyperGroup:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    return root


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_entry_builds_and_lists_its_own_help(name: str) -> None:
    commands = _root().commands
    assert isinstance(commands, LazyCommands)
    stand_in = commands.listed(name)  # what the listing shows before building
    built = commands[name]
    assert built.name == name and commands.listed(name) is built
    for limit in (30, 45, 80, 200):  # the listing's width decides the limit
        assert stand_in.get_short_help_str(limit) == built.get_short_help_str(limit), name


def test_the_listing_builds_nothing_and_shows_every_entry() -> None:
    code = (
        "import json, sys; from cocoon.cli.main import main; sys.argv = ['cocoon', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('cocoon.cli.'))), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert not [m for m in loaded if m.endswith("_cmd")], loaded  # no command module was imported
    assert "rich" not in done.stderr
    listing = done.stdout.split("Commands:")[1]
    for name in ["version", *ENTRIES]:
        assert f"\n  {name} " in listing


def test_building_the_tree_twice_adds_each_extra_command_once() -> None:
    first = _root().commands["worker"]
    second = _root().commands["worker"]
    assert list(first.commands) == list(second.commands)  # type: ignore[attr-defined]
    assert list(second.commands).count("claim") == 1  # type: ignore[attr-defined]


def test_a_typo_is_still_answered_with_the_lazy_names() -> None:
    result = CliRunner().invoke(app, ["wrker"])
    assert result.exit_code == 2 and "Did you mean 'worker'?" in result.output


def test_global_options_after_the_command_still_apply() -> None:
    result = CliRunner().invoke(app, ["version", "--json"])
    assert json.loads(result.output) == {"version": __import__("cocoon").__version__}
