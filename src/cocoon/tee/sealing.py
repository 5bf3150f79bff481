"""A node's secrets from the seal service: one sealed root per (image, TCB, role, key version).

The node asks the host's sealing enclave (:mod:`cocoon.tee.seal`) for the key named
``cocoon/<role>/node-keys/v<version>``. The enclave releases it only to a TD whose report (MAC'd by
this CPU) carries the measured image and TCB, and derives it from them: the same image on the same
machine gets the same root after every restart, another image (or TCB, or version) another root.
Every node secret is then derived from the root by purpose (:func:`node_key`), so nothing secret is
ever written to disk. Raising ``key_version`` rotates every key at once; an old image still
recovers its old keys (and so the funds they hold) by booting again.

Where the enclave is: ``unix:/path`` (``cocoon tee seal-server``, the simulated enclave) or
``vsock:<cid>:<port>`` (the host's SGX seal server, the reference's ``2:12345``). Both speak the
same protocol; only the enclave's quote is judged differently (sim root or Intel's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cocoon.tee.collateral import CollateralSource
from cocoon.tee.errors import SealError
from cocoon.tee.seal import (
    SEAL_ENCLAVE_MR,
    SEAL_VSOCK_PORT,
    ReportingBackend,
    derive_subkey,
    request_sealed_key,
)

__all__ = [
    "DEFAULT_SEAL_ADDRESS",
    "SealAddress",
    "fetch_sealed_root",
    "node_key",
    "sealed_key_name",
]

DEFAULT_SEAL_ADDRESS = f"vsock:2:{SEAL_VSOCK_PORT}"  # the host, as the reference's seal server listens


@dataclass(frozen=True, slots=True)
class SealAddress:
    """Where the sealing enclave listens: a unix socket path or a vsock (cid, port)."""

    path: Path | None = None
    vsock: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> SealAddress:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls(path=Path(rest))
        if kind == "vsock":
            cid, _, port = rest.partition(":")
            if cid.isdigit() and port.isdigit() and 0 < int(port) < 65536:
                return cls(vsock=(int(cid), int(port)))
        raise ValueError(f"seal address must be unix:/path or vsock:<cid>:<port>, got {text!r}")

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"vsock:{self.vsock[0]}:{self.vsock[1]}"  # type: ignore[index]


def sealed_key_name(role: str, version: int) -> str:
    if not role.isidentifier() or version < 1:
        raise ValueError("a sealed key needs a role name and a version >= 1")
    return f"cocoon/{role}/node-keys/v{version}"


def node_key(root: bytes, purpose: str) -> bytes:
    """A 32-byte secret for one purpose (``tls-identity``, ``seed/chain-wallet.key``, ...)."""
    return derive_subkey(root, f"cocoon-node-key/{purpose}")


def fetch_sealed_root(
    backend: ReportingBackend,
    *,
    address: SealAddress,
    role: str,
    version: int,
    root_ca_der: bytes | None,
    collateral_source: CollateralSource,
    now: int,
    allowed_mr_enclaves: Iterable[bytes] = (SEAL_ENCLAVE_MR,),
) -> bytes:
    """The node's sealed root, blocking (a local socket round trip: services call it while they
    start, before any key is needed). Raises :class:`SealError`."""
    coro = request_sealed_key(
        backend,
        sealed_key_name(role, version),
        path=address.path,
        vsock=address.vsock,
        root_ca_der=root_ca_der,
        collateral_source=collateral_source,
        now=now,
        allowed_mr_enclaves=tuple(allowed_mr_enclaves),
    )
    # Its own event loop in a helper thread: the caller may be inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cocoon-seal") as pool:
        try:
            return pool.submit(asyncio.run, coro).result()
        except SealError:
            raise
        except Exception as exc:
            raise SealError(f"the seal service at {address} failed: {exc}") from exc
