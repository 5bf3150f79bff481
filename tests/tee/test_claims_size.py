"""Claims hold the evidence of a whole GPU box; an oversized claim fails at its own node's start."""

from __future__ import annotations

import os

import pytest

from cocoon.tee.claims import MAX_CLAIMS_SIZE, Claims
from cocoon.tee.errors import CertificateInvalid
from cocoon.tee.nvgpu.sim import SimGpu


def test_an_eight_gpu_box_with_sealing_keys_fits() -> None:
    reports = [SimGpu(b"gpu-%d" % i).evidence(os.urandom(32)).to_claims() for i in range(8)]
    sealing = [{"suite": "mlkem768-x25519", "public_key": "ab" * 1216, "key_id": "cd" * 16}]
    claims = Claims(
        public_key=b"k" * 32, backend="sim", extra={"gpu": {"evidence": reports}, "e2ee": sealing}
    )
    encoded = claims.encode()
    assert len(encoded) <= MAX_CLAIMS_SIZE
    assert Claims.decode(encoded) == claims


def test_oversized_claims_fail_when_encoded_and_when_decoded() -> None:
    huge = Claims(public_key=b"k" * 32, extra={"blob": "x" * MAX_CLAIMS_SIZE})
    with pytest.raises(CertificateInvalid, match="over the"):
        huge.encode()
    with pytest.raises(CertificateInvalid, match="too large"):
        Claims.decode(b"{" + b" " * MAX_CLAIMS_SIZE + b"}")
