"""model_hash: the documented construction, reproducibility and the in-process cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cocoon.inference import ModelError, ModelHashCache, embedded_model_hash, embedded_model_path, model_hash
from cocoon.inference.model_hash import CHUNK_SIZE, merkle_root


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def expected(files: dict[str, bytes]) -> bytes:
    """The module docstring's definition, written out independently."""
    out = b"\x03cocoon-model-hash-v1" + u64(len(files))
    for name in sorted(files, key=lambda n: n.encode()):
        data = files[name]
        chunks = [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)] or [b""]
        leaves = [h(b"\x00" + c) for c in chunks]
        while len(leaves) > 1:  # for <= 4 leaves RFC 6962 equals pairwise reduction with odd promotion
            leaves = [
                h(b"\x01" + leaves[i] + leaves[i + 1]) if i + 1 < len(leaves) else leaves[i]
                for i in range(0, len(leaves), 2)
            ]
        path = name.encode()
        out += h(b"\x02" + u64(len(path)) + path + u64(len(data)) + leaves[0])
    return h(out)


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_single_file_matches_the_definition(tmp_path: Path) -> None:
    (tmp_path / "w.gguf").write_bytes(b"abc")
    assert model_hash(tmp_path / "w.gguf") == expected({"w.gguf": b"abc"})
    # A file hashes like a directory holding just that file.
    assert model_hash(tmp_path) == model_hash(tmp_path / "w.gguf")


def test_directory_with_multi_chunk_files(tmp_path: Path) -> None:
    files = {
        "config.json": b"{}",
        "empty": b"",
        "sub/model-00001.safetensors": os.urandom(2 * CHUNK_SIZE + 5),  # three leaves
        "sub/model-00002.safetensors": os.urandom(CHUNK_SIZE),  # exactly one leaf
        "Z.txt": b"upper case sorts first",
    }
    write(tmp_path / "m", files)
    assert model_hash(tmp_path / "m") == expected(files)
    assert model_hash(tmp_path / "m", workers=3) == expected(files)
    assert model_hash(tmp_path / "m", workers=4, cache=ModelHashCache()) == expected(files)
    with pytest.raises(ValueError):
        model_hash(tmp_path / "m", workers=0)


def test_hash_ignores_location_and_metadata_but_not_names_or_content(tmp_path: Path) -> None:
    files = {"a.bin": b"1" * 1000, "b/c.bin": b"2"}
    write(tmp_path / "one", files)
    write(tmp_path / "two", files)
    os.utime(tmp_path / "two" / "a.bin", (0, 0))
    (tmp_path / "two" / "a.bin").chmod(0o600)
    base = model_hash(tmp_path / "one")
    assert model_hash(tmp_path / "two") == base
    (tmp_path / "two" / "a.bin").rename(tmp_path / "two" / "renamed.bin")
    assert model_hash(tmp_path / "two") != base
    (tmp_path / "one" / "b" / "c.bin").write_bytes(b"3")
    assert model_hash(tmp_path / "one") != base


def test_symlinked_files_are_followed(tmp_path: Path) -> None:
    # Hugging Face caches keep snapshots as symlinks into a blob store.
    write(tmp_path / "blobs", {"x": b"weights"})
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "model.bin").symlink_to(tmp_path / "blobs" / "x")
    assert model_hash(tmp_path / "snap") == expected({"model.bin": b"weights"})


def test_merkle_root_shape() -> None:
    leaves = [h(bytes([i])) for i in range(5)]
    left = h(b"\x01" + h(b"\x01" + leaves[0] + leaves[1]) + h(b"\x01" + leaves[2] + leaves[3]))
    assert merkle_root(leaves) == h(b"\x01" + left + leaves[4])
    with pytest.raises(ValueError):
        merkle_root([])


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        model_hash(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError):
        model_hash(tmp_path / "empty")


def test_cache_reuses_unchanged_files(tmp_path: Path) -> None:
    write(tmp_path, {"a": b"1", "b": b"2"})
    cache = ModelHashCache()
    first = model_hash(tmp_path, cache=cache)
    assert model_hash(tmp_path, cache=cache) == first
    assert (cache.misses, cache.hits) == (2, 2)
    (tmp_path / "a").write_bytes(b"changed")
    assert model_hash(tmp_path, cache=cache) != first
    assert cache.misses == 3


def test_embedded_model_hash_is_stable() -> None:
    cache = ModelHashCache()
    digest = embedded_model_hash(cache=cache)
    assert len(digest) == 32
    assert embedded_model_hash(cache=cache) == digest == model_hash(embedded_model_path())
    assert embedded_model_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
