"""The worker's instance id: one per home, stable across restarts, so each GPU of one owner (one
wallet, one model) is a worker of its own at the proxy, with its own reputation."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from cocoon.core.statedir import private_dir
from cocoon.errors import ConfigError

__all__ = ["INSTANCE_FILE", "instance_id"]

INSTANCE_FILE = "instance.id"
_ID = re.compile(r"[0-9a-f]{16}")


def instance_id(home: Path) -> str:
    """The id in ``<home>/instance.id``, made (16 random hex digits, 0600) on first use."""
    path = home / INSTANCE_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        private_dir(home)
        text = secrets.token_hex(8)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process of this home made it first: use theirs
            return instance_id(home)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        return text
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not _ID.fullmatch(text):
        raise ConfigError(f"{path} does not hold an instance id (16 hex digits): remove it to make a new one")
    return text
