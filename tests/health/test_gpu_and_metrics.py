"""The owner's GPU readings (NVML, faked here) and the worker's Prometheus metrics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cocoon.worker.gpu_telemetry import GpuTelemetry, read_gpu_telemetry
from cocoon.worker.metrics import build_worker_registry


class FakeNvml:
    """The few NVML calls the reader makes, for two GPUs; the second cannot report power."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, *, init_fails: bool = False) -> None:
        self.init_fails = init_fails
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.95.05"

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H200"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-0000000{h}-aaaa-bbbb-cccc-dddddddddddd"

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=40 + h * 20, memory=5)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=(h + 1) * 2**30, total=141 * 2**30, free=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 50 + h

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        if h == 1:
            raise self.NVMLError("Not Supported")
        return 312_500  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000


def test_nvml_readings_per_gpu_with_unsupported_fields_left_empty() -> None:
    nvml = FakeNvml()
    telemetry = read_gpu_telemetry(nvml)
    assert telemetry.error is None and telemetry.driver_version == "580.95.05"
    first, second = telemetry.gpus
    assert first.name == "NVIDIA H200" and first.uuid.startswith("GPU-00000000")
    assert (first.utilization_pct, first.temperature_c, first.power_w, first.power_limit_w) == (
        40.0,
        50.0,
        312.5,
        700.0,
    )
    assert first.memory_used_bytes == 2**30 and first.memory_total_bytes == 141 * 2**30
    assert second.power_w is None and second.utilization_pct == 60.0
    assert nvml.shutdowns == 1
    assert telemetry.to_json()["gpus"][1]["uuid"] == second.uuid


def test_no_driver_means_no_readings_and_a_reason() -> None:
    telemetry = read_gpu_telemetry(FakeNvml(init_fails=True))
    assert telemetry.gpus == () and telemetry.error and "no NVIDIA driver" in telemetry.error


def test_this_machine_answers_without_raising() -> None:
    telemetry = read_gpu_telemetry()
    assert telemetry.gpus or telemetry.error  # real GPUs, or a reason why not


def _scrape(statistics: dict[str, Any], telemetry: GpuTelemetry | None) -> dict[str, Any]:
    gpus = None if telemetry is None else (lambda: telemetry)
    text = generate_latest(build_worker_registry(lambda: statistics, gpus)).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


STATS = {
    "uptime_s": 12.5,
    "served": 7,
    "failed": 1,
    "refused_busy": 2,
    "cancelled": 0,
    "completion_tokens": 700,
    "active_requests": 1,
    "max_active_requests": 8,
    "tokens_per_s": 55.0,
    "proxies": [{"address": "p:1", "connected": True}, {"address": "p:2", "connected": False}],
    "payments": {"p:1": {"earned_nano": 5_000, "paid_nano": 1_000}},
}


def test_worker_metrics_cover_requests_tokens_links_earnings_gpus_and_process() -> None:
    samples = _scrape(STATS, read_gpu_telemetry(FakeNvml()))
    assert samples[("cocoon_worker_requests_total", (("outcome", "ok"),))] == 7
    assert samples[("cocoon_worker_requests_total", (("outcome", "busy"),))] == 2
    assert samples[("cocoon_worker_completion_tokens_total", ())] == 700
    assert samples[("cocoon_worker_proxy_connected", (("proxy", "p:2"),))] == 0
    assert samples[("cocoon_worker_earned_nanoton", (("proxy", "p:1"),))] == 5_000
    uuid0 = "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd"
    assert samples[("cocoon_worker_gpu_utilization_ratio", (("gpu", "0"), ("uuid", uuid0)))] == 0.4
    assert samples[("cocoon_worker_gpu_power_watts", (("gpu", "0"), ("uuid", uuid0)))] == 312.5
    assert not any(
        name == "cocoon_worker_gpu_power_watts" and ("gpu", "1") in labels for name, labels in samples
    )
    assert samples[("cocoon_uptime_seconds", ())] == 12.5
    assert ("process_resident_memory_bytes", ()) in samples and ("process_open_fds", ()) in samples
    assert any(name == "cocoon_build_info" and ("role", "worker") in labels for name, labels in samples)


def test_worker_metrics_without_gpus_have_no_gpu_samples() -> None:
    samples = _scrape(STATS, None)
    assert not any(name.startswith("cocoon_worker_gpu") for name, _ in samples)


async def test_the_health_port_refuses_foreign_names_unless_allowed(tmp_path: Path) -> None:
    from cocoon.inference import Script, ScriptedEngine
    from cocoon.worker import Worker, WorkerConfig

    config = WorkerConfig(
        home=tmp_path / "w", proxies=["127.0.0.1:1"], health_port=0, health_allowed_hosts=["metrics.internal"]
    )
    async with Worker(config, engine=ScriptedEngine(Script())) as worker, httpx.AsyncClient() as http:
        for path in ("/metrics", "/health", "/dashboard/api/state"):
            assert (
                await http.get(worker.health_url + path, headers={"host": "evil.example"})
            ).status_code == 403
            allowed = await http.get(worker.health_url + path, headers={"host": "metrics.internal:12000"})
            assert allowed.status_code == 200, path
