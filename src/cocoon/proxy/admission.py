"""Who may join the proxy: a worker's announce checked against what it proved, as a registry record.

Pure: the caller passes the announce (``PeerInfo.info``), the attested hashes, the verified
attestation (its GPU claims and reports give the worker's hardware) and the time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cocoon.chain import AddressError, normalize_address
from cocoon.node.refusal import refuse_for_good
from cocoon.oai.capabilities import parse_capabilities
from cocoon.proxy.classes import Hardware, HardwareContradiction, attested_hardware, declared_contradiction
from cocoon.proxy.selection import WorkerRecord

__all__ = ["WorkerAnnounce", "parse_worker_announce", "payee_key"]

_INSTANCE = re.compile(r"[A-Za-z0-9._-]{1,64}")


@functools.lru_cache(maxsize=4096)  # a few links' owners, looked up for every request and bill
def payee_key(owner: str) -> str:
    """The one spelling of an account (the raw form of a TON address), as the billing store keys it."""
    try:
        return normalize_address(owner)
    except AddressError:
        return owner


@dataclass(frozen=True, slots=True)
class WorkerAnnounce:
    record: WorkerRecord
    owner: str  # the payee (a TON address on a chain), "" when anonymous


def parse_worker_announce(
    info: Mapping[str, Any],
    *,
    attested_image: bytes | None,
    attested_model: bytes | None,
    allowed_model_hashes: frozenset[bytes] | None,
    connection_id: int,
    now: float,
    model_names: Mapping[bytes, str] | None = None,
    attestation: object = None,
) -> WorkerAnnounce:
    """The worker's record, or :class:`~cocoon.net.HandshakeRefused` for a bad or disallowed announce
    (each a refusal for good: the same worker announcing again gets the same answer).

    ``model_names``: the root contract's name for each allowed model hash; allowed weights announced
    under another name (to be listed, served and billed as a bigger model) are refused.

    ``attestation``: the verified peer (:class:`~cocoon.tee.PeerAttestation`); its GPU claims and
    reports give the worker's hardware class, and a declared ``gpu_class`` that contradicts them is
    refused.
    """
    try:
        model = str(info["model"])
        coefficient = int(info["coefficient"])
        max_active = int(info["max_active_requests"])
        proxy_count = max(1, int(info.get("proxy_count", 1)))
        model_hash = bytes.fromhex(str(info.get("model_hash", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise refuse_for_good(f"bad worker announce: {exc}") from exc
    if not model or not 0 <= coefficient < 1_000_000_000 or max_active < 1:
        raise refuse_for_good("worker announce out of range")
    if attested_model is not None and attested_model != model_hash:
        raise refuse_for_good("announced model hash differs from the attested one")
    if allowed_model_hashes is not None and model_hash not in allowed_model_hashes:
        raise refuse_for_good("model hash not allowed by the root contract")
    bound = (model_names or {}).get(model_hash)
    if bound is not None and bound != model:
        raise refuse_for_good(f"the root contract allows this model hash only as {bound!r}, not {model!r}")
    hardware = _hardware(attestation, str(info.get("gpu_class", "unknown")))
    owner = payee_key(str(info.get("owner_address", "")))
    instance = str(info.get("instance", "0"))
    if not _INSTANCE.fullmatch(instance):
        raise refuse_for_good("instance must be 1-64 letters, digits, '.', '_' or '-'")
    # A stable id (not the connection's): a failing worker that reconnects keeps its reputation, and
    # each GPU of one owner (its own home, its own instance id) is a worker of its own.
    worker_id = f"{owner or 'anonymous'}/{model}/{instance}"
    if not owner:
        worker_id += f"/{connection_id}"
    try:
        record = WorkerRecord(
            worker_id=worker_id,
            model=model,
            coefficient=coefficient,
            # Capacity is shared between the proxies a worker serves, as in the reference.
            max_active=-(-max_active // proxy_count),
            gpu_class=str(info.get("gpu_class", "unknown")),
            region=str(info.get("region", "unknown")),
            image_hash=(attested_image or b"").hex(),
            model_hash=model_hash.hex(),
            attested_at=now,
            connected_at=now,
            capabilities=parse_capabilities(info.get("capabilities")),
            hardware=hardware.hardware_class,
            gpu_model=hardware.gpu_model,
            gpu_count=hardware.gpu_count,
            gpu_memory_mib=hardware.gpu_memory_mib,
            confidential_gpu=hardware.confidential_gpu,
        )
    except ValueError as exc:
        raise refuse_for_good(f"bad worker announce: {exc}") from exc
    return WorkerAnnounce(record=record, owner=owner)


def _hardware(attestation: object, declared: str) -> Hardware:
    """The worker's attested hardware; refused for good when its claims or its declaration contradict
    the evidence (the same certificate would be refused again)."""
    try:
        hardware = attested_hardware(attestation)
    except HardwareContradiction as exc:
        raise refuse_for_good(f"GPU claims contradict the GPU evidence: {exc}") from exc
    why = declared_contradiction(declared, hardware)
    if why is not None:
        raise refuse_for_good(why)
    return hardware
