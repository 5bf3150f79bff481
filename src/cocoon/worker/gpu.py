"""GPU evidence for the worker's attested claims.

On a machine with NVIDIA GPUs the worker lists them — model, count and memory, through NVML (the
``nvidia-ml-py`` package) where it answers, else ``nvidia-smi`` — and reads whether
confidential-computing mode is on. Inside a TDX guest the claims are covered by the quote, so they
are what the attested image read from the driver; the proxy derives the worker's hardware class
from them (``proxy.classes.attested_hardware``). In CC mode it also asks each GPU
(through NVML, the ``nvidia-ml-py`` package) for its signed attestation report over a nonce bound to
the worker's attested key (:func:`cocoon.tee.nvgpu.gpu_nonce`) and its certificate chain; the
reports go into the RA-TLS claims, where every verifier checks them against NVIDIA's roots and
RIMs. Without a GPU, NVML or CC mode there is no evidence, the claims say so, and a policy that
requires a confidential GPU refuses the worker. ``gpu = "sim"`` presents the simulated GPU of the
sim platform instead (development and tests).
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cocoon.tee import nvgpu
from cocoon.tee.nvgpu.chain import load_chain

__all__ = [
    "Attester",
    "GpuEvidence",
    "GpuInfo",
    "collect_gpu_evidence",
    "evidence_for_key",
    "nvml_attester",
    "nvml_listing",
    "sim_gpu_evidence",
]

Runner = Callable[[Sequence[str]], str]
Attester = Callable[[int, bytes], tuple[bytes, bytes]]  # (GPU index, nonce) -> (report, PEM chain)
_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class GpuInfo:
    name: str
    uuid: str
    driver_version: str
    memory_mib: int


@dataclass(frozen=True, slots=True)
class GpuEvidence:
    kind: str  # "none" | "nvidia" | "sim"
    gpus: tuple[GpuInfo, ...] = ()
    cc_mode: str | None = None  # "on" | "off" | "devtools" | None when unknown
    error: str | None = None
    reports: tuple[nvgpu.GpuEvidenceItem, ...] = ()  # signed, key-bound attestation reports

    @property
    def confidential(self) -> bool:
        """CC mode on and signed reports to prove it (the verifier decides whether they do)."""
        return self.kind != "none" and self.cc_mode == "on" and bool(self.reports)

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "kind": self.kind,
            "cc_mode": self.cc_mode,
            "gpus": [
                {"name": g.name, "uuid": g.uuid, "driver": g.driver_version, "memory_mib": g.memory_mib}
                for g in self.gpus
            ],
            "count": len(self.gpus),
            "memory_mib": sum(g.memory_mib for g in self.gpus),
        }
        if self.reports:
            claims["evidence"] = [r.to_claims() for r in self.reports]
        return claims

    def summary(self) -> dict[str, Any]:
        """For status pages: the claims without the (large) reports."""
        out = self.to_claims()
        out.pop("evidence", None)
        return out | {"reports": len(self.reports), "confidential": self.confidential, "error": self.error}


def _run(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=_TIMEOUT_S, check=True)
    return done.stdout


def nvml_attester() -> Attester | None:
    """Reports through NVML, or None when ``nvidia-ml-py`` is not installed."""
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError:
        return None

    def attest(index: int, nonce: bytes) -> tuple[bytes, bytes]:
        nvml.nvmlInit()
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            report = nvml.nvmlDeviceGetConfComputeGpuAttestationReport(handle, nonce)
            certs = nvml.nvmlDeviceGetConfComputeGpuCertificate(handle)
            return (
                bytes(report.attestationReport[: report.attestationReportSize]),
                bytes(certs.attestationCertChain[: certs.attestationCertChainSize]),
            )
        finally:
            nvml.nvmlShutdown()

    return attest


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_listing() -> tuple[tuple[GpuInfo, ...], str | None] | None:
    """The GPUs and CC mode as NVML reads them from the driver, or None when NVML does not answer
    (no package, no driver)."""
    try:
        nvml: Any = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:  # NVMLError and ImportError alike: no NVML here
        return None
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024)
            name, uuid = _text(nvml.nvmlDeviceGetName(handle)), _text(nvml.nvmlDeviceGetUUID(handle))
            gpus.append(GpuInfo(name=name, uuid=uuid, driver_version=driver, memory_mib=memory))
        try:
            cc: str | None = "on" if nvml.nvmlSystemGetConfComputeState().ccFeature else "off"
        except Exception:  # drivers before 535 know no CC state
            cc = None
        return tuple(gpus), cc
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _reports(
    count: int, nonce: bytes, attest: Attester
) -> tuple[tuple[nvgpu.GpuEvidenceItem, ...], str | None]:
    items = []
    try:
        for index in range(min(count, nvgpu.MAX_GPU_EVIDENCE)):
            report, pem = attest(index, nonce)
            chain = load_chain(pem)
            if len(chain) > 1 and chain[-1].issuer == chain[-1].subject:
                chain = chain[:-1]  # the GPU's copy of the root: verifiers pin their own
            items.append(nvgpu.GpuEvidenceItem(report=report, certs=nvgpu.chain_der(chain)))
    except Exception as exc:  # NVML errors are plain exceptions; no report means no evidence
        return (), f"GPU attestation failed: {exc}"
    more = f"only the first {nvgpu.MAX_GPU_EVIDENCE} GPUs carry evidence" if count > len(items) else None
    return tuple(items), more


def collect_gpu_evidence(
    runner: Runner | None = None,
    *,
    nonce: bytes | None = None,
    which: Callable[[str], str | None] = shutil.which,
    attester: Attester | None = None,
    lister: Callable[[], tuple[tuple[GpuInfo, ...], str | None] | None] | None = None,
) -> GpuEvidence:
    """Query the NVIDIA driver (NVML, else ``nvidia-smi``), and in CC mode the GPUs' reports for
    ``nonce``; ``none`` when there is no driver, never an exception. ``lister``: the NVML reading
    (tests); it is asked only when no ``runner`` is given."""
    if runner is None:
        listed = (lister or nvml_listing)()
        if listed is not None and listed[0]:
            return _with_reports(listed[0], listed[1], nonce, attester)
        if which("nvidia-smi") is None:
            return GpuEvidence(kind="none")
        runner = _run
    try:
        listing = runner(
            [
                "nvidia-smi",
                "--query-gpu=name,uuid,driver_version,memory.total",
                "--format=csv,noheader,nounits",
            ]
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return GpuEvidence(kind="none", error=f"nvidia-smi failed: {exc}")
    gpus = tuple(_parse_listing(listing))
    if not gpus:
        return GpuEvidence(kind="none", error="nvidia-smi listed no GPU")
    try:
        cc_mode = _parse_cc_mode(runner(["nvidia-smi", "conf-compute", "-f"]))
    except (OSError, subprocess.SubprocessError):
        cc_mode = None
    return _with_reports(gpus, cc_mode, nonce, attester)


def _with_reports(
    gpus: tuple[GpuInfo, ...], cc_mode: str | None, nonce: bytes | None, attester: Attester | None
) -> GpuEvidence:
    if cc_mode != "on" or nonce is None:
        return GpuEvidence(kind="nvidia", gpus=gpus, cc_mode=cc_mode)
    attest = attester or nvml_attester()
    if attest is None:
        return GpuEvidence(kind="nvidia", gpus=gpus, cc_mode=cc_mode, error="nvidia-ml-py is not installed")
    reports, error = _reports(len(gpus), nonce, attest)
    return GpuEvidence(kind="nvidia", gpus=gpus, cc_mode=cc_mode, error=error, reports=reports)


def sim_gpu_evidence(gpu: nvgpu.SimGpu, nonce: bytes) -> GpuEvidence:
    """The simulated GPU's evidence for ``nonce`` (what a CC-mode H100 would give)."""
    info = GpuInfo(
        name="Simulated H100",
        uuid=f"GPU-sim-{gpu.fwid.hex()[:12]}",
        driver_version="550.90.07",
        memory_mib=81559,
    )
    return GpuEvidence(kind="sim", gpus=(info,), cc_mode="on", reports=(gpu.evidence(nonce),))


def _parse_listing(listing: str) -> list[GpuInfo]:
    gpus = []
    for line in listing.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        name, uuid, driver, memory = parts
        gpus.append(
            GpuInfo(
                name=name, uuid=uuid, driver_version=driver, memory_mib=int(memory) if memory.isdigit() else 0
            )
        )
    return gpus


def _parse_cc_mode(text: str) -> str | None:
    # e.g. "CC status: ON" (driver 535+) or "CC mode is on"
    lowered = text.lower()
    for mode in ("devtools", "on", "off"):
        if f"status: {mode}" in lowered or f"mode is {mode}" in lowered or f"mode: {mode}" in lowered:
            return mode
    return None


def evidence_for_key(mode: str, public_key: bytes, *, sim_home: Path) -> GpuEvidence:
    """The worker's GPU evidence, its reports answering the nonce bound to ``public_key``:
    ``auto`` asks the real GPUs, ``sim`` the sim platform's simulated one, ``none`` claims none."""
    nonce = nvgpu.gpu_nonce(public_key)
    if mode == "none":
        return GpuEvidence(kind="none")
    if mode == "sim":
        return sim_gpu_evidence(nvgpu.sim_gpu(sim_home), nonce)
    return collect_gpu_evidence(nonce=nonce)
