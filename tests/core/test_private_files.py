"""State directories are 0700; a key file others can read is used but warned about."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from cocoon.core.keyfile import load_or_create_seed, load_seed
from cocoon.core.statedir import private_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_makes_every_missing_level_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        made = private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    assert made.is_dir()
    assert [_mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3


def test_private_dir_leaves_an_existing_directory_as_its_owner_made_it(tmp_path: Path) -> None:
    existing = tmp_path / "mine"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    private_dir(existing / "new")
    assert _mode(existing) == 0o755 and _mode(existing / "new") == 0o700


def test_private_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        private_dir(tmp_path / "file")


def test_new_key_files_are_0600_in_a_0700_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "node" / "wallet.key"
    with caplog.at_level(logging.WARNING, logger="cocoon.core.keyfile"):
        seed = load_or_create_seed(path)
    assert len(seed) == 32 and _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert not caplog.records


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606])
def test_a_key_file_others_can_read_is_warned_about_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    path = tmp_path / "wallet.key"
    seed = load_or_create_seed(path)
    os.chmod(path, mode)
    with caplog.at_level(logging.WARNING, logger="cocoon.core.keyfile"):
        assert load_seed(path) == seed  # still usable: the node must start
    [record] = caplog.records
    assert str(path) in record.getMessage() and f"{mode:03o}" in record.getMessage()
    assert "chmod 600" in record.getMessage()
