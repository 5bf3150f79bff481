"""Persistent 32-byte key seeds (wallet and signing keys of nodes that hold money).

A seed is kept as hex in a file readable only by its owner. Creating one is atomic (write to a
temporary file, then rename), so a crash never leaves half a key, and two services that race to
create the same key end up with the one that won. A key file others can read is still used (the
node must start), but it is logged as a warning naming the file and the fix.

A node whose TEE seals its secrets registers its home with :func:`seal_home` and a root secret the
seal service released to its measured image. Every seed under that home is then derived from the
root (HKDF-SHA256, the file's path below the home as the purpose) and never written: the same image
gets the same keys after a restart, another image other keys. A plaintext key file left in a sealed
home is refused rather than used, so no secret is ever read from disk there.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cocoon.core.statedir import private_dir
from cocoon.errors import ConfigError

__all__ = [
    "is_sealed",
    "load_or_create_seed",
    "load_seed",
    "seal_home",
    "sealed_seed",
    "unseal_home",
    "warn_if_loose",
]

SEED_BYTES = 32
log = logging.getLogger(__name__)
_sealed: dict[Path, bytes] = {}  # resolved home -> sealed root (several nodes may share a process)
_sealed_lock = threading.Lock()


def sealed_seed(root: bytes, name: str) -> bytes:
    """The seed a sealed node uses for the key file ``name`` (its path below the home)."""
    info = f"cocoon-node-key/seed/{name}".encode()
    return HKDF(hashes.SHA256(), SEED_BYTES, salt=b"cocoon-sealed-key", info=info).derive(root)


def seal_home(home: Path, root: bytes) -> None:
    """Derive every seed under ``home`` from ``root`` from now on (in this process)."""
    if len(root) < 32:
        raise ConfigError("a sealed root must be at least 32 bytes")
    with _sealed_lock:
        _sealed[Path(home).resolve()] = bytes(root)


def unseal_home(home: Path) -> None:
    with _sealed_lock:
        _sealed.pop(Path(home).resolve(), None)


def _sealed_root(path: Path) -> tuple[bytes, str] | None:
    resolved = path.resolve()
    with _sealed_lock:
        for home, root in _sealed.items():
            if resolved.is_relative_to(home):
                return root, resolved.relative_to(home).as_posix()
    return None


def is_sealed(path: Path) -> bool:
    """Whether ``path`` lies in a sealed home (its seed is derived, never stored)."""
    return _sealed_root(path) is not None


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
    """The seed in ``path``, made (random) on first use; derived, not stored, in a sealed home."""
    sealed = _sealed_root(path)
    if sealed is not None:
        if path.exists():
            raise ConfigError(
                f"{path} is a plaintext key in a home whose keys are sealed; move what it holds "
                "with the old setup, then delete it (a sealed node derives its keys, never reads them)"
            )
        return sealed_seed(*sealed)
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
