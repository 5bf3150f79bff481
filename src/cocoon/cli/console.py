"""Rich, loaded on first use: ``cocoon --help`` and its typos never import it.

Rich was about a fifth of the CLI's start-up. Each command module keeps a module-level console (tests
and commands print through it) made by :func:`lazy_console`; it becomes a real
:class:`rich.console.Console` the first time anything on it is used. Tables, texts and markup
escaping go through the factories below for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = ["assemble_text", "escape", "lazy_console", "make_table", "make_text"]


class _DeferredConsole:
    """Stands for a Console until the first attribute is read or set; then forwards to it."""

    __slots__ = ("_console", "_options")

    def __init__(self, options: dict[str, Any]) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def _real(self) -> Console:
        console = object.__getattribute__(self, "_console")
        if console is None:
            from rich.console import Console

            console = Console(**object.__getattribute__(self, "_options"))
            object.__setattr__(self, "_console", console)
        return cast("Console", console)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real(), name, value)


def lazy_console(**options: Any) -> Console:
    """A console built with ``Console(**options)`` when it is first used."""
    return cast("Console", _DeferredConsole(options))


def make_table(*headers: str, **options: Any) -> Table:
    from rich.table import Table

    return Table(*headers, **options)


def make_text(*args: Any, **options: Any) -> Text:
    from rich.text import Text

    return Text(*args, **options)


def assemble_text(*parts: Any, **options: Any) -> Text:
    from rich.text import Text

    return Text.assemble(*parts, **options)


def escape(markup: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(markup)
