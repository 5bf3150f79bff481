from __future__ import annotations

from pathlib import Path

import pytest

from cocoon.tee import SimPlatform, sim_platform

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "tee"
NOW = 1_780_000_000  # a fixed verification time for everything simulated


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return sim_platform(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def other_platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return sim_platform(tmp_path_factory.mktemp("home2"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
