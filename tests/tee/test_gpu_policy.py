"""GPU evidence in RA-TLS claims, judged by the attestation policy: bound to the key, forged or
replayed evidence refused, and a policy that requires a verified confidential GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cocoon.tee import (
    AttestationPolicy,
    KeyBindingError,
    NodeIdentity,
    PolicyRefused,
    QuoteInvalid,
    SimPlatform,
    nvgpu,
)
from cocoon.tee.nvgpu.chain import load_chain
from cocoon.tee.nvgpu.sim import SimGpu

GPU_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
GPU = SimGpu(b"test-gpu")


def _key() -> tuple[ed25519.Ed25519PrivateKey, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _worker_cert(
    platform: SimPlatform, now: int, key: ed25519.Ed25519PrivateKey, gpu: dict[str, Any] | None
) -> bytes:
    extra = {"gpu": gpu} if gpu is not None else {}
    backend = platform.backend({"image": "cocoon-worker"})
    return NodeIdentity.create(backend, now=now, extra_claims=extra, private_key=key).cert_der


def _claims(*items: nvgpu.GpuEvidenceItem) -> dict[str, Any]:
    return {"kind": "nvidia", "cc_mode": "on", "evidence": [i.to_claims() for i in items]}


def test_key_bound_evidence_of_a_genuine_gpu_is_accepted(platform: SimPlatform, now: int) -> None:
    key, public = _key()
    cert = _worker_cert(platform, now, key, _claims(GPU.evidence(nvgpu.gpu_nonce(public))))
    policy = AttestationPolicy.sim(platform).with_gpu_policy(GPU.policy(require_cc=True))
    att = policy.verify_certificate(cert, now=now)
    assert att.confidential_gpu and att.gpus[0].driver_version == "550.90.07"
    assert att.to_json()["confidential_gpu"] is True


def test_evidence_made_for_another_key_is_a_replay(platform: SimPlatform, now: int) -> None:
    key, _ = _key()
    _, other = _key()
    cert = _worker_cert(platform, now, key, _claims(GPU.evidence(nvgpu.gpu_nonce(other))))
    policy = AttestationPolicy.sim(platform).with_gpu_policy(GPU.policy())
    with pytest.raises(KeyBindingError, match="another nonce"):
        policy.verify_certificate(cert, now=now)


def test_nvidias_sample_replayed_into_a_worker_certificate_is_refused(
    platform: SimPlatform, now: int
) -> None:
    """Genuine NVIDIA evidence (the shipped sample), but not made for this worker's key."""
    report = bytes.fromhex((GPU_FIXTURES / "hopperAttestationReport.txt").read_text().strip())
    certs = nvgpu.chain_der(load_chain((GPU_FIXTURES / "hopperCertChain.txt").read_bytes()))
    key, _ = _key()
    cert = _worker_cert(platform, now, key, _claims(nvgpu.GpuEvidenceItem(report=report, certs=certs)))
    for policy in (
        AttestationPolicy.sim(platform),
        AttestationPolicy.any(),
    ):  # default GPU policy: NVIDIA's roots
        with pytest.raises(KeyBindingError):
            policy.verify_certificate(cert, now=now)


def test_forged_and_tampered_evidence_is_refused(platform: SimPlatform, now: int) -> None:
    key, public = _key()
    nonce = nvgpu.gpu_nonce(public)
    genuine = GPU.evidence(nonce)
    forged = bytearray(genuine.report)
    forged[100] ^= 0xFF
    policy = AttestationPolicy.sim(platform).with_gpu_policy(GPU.policy())
    cases = [
        nvgpu.GpuEvidenceItem(report=bytes(forged), certs=genuine.certs),  # bytes changed after signing
        GPU.evidence(nonce, measurements={3: bytes(48)}),  # a GPU running other firmware
        SimGpu(b"another vendor").evidence(nonce),  # signed under a root nobody pinned
    ]
    for item in cases:
        cert = _worker_cert(platform, now, key, _claims(item))
        with pytest.raises(QuoteInvalid):
            policy.verify_certificate(cert, now=now)
    with pytest.raises(QuoteInvalid):  # the simulated GPU under NVIDIA's real roots
        AttestationPolicy.sim(platform).verify_certificate(
            _worker_cert(platform, now, key, _claims(genuine)), now=now
        )


def test_a_worker_without_gpu_evidence(platform: SimPlatform, now: int) -> None:
    key, _ = _key()
    gpus: list[dict[str, Any] | None] = [None, {"kind": "none", "cc_mode": None, "gpus": []}]
    for gpu in gpus:
        cert = _worker_cert(platform, now, key, gpu)
        att = AttestationPolicy.sim(platform).verify_certificate(cert, now=now)
        assert att.gpus == () and not att.confidential_gpu
        requiring = AttestationPolicy.sim(platform).with_gpu_policy(GPU.policy(require_cc=True))
        with pytest.raises(PolicyRefused, match="confidential-computing"):
            requiring.verify_certificate(cert, now=now)


def test_signature_checked_evidence_without_rims_does_not_satisfy_a_cc_requirement(
    platform: SimPlatform, now: int
) -> None:
    key, public = _key()
    cert = _worker_cert(platform, now, key, _claims(GPU.evidence(nvgpu.gpu_nonce(public))))
    att = (
        AttestationPolicy.sim(platform)
        .with_gpu_policy(GPU.policy(with_rims=False))
        .verify_certificate(cert, now=now)
    )
    assert len(att.gpus) == 1 and not att.confidential_gpu
    with pytest.raises(ValueError, match="RIM source"):
        nvgpu.GpuPolicy(require_cc=True)


def test_policies_with_other_gpu_rules_do_not_share_verdicts(platform: SimPlatform, now: int) -> None:
    key, public = _key()
    cert = _worker_cert(platform, now, key, _claims(GPU.evidence(nvgpu.gpu_nonce(public))))
    lenient = AttestationPolicy.sim(platform).with_gpu_policy(GPU.policy())
    assert lenient.verify_certificate(cert, now=now).confidential_gpu
    strict = lenient.with_gpu_policy(nvgpu.GpuPolicy())  # same verdict cache, NVIDIA's roots
    assert strict.cache is lenient.cache
    with pytest.raises(QuoteInvalid):  # verified again under its own roots, refused
        strict.verify_certificate(cert, now=now)
