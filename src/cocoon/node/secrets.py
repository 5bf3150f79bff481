"""A node's secrets: from the seal service when its TEE seals them, fresh or on disk otherwise.

With ``tee.seal_address`` set (and always with the ``tdx`` backend, whose default is the host's
seal server), :func:`open_node_secrets` asks the seal service for the node's sealed root
(:mod:`cocoon.tee.sealing`), derives the RA-TLS identity key (which also signs receipts, payment
statements and evidence) from it, and seals the node's home: every key file the node would keep
there (wallet keys, chain signing keys) is derived instead (:func:`cocoon.core.keyfile.seal_home`).
The ``sim`` backend takes the same path against ``cocoon tee seal-server``. Without sealing the
identity key is made fresh at each start and key files stay files, as before.

A sealed node also gets ``seal_seed``, the root of its end-to-end sealing keys
(:mod:`cocoon.node.sealkeys`), so a restarted worker re-derives the keys its certificates publish.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon import tee
from cocoon.core.keyfile import seal_home
from cocoon.errors import ConfigError
from cocoon.tee.seal import SEAL_ENCLAVE_MR
from cocoon.tee.sealing import DEFAULT_SEAL_ADDRESS, SealAddress, fetch_sealed_root, node_key

__all__ = ["NodeSecrets", "SealSettings", "open_node_secrets", "seal_address"]


class SealSettings(Protocol):
    """The fields of :class:`~cocoon.node.trust.TeeSettings` sealing reads."""

    @property
    def backend(self) -> str: ...
    @property
    def seal_address(self) -> str | None: ...
    @property
    def seal_mr_enclaves(self) -> Sequence[str]: ...
    @property
    def key_version(self) -> int: ...
    @property
    def sim_home(self) -> Path | None: ...
    @property
    def pccs_url(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class NodeSecrets:
    identity_key: Ed25519PrivateKey
    sealed: bool  # True: derived from the seal service's root, nothing secret on disk
    seal_seed: bytes | None = None  # sealed nodes: the root of their e2ee sealing keys


def seal_address(settings: SealSettings) -> SealAddress | None:
    """Where this node's seal service is, or None when its secrets are not sealed."""
    text = settings.seal_address or (DEFAULT_SEAL_ADDRESS if settings.backend == "tdx" else None)
    if text is None or text == "off":
        return None
    try:
        return SealAddress.parse(text)
    except ValueError as exc:
        raise ConfigError(f"tee.seal_address: {exc}") from exc


def open_node_secrets(
    settings: SealSettings, *, home: Path, role: str, measurements: Mapping[str, str] | None = None
) -> NodeSecrets:
    """The node's identity key; with sealing, also seals ``home`` (see the module notes)."""
    address = seal_address(settings)
    if address is None:
        return NodeSecrets(identity_key=Ed25519PrivateKey.generate(), sealed=False)
    sim_home = settings.sim_home or home
    backend = tee.make_backend(settings.backend, home=sim_home, measurements=measurements)
    if settings.backend == "sim":
        platform = tee.sim_platform(sim_home)
        root_ca: bytes | None = platform.root_ca_der
        source: tee.CollateralSource = platform
        enclaves = [SEAL_ENCLAVE_MR]
    elif settings.backend == "tdx":
        if not settings.pccs_url or not settings.seal_mr_enclaves:
            raise ConfigError(
                "sealing on tdx needs tee.pccs_url and tee.seal_mr_enclaves (the seal server's MRENCLAVE)"
            )
        root_ca, source = None, tee.PccsCollateral(settings.pccs_url, cache_dir=home / "collateral-cache")
        enclaves = [bytes.fromhex(h) for h in settings.seal_mr_enclaves]
    else:
        raise ConfigError("tee.seal_address needs a TEE backend (sim or tdx) to report to the seal service")
    root = fetch_sealed_root(
        backend,  # type: ignore[arg-type]  # sim and tdx backends make TD reports
        address=address,
        role=role,
        version=settings.key_version,
        root_ca_der=root_ca,
        collateral_source=source,
        now=int(time.time()),
        allowed_mr_enclaves=enclaves,
    )
    seal_home(home, root)
    identity = Ed25519PrivateKey.from_private_bytes(node_key(root, "tls-identity"))
    return NodeSecrets(identity_key=identity, sealed=True, seal_seed=node_key(root, "e2ee-seal"))
