"""Persistent 32-byte key seeds on disk (wallet and signing keys of nodes that hold money).

A seed is kept as hex in a file readable only by its owner. Creating one is atomic (write to a
temporary file, then rename), so a crash never leaves half a key, and two services that race to
create the same key end up with the one that won. A key file others can read is still used (the
node must start), but it is logged as a warning naming the file and the fix.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from cocoon.core.statedir import private_dir
from cocoon.errors import ConfigError

__all__ = ["load_or_create_seed", "load_seed", "warn_if_loose"]

SEED_BYTES = 32
log = logging.getLogger(__name__)


def warn_if_loose(path: Path) -> None:
    """Log a warning when a file holding a secret is readable or writable by group or others."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # reading it reports the real problem
    if mode & 0o077:
        log.warning(
            "key file %s can be read or changed by other users (mode %03o); run `chmod 600 %s`",
            path,
            mode,
            path,
        )


def load_seed(path: Path) -> bytes:
    """Read a seed; raises :class:`ConfigError` when the file is missing or malformed."""
    warn_if_loose(path)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from exc
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"key file {path} does not hold hex") from None
    if len(seed) != SEED_BYTES:
        raise ConfigError(f"key file {path} must hold {SEED_BYTES} bytes, has {len(seed)}")
    return seed


def load_or_create_seed(path: Path) -> bytes:
    """The seed in ``path``, made (random) on first use."""
    if path.exists():
        return load_seed(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_bytes(SEED_BYTES).hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another process made it first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return load_seed(path)
