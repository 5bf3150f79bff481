"""What the operator and apps see of the market: the dashboard's Market table and the models view
show each worker's attested hardware, its class admission and what the proxy measured."""

from __future__ import annotations

from cocoon.proxy.dashboard import proxy_snapshot
from cocoon.proxy.metrics import stats_json
from cocoon.proxy.selection import SelectionPolicy, WorkerRecord, WorkerRegistry, market_view

MODEL = "m@1"


def _registry() -> WorkerRegistry:
    reg = WorkerRegistry(SelectionPolicy(class_min_observations=2))
    h100 = dict(hardware="h100", gpu_model="NVIDIA H100", gpu_count=8, gpu_memory_mib=8 * 81559)
    reg.add(WorkerRecord("gpu-box", MODEL, 1000, 8, connected_at=0.0, confidential_gpu=True, **h100))  # type: ignore[arg-type]
    reg.add(WorkerRecord("cpu-box", MODEL, 1000, 8, connected_at=0.0))
    for i in range(2):  # two fast streamed answers of 51 tokens and 4 KiB each
        reg.started("gpu-box", 10.0 + i)
        reg.finished("gpu-box", ok=True, tokens=51, duration=1.0, now=11.0 + i, ttft=0.5, relayed_bytes=4096)
    reg.remove("cpu-box")  # at the latest time the registry was told (12 s): connected 0-12 s
    reg.add(WorkerRecord("cpu-box", MODEL, 1000, 8, connected_at=30.0))
    reg.statistics(40.0)
    return reg


def test_the_market_table_shows_attested_hardware_admission_and_measurements() -> None:
    reg = _registry()
    stats = {"workers": stats_json(None, reg.statistics(40.0))["workers"]}
    table = next(t for t in proxy_snapshot(stats).tables if t.id == "market")
    rows = {row.key: [c.value for c in row.cells] for row in table.rows}
    assert rows["gpu-box"][:9] == [
        "gpu-box",
        "h100",
        "8 × NVIDIA H100 (637 GiB)",
        "yes",
        "elastic, premium",
        2,
        500.0,
        100.0,
        1.0,
    ]
    assert rows["gpu-box"][9] == 4.0  # KiB/s: 8 KiB relayed in 2 s of answering
    assert rows["cpu-box"][1:5] == ["cpu", "none", "no", "elastic"]


def test_the_models_view_counts_admitted_workers_per_class() -> None:
    view = market_view(_registry(), MODEL, 40.0)
    assert view["hardware"] == ["cpu", "h100"]
    assert view["service_classes"]["premium"]["workers_admitted"] == 1
    assert view["service_classes"]["elastic"]["workers_admitted"] == 2
    gpu, cpu = sorted(view["worker_market"], key=lambda w: w["worker_id"], reverse=True)
    assert gpu["bandwidth_bytes_per_s"] == 4096.0 and gpu["gpu_memory_mib"] == 8 * 81559
    assert gpu["uptime_ratio"] == 1.0 and cpu["uptime_s"] == 22.0 and cpu["uptime_ratio"] == 0.55
