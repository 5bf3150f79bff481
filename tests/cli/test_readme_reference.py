"""The README's CLI reference is true, flag by flag: every flag it shows exists on that command, and
every flag a command has is shown (the benchmarks, whose knobs change often, are only named)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import typer

from cocoon.cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"
GLOBAL = {"--home", "--json", "--help"}
NOT_LISTED = {"--install-completion", "--show-completion"}
ONLY_NAMED = (("cocoon",), ("cocoon", "chain"), ("cocoon", "bench"))  # their flags are in prose / --help


def _reference_rows() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## CLI reference") :]
    section = section[: section.index("\n## ", 1)]
    return [line for line in section.splitlines() if line.startswith("| `cocoon")]


def _usages() -> list[tuple[tuple[str, ...], set[str]]]:
    """(command path, flags) for every usage the reference shows; `a\\|b` in a path is two commands."""
    out: list[tuple[tuple[str, ...], set[str]]] = []
    for row in _reference_rows():
        first_cell = re.split(r"(?<!\\)\|", row)[1]
        for span in re.findall(r"`([^`]+)`", first_cell):
            tokens = span.split()
            path: list[list[str]] = []
            for token in tokens:
                if token.startswith(("-", "[", '"')) or token.upper() == token.replace("\\|", "|"):
                    break
                path.append(token.split("\\|"))
            flags = set(re.findall(r"--[a-z][a-z0-9-]*", span))
            out.extend((tuple(p), flags) for p in itertools.product(*path))
    return out


def _command(path: tuple[str, ...]) -> Any:
    command = typer.main.get_command(app)
    for name in path[1:]:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _options(command: Any, *, negations: bool = True) -> set[str]:
    """A command's long options (with ``negations``: also the ``--no-x`` of a ``--x/--no-x`` flag)."""
    opts: set[str] = set()
    for param in command.params:
        opts.update(
            o for o in (*param.opts, *(param.secondary_opts if negations else ())) if o.startswith("--")
        )
    return opts


def _all_commands(command: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found.extend(_all_commands(sub, (*path, name)))
    return found


def test_every_flag_the_reference_shows_exists() -> None:
    usages = _usages()
    assert len(usages) > 40
    for path, flags in usages:
        missing = flags - _options(_command(path)) - GLOBAL
        assert not missing, f"README shows {sorted(missing)} for `{' '.join(path)}`, which has no such flag"


def test_every_command_and_flag_is_in_the_reference() -> None:
    shown: dict[tuple[str, ...], set[str]] = {}
    for path, flags in _usages():
        shown.setdefault(path, set()).update(flags)
    for path, command in _all_commands(typer.main.get_command(app), ("cocoon",)):
        if getattr(command, "commands", None) and not getattr(command, "invoke_without_command", False):
            continue  # a plain group: its commands are listed
        assert path in shown or path[:2] in ONLY_NAMED[2:], f"`{' '.join(path)}` is not in the README"
        if path[:2] in ONLY_NAMED[1:] or path in ONLY_NAMED:
            continue
        unlisted = _options(command, negations=False) - shown.get(path, set()) - GLOBAL - NOT_LISTED
        assert not unlisted, f"`{' '.join(path)}` has {sorted(unlisted)}, not in the README"
