"""NVIDIA GPU attestation: reports, their certificate chains, RIM golden values, verification.

Our own verifier, written with the project's ``cryptography`` (and lxml for the RIMs' XML
signatures) after the layout NVIDIA's ``nv-local-gpu-verifier`` reads, and checked against the
sample report, chain and RIMs NVIDIA ships with it (``tests/fixtures/gpu``).
"""

from cocoon.tee.nvgpu.evidence import (
    MAX_GPU_EVIDENCE,
    GpuEvidenceItem,
    GpuPolicy,
    GpuVerdict,
    RimSource,
    chain_der,
    compare_measurements,
    evidence_from_claims,
    gpu_nonce,
    rim_ids,
    verify_gpu_report,
)
from cocoon.tee.nvgpu.ocsp import NVIDIA_OCSP_SERVICE, OcspCache, RevocationSource
from cocoon.tee.nvgpu.report import GpuReport, parse_gpu_report
from cocoon.tee.nvgpu.rim import GoldenMeasurement, Rim, verify_rim
from cocoon.tee.nvgpu.rimstore import NVIDIA_RIM_SERVICE, RimCache, RimDirectory
from cocoon.tee.nvgpu.sim import SimGpu, sim_gpu

__all__ = [
    "MAX_GPU_EVIDENCE",
    "NVIDIA_OCSP_SERVICE",
    "NVIDIA_RIM_SERVICE",
    "GoldenMeasurement",
    "GpuEvidenceItem",
    "GpuPolicy",
    "GpuReport",
    "GpuVerdict",
    "OcspCache",
    "RevocationSource",
    "Rim",
    "RimCache",
    "RimDirectory",
    "RimSource",
    "SimGpu",
    "chain_der",
    "compare_measurements",
    "evidence_from_claims",
    "gpu_nonce",
    "parse_gpu_report",
    "rim_ids",
    "sim_gpu",
    "verify_gpu_report",
    "verify_rim",
]
