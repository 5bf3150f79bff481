"""OCSP revocation of GPU and RIM certificates: revoked intermediates and RIM signers refuse the
evidence, answers are cached until their next update, a forged answer or no answer refuses too."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoon.tee import CollateralUnavailable, QuoteInvalid, nvgpu
from cocoon.tee.nvgpu.ocsp import OcspCache
from cocoon.tee.nvgpu.sim import SimGpu

KEY = b"\x09" * 32
NOW = 1_780_000_000


def _verify(gpu: SimGpu, revocation: OcspCache) -> nvgpu.GpuVerdict:
    return nvgpu.verify_gpu_report(
        gpu.evidence(nvgpu.gpu_nonce(KEY)),
        nonce=nvgpu.gpu_nonce(KEY),
        now=NOW,
        rims=gpu,
        device_root=gpu.device_root,
        rim_root=gpu.rim_root,
        revocation=revocation,
    )


def test_good_answers_pass_and_are_cached(tmp_path: Path) -> None:
    gpu = SimGpu(b"ocsp-good")
    cache = OcspCache(tmp_path / "ocsp", post=gpu.ocsp_answer)
    assert _verify(gpu, cache).measurements_checked
    assert cache.fetches == 2  # the ICA and the RIM signer (the attestation key's own is not listed)
    _verify(gpu, cache)
    assert cache.fetches == 2  # both answers reused until their next update
    offline = OcspCache(tmp_path / "ocsp", post=lambda url, body: b"")  # a restart while the service is down
    _verify(gpu, offline)
    assert offline.fetches == 0


@pytest.mark.parametrize("which", ["ica", "rim_signer"])
def test_a_revoked_certificate_refuses_the_evidence(tmp_path: Path, which: str) -> None:
    gpu = SimGpu(b"ocsp-revoked-" + which.encode())
    gpu.revoked.add(getattr(gpu, which).serial_number)
    with pytest.raises(QuoteInvalid, match=r"revoked \(key_compromise\)"):
        _verify(gpu, OcspCache(post=gpu.ocsp_answer))


def test_no_answer_or_a_forged_one_refuses(tmp_path: Path) -> None:
    gpu = SimGpu(b"ocsp-forged")
    with pytest.raises(CollateralUnavailable, match="unreachable"):
        _verify(gpu, OcspCache(post=lambda url, body: (_ for _ in ()).throw(OSError("down"))))
    with pytest.raises(CollateralUnavailable, match="not DER OCSP"):
        _verify(gpu, OcspCache(post=lambda url, body: b"<html>"))
    other = SimGpu(b"another responder")  # a well-formed "good" answer signed under another root
    with pytest.raises(QuoteInvalid, match="responder certificate does not chain"):
        _verify(gpu, OcspCache(post=other.ocsp_answer))


def test_policy_carries_revocation_to_worker_claims() -> None:
    gpu = SimGpu(b"ocsp-policy")
    gpu.revoked.add(gpu.ica.serial_number)
    claims = {"evidence": [gpu.evidence(nvgpu.gpu_nonce(KEY)).to_claims()]}
    with pytest.raises(QuoteInvalid, match="revoked"):
        gpu.policy().verify_claims(claims, public_key=KEY, now=NOW)
