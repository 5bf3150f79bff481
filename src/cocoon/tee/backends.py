"""Where quotes come from: a real TD (configfs-tsm), the simulated platform, or nowhere.

A backend has one job: turn 64 bytes of report_data into a quote. ``none`` returns no quote;
its certificates prove only key possession and only the ``any`` policy accepts them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cocoon.tee.errors import BackendError, QuoteInvalid
from cocoon.tee.quote import parse_quote
from cocoon.tee.sim import sim_platform

__all__ = ["TSM_REPORT_DIR", "NoneBackend", "TdxBackend", "TeeBackend", "make_backend"]

TSM_REPORT_DIR = Path("/sys/kernel/config/tsm/report")
TDX_GUEST_DEVICE = Path("/dev/tdx_guest")
# _IOWR('T', 1, struct tdx_report_req) with sizeof = 64 + 1024 (linux/tdx-guest.h)
_TDX_CMD_GET_REPORT0 = (3 << 30) | ((64 + 1024) << 16) | (ord("T") << 8) | 1


@runtime_checkable
class TeeBackend(Protocol):
    name: str

    def quote(self, report_data: bytes) -> bytes | None: ...

    def image_hash(self) -> bytes | None: ...


class NoneBackend:
    """No TEE: certificates carry claims but no quote."""

    name = "none"

    def quote(self, report_data: bytes) -> bytes | None:
        return None

    def image_hash(self) -> bytes | None:
        return None


class TdxBackend:
    """A real TDX guest: quotes through Linux configfs-tsm (``/sys/kernel/config/tsm/report``).

    Protocol: mkdir an entry, write 64 bytes to ``inblob``, read ``outblob`` (the quote), check
    that ``generation`` did not move (another writer raced us), rmdir the entry.
    """

    name = "tdx"

    def __init__(
        self,
        tsm_dir: Path = TSM_REPORT_DIR,
        *,
        timeout_s: float = 10.0,
        guest_device: Path = TDX_GUEST_DEVICE,
    ) -> None:
        self.tsm_dir = Path(tsm_dir)
        self.guest_device = Path(guest_device)
        self.timeout_s = timeout_s
        self._image_hash: bytes | None = None

    def quote(self, report_data: bytes) -> bytes:
        if len(report_data) != 64:
            raise BackendError("report_data must be 64 bytes")
        if not self.tsm_dir.is_dir():
            raise BackendError(f"configfs-tsm not available at {self.tsm_dir} (not a TDX guest?)")
        entry = self.tsm_dir / f"cocoon-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            entry.mkdir()
        except OSError as exc:
            raise BackendError(f"cannot create tsm report entry: {exc}") from exc
        try:
            provider = self._read(entry / "provider").decode().strip()
            if provider != "tdx_guest":
                raise BackendError(f"tsm provider is {provider!r}, not tdx_guest")
            generation = int(self._read(entry / "generation"))
            (entry / "inblob").write_bytes(report_data)
            quote = self._read(entry / "outblob")
            if int(self._read(entry / "generation")) != generation + 1:
                raise BackendError("tsm report entry was written concurrently; retry")
        except (OSError, ValueError) as exc:
            raise BackendError(f"configfs-tsm quote failed: {exc}") from exc
        finally:
            # A fake directory in tests may still hold files; the kernel's entries always go.
            with contextlib.suppress(OSError):
                entry.rmdir()
        return quote

    def _read(self, path: Path) -> bytes:
        """Read an attribute; while the quoting service is busy (EBUSY/EAGAIN, or not there yet) retry briefly."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                data = path.read_bytes()
                if data:
                    return data
            except (FileNotFoundError, BlockingIOError, InterruptedError) as exc:
                if time.monotonic() >= deadline:
                    raise BackendError(f"{path.name} unavailable: {exc}") from exc
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.EAGAIN) or time.monotonic() >= deadline:
                    raise
            if time.monotonic() >= deadline:
                raise BackendError(f"{path.name} stayed empty")
            time.sleep(0.005)

    def td_report(self, report_data: bytes) -> bytes:
        """A local 1024-byte TDREPORT via ``/dev/tdx_guest`` (TDX_CMD_GET_REPORT0), for the seal protocol."""
        import fcntl

        if len(report_data) != 64:
            raise BackendError("report_data must be 64 bytes")
        request = bytearray(
            report_data + bytes(1024)
        )  # struct tdx_report_req {reportdata[64]; tdreport[1024]}
        try:
            with open(self.guest_device, "rb", buffering=0) as dev:
                fcntl.ioctl(dev.fileno(), _TDX_CMD_GET_REPORT0, request, True)
        except OSError as exc:
            raise BackendError(f"TDX_CMD_GET_REPORT0 on {self.guest_device} failed: {exc}") from exc
        return bytes(request[64:])

    def image_hash(self) -> bytes:
        if self._image_hash is None:
            try:
                self._image_hash = parse_quote(self.quote(bytes(64))).image_hash
            except QuoteInvalid as exc:
                raise BackendError(f"the platform returned an unparsable quote: {exc}") from exc
        return self._image_hash


def make_backend(
    kind: str,
    *,
    home: Path | None = None,
    measurements: Mapping[str, str] | None = None,
    tsm_dir: Path = TSM_REPORT_DIR,
) -> TeeBackend:
    """``none`` | ``sim`` (platform under ``home/"sim-tee"``) | ``tdx`` (configfs-tsm)."""
    if kind == "none":
        return NoneBackend()
    if kind == "tdx":
        return TdxBackend(tsm_dir)
    if kind == "sim":
        if home is None:
            raise BackendError("the sim backend needs a home directory for its platform")
        return sim_platform(home).backend(measurements)
    raise BackendError(f"unknown TEE backend {kind!r} (none, sim, tdx)")
