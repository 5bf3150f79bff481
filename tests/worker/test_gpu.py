"""The worker's GPU evidence: signed reports bound to its key, collected without a real GPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from cocoon.tee import nvgpu
from cocoon.tee.nvgpu.chain import load_chain
from cocoon.worker.gpu import Attester, collect_gpu_evidence, evidence_for_key

GPU = nvgpu.SimGpu(b"worker-test-gpu")
KEY = b"\x05" * 32


def _runner(cc: str) -> Callable[[Sequence[str]], str]:
    def runner(argv: Sequence[str]) -> str:
        if "conf-compute" in argv:
            return f"CC status: {cc}\n"
        return (
            "NVIDIA H100 80GB HBM3, GPU-1, 580.95.05, 81559\nNVIDIA H100 80GB HBM3, GPU-2, 580.95.05, 81559\n"
        )

    return runner


def _attester(calls: list[tuple[int, bytes]]) -> Attester:
    def attest(index: int, nonce: bytes) -> tuple[bytes, bytes]:
        calls.append((index, nonce))
        item = GPU.evidence(nonce)
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in load_chain(list(item.certs)))
        return item.report, pem

    return attest


def test_cc_mode_reports_answer_the_key_bound_nonce_and_verify() -> None:
    calls: list[tuple[int, bytes]] = []
    nonce = nvgpu.gpu_nonce(KEY)
    evidence = collect_gpu_evidence(_runner("ON"), nonce=nonce, attester=_attester(calls))
    assert calls == [(0, nonce), (1, nonce)] and evidence.confidential and evidence.error is None
    assert (
        len(evidence.reports[0].certs) == 2
    )  # leaf and ICA: the GPU's copy of the root is dropped; verifiers pin theirs
    verdicts = GPU.policy(require_cc=True).verify_claims(
        evidence.to_claims(), public_key=KEY, now=1_780_000_000
    )
    assert len(verdicts) == 2 and all(v.measurements_checked for v in verdicts)
    assert "evidence" not in evidence.summary() and evidence.summary()["reports"] == 2


def test_no_reports_outside_cc_mode_or_without_nvml() -> None:
    calls: list[tuple[int, bytes]] = []
    off = collect_gpu_evidence(_runner("OFF"), nonce=nvgpu.gpu_nonce(KEY), attester=_attester(calls))
    assert off.cc_mode == "off" and off.reports == () and calls == [] and "evidence" not in off.to_claims()


def test_a_failing_gpu_means_no_evidence_and_an_error() -> None:
    def broken(index: int, nonce: bytes) -> tuple[bytes, bytes]:
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    evidence = collect_gpu_evidence(_runner("ON"), nonce=nvgpu.gpu_nonce(KEY), attester=broken)
    assert evidence.reports == () and not evidence.confidential and "NOT_SUPPORTED" in (evidence.error or "")


def test_modes(tmp_path: Path) -> None:
    assert evidence_for_key("none", KEY, sim_home=tmp_path).kind == "none"
    sim = evidence_for_key("sim", KEY, sim_home=tmp_path)
    assert sim.kind == "sim" and sim.confidential
    verdicts = (
        nvgpu.sim_gpu(tmp_path)
        .policy(require_cc=True)
        .verify_claims(sim.to_claims(), public_key=KEY, now=1_780_000_000)
    )
    assert verdicts[0].measurements_checked
