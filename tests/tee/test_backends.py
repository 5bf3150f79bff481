"""TEE backends: the configfs-tsm protocol against a fake kernel directory, sim measurements, none."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocoon.tee import (
    AttestationPolicy,
    BackendError,
    NodeIdentity,
    NoneBackend,
    SimPlatform,
    TdxBackend,
    TeeBackend,
    make_backend,
    parse_quote,
    sim_platform,
)
from cocoon.tee.sim import measurements_from_config


class FakeTsm:
    """Plays the kernel: when an entry's inblob appears, writes outblob (a sim quote) and bumps generation."""

    def __init__(self, root: Path, platform: SimPlatform, *, provider: str = "tdx_guest") -> None:
        self.root, self.platform, self.provider = root, platform, provider
        self.backend = platform.backend({"image": "real-td"})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in self.root.iterdir():
                if not (entry / "provider").exists():
                    (entry / "generation").write_text("0\n")
                    (entry / "provider").write_text(self.provider + "\n")
                inblob = entry / "inblob"
                if inblob.exists() and not (entry / "outblob").exists() and len(inblob.read_bytes()) == 64:
                    quote = self.backend.quote(inblob.read_bytes())
                    (entry / "generation").write_text("1\n")  # the kernel bumps it on the inblob write
                    (entry / "outblob").write_bytes(quote)
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def tsm(tmp_path: Path, platform: SimPlatform) -> Iterator[FakeTsm]:
    root = tmp_path / "tsm" / "report"
    root.mkdir(parents=True)
    fake = FakeTsm(root, platform)
    yield fake
    fake.stop()


def test_tdx_backend_quotes_through_configfs_tsm(tsm: FakeTsm, platform: SimPlatform, now: int) -> None:
    backend = TdxBackend(tsm.root, timeout_s=5)
    quote = backend.quote(b"\x42" * 64)
    assert parse_quote(quote).report_data == b"\x42" * 64
    assert backend.image_hash() == tsm.backend.image_hash()
    ident = NodeIdentity.create(backend, now=now)
    att = AttestationPolicy.sim(platform).verify_certificate(ident.cert_der, now=now)
    assert att.image_hash == tsm.backend.image_hash()


def test_tdx_backend_refuses_other_providers(tmp_path: Path, platform: SimPlatform) -> None:
    root = tmp_path / "report"
    root.mkdir()
    fake = FakeTsm(root, platform, provider="sev_guest")
    try:
        with pytest.raises(BackendError, match="sev_guest"):
            TdxBackend(root, timeout_s=2).quote(bytes(64))
    finally:
        fake.stop()


def test_tdx_backend_without_configfs(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not a TDX guest"):
        TdxBackend(tmp_path / "absent").quote(bytes(64))
    with pytest.raises(BackendError, match="64 bytes"):
        TdxBackend(tmp_path).quote(b"short")


def test_make_backend(tmp_path: Path) -> None:
    assert isinstance(make_backend("none"), NoneBackend)
    assert make_backend("none").quote(bytes(64)) is None and make_backend("none").image_hash() is None
    assert isinstance(make_backend("tdx", tsm_dir=tmp_path), TdxBackend)
    sim = make_backend("sim", home=tmp_path, measurements={"image": "x"})
    assert isinstance(sim, TeeBackend) and sim.name == "sim"
    with pytest.raises(BackendError):
        make_backend("sgx")
    with pytest.raises(BackendError):
        make_backend("sim")


def test_sim_platform_persists_and_images_differ(tmp_path: Path) -> None:
    first = sim_platform(tmp_path)
    again = sim_platform(tmp_path)
    assert first.root_ca_der == again.root_ca_der
    assert first.backend({"image": "a"}).image_hash() == again.backend({"image": "a"}).image_hash()
    assert first.backend({"image": "a"}).image_hash() != first.backend({"image": "b"}).image_hash()
    assert sim_platform(tmp_path / "elsewhere").root_ca_der != first.root_ca_der


def test_measurements_from_config() -> None:
    m = measurements_from_config({"image": "w", "rtmr3": "ab" * 48})
    assert m["rtmr3"] == b"\xab" * 48 and m["mr_owner"] == bytes(48) and len(m["mr_td"]) == 48
    for bad in ({"rtmr9": "00"}, {"mr_td": "zz"}, {"mr_td": "00" * 47}):
        with pytest.raises(BackendError):
            measurements_from_config(bad)


def test_td_report_needs_the_guest_device(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="GET_REPORT0"):
        TdxBackend(tmp_path, guest_device=tmp_path / "no-tdx-guest").td_report(bytes(64))
