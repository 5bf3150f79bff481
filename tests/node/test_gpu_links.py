"""GPU evidence on real (memory) links: a proxy that requires a verified confidential GPU admits a
worker whose simulated GPU answered its key's nonce, and refuses workers without evidence or with
forged or replayed evidence, at the handshake."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cocoon import net, tee, wire
from cocoon.node import NodeTrust, TeeSettings, make_policy
from cocoon.tee.nvgpu.chain import load_chain
from cocoon.worker.gpu import evidence_for_key

GPU_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _worker(home: Path, gpu_claims: dict[str, Any] | None, key: Ed25519PrivateKey) -> NodeTrust:
    extra = {"gpu": gpu_claims} if gpu_claims is not None else {}
    return NodeTrust(
        TeeSettings(sim_home=home), home=home / "worker", role="worker", extra_claims=extra, private_key=key
    )


async def _dial(hub: net.MemoryHub, port: int, worker: NodeTrust) -> net.NodeConnection:
    return await hub.connect(
        "proxy.test",
        port,
        certificate=worker.identity.cert_der,
        verifier=worker.verify_peer,
        role=wire.Role.WORKER,
        info={},
        handler=net.NullHandler(),
    )


async def test_a_cc_requiring_proxy_admits_only_workers_with_key_bound_gpu_evidence(tmp_path: Path) -> None:
    hub = net.MemoryHub()
    proxy = NodeTrust(
        TeeSettings(sim_home=tmp_path, require_cc_gpu=True), home=tmp_path / "proxy", role="proxy", links=hub
    )
    listener = await proxy.serve("proxy.test", 0, role=wire.Role.PROXY, info={}, handler=net.NullHandler())
    try:
        key = Ed25519PrivateKey.generate()
        genuine = evidence_for_key("sim", _public(key), sim_home=tmp_path).to_claims()
        conn = await _dial(hub, listener.port, _worker(tmp_path, genuine, key))
        (inbound,) = listener.connections
        assert isinstance(inbound.peer.attestation, tee.PeerAttestation)
        assert inbound.peer.attestation.confidential_gpu
        await conn.aclose("done")

        other_key = Ed25519PrivateKey.generate()
        replayed = evidence_for_key("sim", _public(other_key), sim_home=tmp_path).to_claims()
        nvidia_sample = {
            "kind": "nvidia",
            "cc_mode": "on",
            "evidence": [
                tee.nvgpu.GpuEvidenceItem(
                    report=bytes.fromhex((GPU_FIXTURES / "hopperAttestationReport.txt").read_text().strip()),
                    certs=tee.nvgpu.chain_der(
                        load_chain((GPU_FIXTURES / "hopperCertChain.txt").read_bytes())
                    ),
                ).to_claims()
            ],
        }
        forged = dict(
            genuine,
            evidence=[
                dict(genuine["evidence"][0], report=genuine["evidence"][0]["report"][:-8] + "AAAAAAA=")
            ],
        )
        host_word_only = {
            "kind": "nvidia",
            "cc_mode": "on",
            "gpus": [{"name": "H100", "uuid": "GPU-1", "driver": "x"}],
        }
        for claims in (replayed, nvidia_sample, forged, host_word_only, None):
            with pytest.raises(net.HandshakeRefused):
                await _dial(hub, listener.port, _worker(tmp_path, claims, key))
    finally:
        await listener.aclose()


async def test_a_default_proxy_still_refuses_forged_evidence_but_admits_none(tmp_path: Path) -> None:
    hub = net.MemoryHub()
    proxy = NodeTrust(TeeSettings(sim_home=tmp_path), home=tmp_path / "proxy", role="proxy", links=hub)
    listener = await proxy.serve("proxy.test", 0, role=wire.Role.PROXY, info={}, handler=net.NullHandler())
    try:
        key = Ed25519PrivateKey.generate()
        conn = await _dial(
            hub, listener.port, _worker(tmp_path, {"kind": "none", "cc_mode": None, "gpus": []}, key)
        )
        await conn.aclose("done")
        replayed = evidence_for_key(
            "sim", _public(Ed25519PrivateKey.generate()), sim_home=tmp_path
        ).to_claims()
        with pytest.raises(net.HandshakeRefused):
            await _dial(hub, listener.port, _worker(tmp_path, replayed, key))
    finally:
        await listener.aclose()


def test_only_a_proxy_judging_workers_requires_a_cc_gpu(tmp_path: Path) -> None:
    settings = TeeSettings(sim_home=tmp_path, require_cc_gpu=True)
    proxy = NodeTrust(TeeSettings(sim_home=tmp_path), home=tmp_path / "proxy", role="proxy")
    for role in ("client", "worker"):  # they judge proxies, which have no GPU
        judge = NodeTrust(settings, home=tmp_path / role, role=role)
        assert judge.verify_peer(proxy.identity.cert_der).gpus == ()
    requiring = NodeTrust(settings, home=tmp_path / "proxy2", role="proxy")
    with pytest.raises(tee.PolicyRefused, match="confidential-computing"):
        requiring.verify_peer(proxy.identity.cert_der)
    # the proxy's client port policy (make_policy without the requirement) admits GPU-less clients
    client_port = make_policy("sim", settings, sim_home=tmp_path, home=tmp_path / "proxy2", allowed=None)
    client = NodeTrust(TeeSettings(sim_home=tmp_path), home=tmp_path / "c", role="client")
    assert client_port.verify_certificate(client.identity.cert_der, now=int(time.time())).gpus == ()
