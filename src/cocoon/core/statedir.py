"""State directories readable only by their owner.

Homes hold key seeds, ledgers and chain state: every directory Cocoon creates for them is mode 0700,
whatever the umask. A directory that exists already is left as its owner made it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "private_dir"]

PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700; return ``path``."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process made it first: theirs stays as it is
        with contextlib.suppress(OSError):
            os.chmod(directory, PRIVATE_DIR_MODE)  # the umask may have cleared bits mkdir asked for
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return path
