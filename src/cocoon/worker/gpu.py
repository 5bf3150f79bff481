"""GPU evidence for the worker's attested claims.

On a machine with NVIDIA GPUs the worker asks the driver (through ``nvidia-smi``) for each GPU's
identity and whether confidential-computing mode is on; the summary goes into the RA-TLS claims, so
a proxy sees the GPU state the worker's TEE measured, not one it was told. Without a GPU the
evidence is ``none``. Full NVIDIA attestation reports (nvtrust/NRAS) are a later step: the claims
already carry a field for them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuEvidence", "GpuInfo", "collect_gpu_evidence"]

Runner = Callable[[Sequence[str]], str]
_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class GpuInfo:
    name: str
    uuid: str
    driver_version: str
    memory_mib: int


@dataclass(frozen=True, slots=True)
class GpuEvidence:
    kind: str  # "none" | "nvidia"
    gpus: tuple[GpuInfo, ...] = ()
    cc_mode: str | None = None  # "on" | "off" | "devtools" | None when unknown
    error: str | None = None

    @property
    def confidential(self) -> bool:
        return self.kind == "nvidia" and self.cc_mode == "on"

    def to_claims(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cc_mode": self.cc_mode,
            "gpus": [{"name": g.name, "uuid": g.uuid, "driver": g.driver_version} for g in self.gpus],
        }


def _run(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=_TIMEOUT_S, check=True)
    return done.stdout


def collect_gpu_evidence(
    runner: Runner | None = None, *, which: Callable[[str], str | None] = shutil.which
) -> GpuEvidence:
    """Query the NVIDIA driver; ``none`` when there is no driver, never an exception."""
    if runner is None:
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
    if not gpus:
        return GpuEvidence(kind="none", error="nvidia-smi listed no GPU")
    try:
        cc_text = runner(["nvidia-smi", "conf-compute", "-f"])
    except (OSError, subprocess.SubprocessError):
        return GpuEvidence(kind="nvidia", gpus=tuple(gpus), cc_mode=None)
    return GpuEvidence(kind="nvidia", gpus=tuple(gpus), cc_mode=_parse_cc_mode(cc_text))


def _parse_cc_mode(text: str) -> str | None:
    # e.g. "CC status: ON" (driver 535+) or "CC mode is on"
    lowered = text.lower()
    for mode in ("devtools", "on", "off"):
        if f"status: {mode}" in lowered or f"mode is {mode}" in lowered or f"mode: {mode}" in lowered:
            return mode
    return None
