"""Live GPU readings for the owner's views (``cocoon health gpu``, ``/metrics``, the dashboard).

Read through NVML (``nvidia-ml-py``): utilisation, memory, temperature and power of each GPU, with
its name, UUID and driver. On a machine without an NVIDIA driver there are no readings and a short
reason, never an exception. This is the owner's view only; what the TEE attests about the GPU is
:mod:`cocoon.worker.gpu`.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import pynvml

__all__ = ["GpuReading", "GpuTelemetry", "read_gpu_telemetry"]


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    name: str
    uuid: str
    utilization_pct: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None


@dataclass(frozen=True, slots=True)
class GpuTelemetry:
    gpus: tuple[GpuReading, ...] = ()
    driver_version: str | None = None
    error: str | None = None  # why there are no readings (no driver, NVML failed)

    def to_json(self) -> dict[str, Any]:
        return {
            "driver_version": self.driver_version,
            "error": self.error,
            "gpus": [asdict(g) for g in self.gpus],
        }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(nvml: Any, call: str, *args: object) -> Any:
    """One NVML query; a GPU that does not support it (or fails it) gives None for that field."""
    try:
        return getattr(nvml, call)(*args)
    except nvml.NVMLError:
        return None


def _reading(nvml: Any, index: int) -> GpuReading:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    util = _optional(nvml, "nvmlDeviceGetUtilizationRates", handle)
    memory = _optional(nvml, "nvmlDeviceGetMemoryInfo", handle)
    temperature = _optional(nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
    power_mw = _optional(nvml, "nvmlDeviceGetPowerUsage", handle)
    limit_mw = _optional(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    return GpuReading(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        utilization_pct=None if util is None else float(util.gpu),
        memory_used_bytes=None if memory is None else int(memory.used),
        memory_total_bytes=None if memory is None else int(memory.total),
        temperature_c=None if temperature is None else float(temperature),
        power_w=None if power_mw is None else power_mw / 1000,
        power_limit_w=None if limit_mw is None else limit_mw / 1000,
    )


def read_gpu_telemetry(nvml: ModuleType | Any = pynvml) -> GpuTelemetry:
    """Every GPU's readings now (blocking: call it in a thread); ``nvml`` is replaceable in tests."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return GpuTelemetry(error=f"no NVIDIA driver (NVML: {exc})")
    try:
        driver = _optional(nvml, "nvmlSystemGetDriverVersion")
        count = nvml.nvmlDeviceGetCount()
        gpus = tuple(_reading(nvml, i) for i in range(count))
    except nvml.NVMLError as exc:
        return GpuTelemetry(error=f"NVML failed: {exc}")
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
    return GpuTelemetry(gpus=gpus, driver_version=None if driver is None else _text(driver))
