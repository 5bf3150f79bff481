"""Where quotes come from: a real TD (configfs-tsm), the simulated platform, or nowhere.

A backend has one job: turn 64 bytes of report_data into a quote. ``none`` returns no quote;
its certificates prove only key possession and only the ``any`` policy accepts them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cocoon.tee.errors import BackendError, QuoteInvalid
from cocoon.tee.quote import parse_quote

__all__ = ["TSM_REPORT_DIR", "NoneBackend", "TdxBackend", "TeeBackend", "make_backend"]

TSM_REPORT_DIR = Path("/sys/kernel/config/tsm/report")


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

    def __init__(self, tsm_dir: Path = TSM_REPORT_DIR) -> None:
        self.tsm_dir = Path(tsm_dir)
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
            provider = (
                (entry / "provider").read_text().strip() if (entry / "provider").exists() else "tdx_guest"
            )
            if provider != "tdx_guest":
                raise BackendError(f"tsm provider is {provider!r}, not tdx_guest")
            generation = _read_int(entry / "generation")
            (entry / "inblob").write_bytes(report_data)
            quote = (entry / "outblob").read_bytes()
            if _read_int(entry / "generation") != (generation + 1 if generation is not None else None):
                raise BackendError("tsm report entry was written concurrently; retry")
        except OSError as exc:
            raise BackendError(f"configfs-tsm quote failed: {exc}") from exc
        finally:
            # A fake directory in tests may still hold files; the kernel's entries always go.
            with contextlib.suppress(OSError):
                entry.rmdir()
        if not quote:
            raise BackendError("configfs-tsm returned an empty quote")
        return quote

    def image_hash(self) -> bytes:
        if self._image_hash is None:
            try:
                self._image_hash = parse_quote(self.quote(bytes(64))).image_hash
            except QuoteInvalid as exc:
                raise BackendError(f"the platform returned an unparsable quote: {exc}") from exc
        return self._image_hash


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


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
        from cocoon.tee.sim import sim_platform

        if home is None:
            raise BackendError("the sim backend needs a home directory for its platform")
        return sim_platform(home).backend(measurements)
    raise BackendError(f"unknown TEE backend {kind!r} (none, sim, tdx)")
