"""The worker's GPU claims carry model, count and memory: from NVML where it answers, else nvidia-smi."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cocoon.worker.gpu import GpuInfo, collect_gpu_evidence, evidence_for_key

H200 = GpuInfo(name="NVIDIA H200", uuid="GPU-a", driver_version="570.86.15", memory_mib=143771)


def test_nvml_readings_give_model_count_and_memory() -> None:
    evidence = collect_gpu_evidence(lister=lambda: ((H200, H200), "off"), which=lambda _: None)
    claims = evidence.to_claims()
    assert evidence.kind == "nvidia" and evidence.cc_mode == "off"
    assert claims["count"] == 2 and claims["memory_mib"] == 2 * 143771
    assert claims["gpus"][0] == {
        "name": "NVIDIA H200",
        "uuid": "GPU-a",
        "driver": "570.86.15",
        "memory_mib": 143771,
    }


def test_without_nvml_the_driver_listing_is_used() -> None:
    def smi(argv: Sequence[str]) -> str:
        return "CC status: OFF\n" if "conf-compute" in argv else "NVIDIA L4, GPU-1, 550.1, 23034\n"

    claims = collect_gpu_evidence(smi).to_claims()
    assert claims["count"] == 1 and claims["gpus"][0]["name"] == "NVIDIA L4" and claims["memory_mib"] == 23034


def test_no_gpu_claims_no_hardware(tmp_path: Path) -> None:
    none = collect_gpu_evidence(lister=lambda: None, which=lambda _: None).to_claims()
    assert none["count"] == 0 and none["memory_mib"] == 0 and none["gpus"] == []
    sim = evidence_for_key("sim", b"\x01" * 32, sim_home=tmp_path).to_claims()
    assert sim["count"] == 1 and sim["gpus"][0]["memory_mib"] == 81559
