"""Top-level commands built only when used: ``cocoon chain ...`` never reads ``cocoon worker``'s code.

Typer turns a whole app tree into Click commands before it parses one argument, reading every
command's signature (about 0.1 s of CPU for this CLI, more than all its imports). The root group
instead holds each top-level entry as a :class:`LazyEntry`, its one-line help for the listing and
the function that makes its Typer app; the app is imported and converted when the entry is invoked
or looked up. ``tests/cli/test_lazy_commands.py`` builds every entry and checks each listed help
against the built command's own, so a broken module or a stale line fails there, loudly.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand

from cocoon.cli.options import GlobalOptionsGroup, cli_app

__all__ = ["LazyCommands", "LazyEntry", "LazyRootGroup"]


@dataclass(frozen=True)
class LazyEntry:
    """A top-level command or group, found at ``target`` (``"module:attribute"``) when first used.

    The attribute is a Typer app; or a function that returns one (it may add other modules'
    commands to it first: cache it, so that happens once); or, with ``command``, the command's
    own function.
    """

    target: str
    help: str  # the first sentence of the command's help: what the listing shows before it is built
    command: bool = False

    def build(self, name: str) -> Any:
        module, attribute = self.target.split(":")
        found = getattr(importlib.import_module(module), attribute)
        if self.command:
            made = cli_app(hoist=False)
            made.command()(found)
        else:
            made = found if isinstance(found, typer.Typer) else found()
        command = typer.main.get_command(made)
        command.name = name
        return command


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands by name, building a lazy entry the first time it is read."""

    def __init__(self, built: Mapping[str, Any], entries: Mapping[str, LazyEntry]) -> None:
        self._built = dict(built)
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            entry = self._entries[name]  # KeyError: not a command
            self._built[name] = entry.build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._built.pop(name, None)
        self._entries.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._built
        yield from (name for name in self._entries if name not in self._built)

    def __len__(self) -> int:
        return len(self._built.keys() | self._entries.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._built or name in self._entries

    def listed(self, name: str) -> Any:
        """The command if built, else a stand-in carrying only its help (for the listing)."""
        built = self._built.get(name)
        return built if built is not None else TyperCommand(name=name, help=self._entries[name].help)


class LazyRootGroup(GlobalOptionsGroup):
    """The root group; a subclass sets ``entries``."""

    entries: ClassVar[Mapping[str, LazyEntry]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(self.commands, self.entries)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Click's listing, from each entry's help line instead of its built command."""
        commands = self.commands
        assert isinstance(commands, LazyCommands)
        shown = [(name, commands.listed(name)) for name in self.list_commands(ctx)]
        shown = [(name, command) for name, command in shown if not command.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in shown])
