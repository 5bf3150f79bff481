"""A reproducible model hash: SHA-256 Merkle trees over the weight files.

Definition (version 1; every integer is unsigned 64-bit big-endian, ``H`` is SHA-256):

1. The model is a file or a directory. A directory contributes every regular file below it
   (symlinks to files are followed, symlinked directories are not entered) except what tools leave
   beside weights (:data:`SKIPPED_DIRS`, :data:`SKIPPED_FILES`): directories named ``__pycache__``,
   ``.git``, ``.hg``, ``.svn``, ``.idea``, ``.vscode``, ``.ipynb_checkpoints`` or ``.cache`` (the
   Hugging Face download metadata) are not entered, and files named ``.DS_Store``, ``Thumbs.db``,
   ``desktop.ini``, ``*.pyc``, ``._*`` (macOS), ``*~``, ``.*.swp``/``.swo``/``.swx`` (vim) and
   ``.#*`` (emacs) are left out. A single file counts as a directory holding just that file, whatever
   its name. Each file is named by its path relative to the directory, with ``/`` separators, UTF-8
   encoded. Files are sorted by those bytes.
2. A file's content is cut into 1 MiB (1 048 576 byte) chunks; an empty file has one empty chunk.
   ``leaf = H(0x00 || chunk)``.
3. The file root is the RFC 6962 tree hash over its leaves: one leaf is its own root; otherwise
   split at the largest power of two below the count, ``node = H(0x01 || left || right)``.
4. ``entry = H(0x02 || len(path) || path || size || file_root)``.
5. ``model_hash = H(0x03 || "cocoon-model-hash-v1" || count || entry_1 || ... || entry_n)``.

The prefixes 0x00..0x03 separate the domains so that no leaf, node, entry or root can be passed
off as another. Chunk roots can be checked in parallel and against a partial download; the result
does not depend on the file system, timestamps or permissions. Results are cached per file in a
:class:`ModelHashCache` keyed by (path, size, mtime); the cache lives only in this process.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cocoon.inference.errors import ModelError
from cocoon.inference.models import embedded_model_path

__all__ = [
    "CHUNK_SIZE",
    "MODEL_HASH_DOMAIN",
    "SKIPPED_DIRS",
    "SKIPPED_FILES",
    "ModelFiles",
    "ModelHashCache",
    "embedded_model_hash",
    "file_root",
    "merkle_root",
    "model_files",
    "model_hash",
    "model_size",
]

CHUNK_SIZE = 1 << 20
MODEL_HASH_DOMAIN = b"cocoon-model-hash-v1"
_LEAF, _NODE, _ENTRY, _ROOT = b"\x00", b"\x01", b"\x02", b"\x03"
Progress = Callable[[int], None]  # bytes just hashed
# What editors, VCS, Python and operating systems leave in a model folder: never weights.
SKIPPED_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".idea", ".vscode", ".ipynb_checkpoints", ".cache"}
)
SKIPPED_FILES = (
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "*.pyc",
    "._*",
    "*~",
    ".*.swp",
    ".*.swo",
    ".*.swx",
    ".#*",
)


def _junk_file(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SKIPPED_FILES)


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 tree hash over already-hashed leaves (at least one)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(_NODE + merkle_root(leaves[:split]) + merkle_root(leaves[split:])).digest()


def file_root(path: Path, progress: Progress | None = None) -> tuple[int, bytes]:
    """(size, Merkle root of the 1 MiB chunk leaves) of one file; ``progress`` gets each chunk's size."""
    leaves: list[bytes] = []
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                size += len(chunk)
                leaves.append(hashlib.sha256(_LEAF + chunk).digest())
                if progress is not None:
                    progress(len(chunk))
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    if not leaves:
        leaves.append(hashlib.sha256(_LEAF).digest())
    return size, merkle_root(leaves)


@dataclass(slots=True)
class ModelHashCache:
    """File roots already computed in this process, keyed by (absolute path, size, mtime_ns).
    Safe to share between threads."""

    _roots: dict[tuple[str, int, int], bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    hits: int = 0
    misses: int = 0

    def root(self, path: Path, progress: Progress | None = None) -> tuple[int, bytes]:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._roots.get(key)
            if cached is not None:
                self.hits += 1
                if progress is not None:
                    progress(st.st_size)
                return st.st_size, cached
            self.misses += 1
        size, root = file_root(path, progress)
        if size == st.st_size:  # a file that changed while we read it is not cached
            with self._lock:
                self._roots[key] = root
        return size, root


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """What :func:`model_hash` reads under a path (relative name, full path, sorted) and what it
    leaves out by the rule above (relative names of skipped files and directories)."""

    files: list[tuple[bytes, Path]]
    skipped: list[str]

    @property
    def size(self) -> int:
        return sum(full.stat().st_size for _, full in self.files)


def model_files(path: Path | str) -> ModelFiles:
    path = Path(path)
    if path.is_file():
        return ModelFiles([(path.name.encode("utf-8"), path)], [])
    if not path.is_dir():
        raise ModelError(f"model path is neither a file nor a directory: {path}")
    found: list[tuple[bytes, Path]] = []
    skipped: list[str] = []
    for root, dirs, names in os.walk(path, followlinks=False):
        here = Path(root)
        skipped += sorted((here / d).relative_to(path).as_posix() + "/" for d in dirs if d in SKIPPED_DIRS)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in names:
            full = here / name
            rel = full.relative_to(path).as_posix()
            if _junk_file(name):
                skipped.append(rel)
                continue
            try:
                mode = full.stat().st_mode  # follows a symlink to its file
            except OSError as exc:
                raise ModelError(f"cannot stat {full}: {exc}") from exc
            if stat.S_ISREG(mode):
                found.append((rel.encode("utf-8", "surrogateescape"), full))
    if not found:
        raise ModelError(f"model directory has no files: {path}")
    return ModelFiles(sorted(found), sorted(skipped))


def model_size(path: Path | str) -> int:
    """The bytes :func:`model_hash` reads (for progress bars)."""
    return model_files(path).size


def model_hash(
    path: Path | str,
    *,
    cache: ModelHashCache | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> bytes:
    """The 32-byte model hash of a weight file or directory (see the module docstring).

    ``workers`` > 1 hashes that many files at once (SHA-256 releases the GIL, so sharded
    checkpoints hash about that many times faster on a machine with the cores and disk for it).
    ``progress`` is called with the size of every chunk read (from the hashing threads).
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    files = model_files(path).files

    def root_of(full: Path) -> tuple[int, bytes]:
        return cache.root(full, progress) if cache is not None else file_root(full, progress)

    if workers == 1 or len(files) == 1:
        roots = [root_of(full) for _, full in files]
    else:
        with ThreadPoolExecutor(
            max_workers=min(workers, len(files)), thread_name_prefix="cocoon-hash"
        ) as pool:
            roots = list(pool.map(root_of, (full for _, full in files)))
    digest = hashlib.sha256(_ROOT + MODEL_HASH_DOMAIN + _u64(len(files)))
    for (rel, _), (size, root) in zip(files, roots, strict=True):
        digest.update(hashlib.sha256(_ENTRY + _u64(len(rel)) + rel + _u64(size) + root).digest())
    return digest.digest()


def embedded_model_hash(*, cache: ModelHashCache | None = None) -> bytes:
    """The model hash of the embedded SmolLM2-135M-Instruct GGUF."""
    return model_hash(embedded_model_path(), cache=cache)
