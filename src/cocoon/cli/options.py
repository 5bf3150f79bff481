"""The global options ``--home`` and ``--json``: accepted before or after the sub-command.

``cocoon --home X chain root show`` and ``cocoon chain root show --home X`` mean the same. Every
top-level group (the root and each sub-app, so a sub-app invoked alone behaves the same) uses
:class:`GlobalOptionsGroup`, which moves the global options found anywhere in its arguments in front
of the sub-command before parsing, and declares them in its callback; :func:`record` stores what
was given in the context's ``meta`` (shared by every context of one invocation), and commands read it
back with :func:`global_options`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

__all__ = [
    "GlobalOptions",
    "GlobalOptionsGroup",
    "HomeOpt",
    "JsonOpt",
    "cli_app",
    "global_options",
    "hoist_global_options",
    "record",
]

# option name -> whether it takes a value
GLOBAL_OPTIONS: dict[str, bool] = {"--home": True, "--json": False}
_META_KEY = "cocoon.global_options"

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="State directory (keys, ledgers, chain). Default: $COCOON_HOME or ~/.cocoon.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (amounts in nanoTON).")]


@dataclass
class GlobalOptions:
    home: Path | None = None  # None: each command's own default under DEFAULT_HOME
    json: bool = False


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """Move every global option (with its value) to the front, keeping everything else in order.

    Stops at ``--``: what follows it is never an option.
    """
    front: list[str] = []
    rest: list[str] = []
    tokens = list(args)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            rest.extend(tokens[i:])
            break
        name = token.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name]
            if takes_value and "=" not in token and i + 1 < len(tokens):
                front.extend(tokens[i : i + 2])
                i += 2
                continue
            front.append(token)
        else:
            rest.append(token)
        i += 1
    return front + rest


class GlobalOptionsGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


def cli_app(*, hoist: bool = True, **settings: Any) -> typer.Typer:
    """A Typer app as every ``cocoon`` group is made: plain help (Rich's Markdown help renderer
    alone costs ~0.15 s per start), no pretty tracebacks, and with ``hoist`` the global options."""
    if hoist:
        settings.setdefault("cls", GlobalOptionsGroup)
    return typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, **settings)


def record(ctx: typer.Context, home: Path | None, as_json: bool) -> GlobalOptions:
    """Store the global options a group callback was given (a later group only adds to them)."""
    options: GlobalOptions = ctx.meta.setdefault(_META_KEY, GlobalOptions())
    if home is not None:
        options.home = home.expanduser()
    options.json = options.json or as_json
    return options


def global_options(ctx: typer.Context) -> GlobalOptions:
    options: GlobalOptions = ctx.meta.get(_META_KEY, GlobalOptions())
    return options
