"""Worker pieces without a network: GPU evidence parsing, health views, config checks."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest
from pydantic import ValidationError
from rich.console import Console

from cocoon.health.views import VIEWS, render
from cocoon.worker import WorkerConfig
from cocoon.worker.gpu import collect_gpu_evidence


def test_no_driver_means_no_gpu_evidence() -> None:
    evidence = collect_gpu_evidence(which=lambda _name: None, lister=lambda: None)
    assert evidence.kind == "none" and not evidence.confidential


def test_nvidia_cc_mode_on_without_signed_reports_is_not_confidential() -> None:
    """``nvidia-smi`` saying CC is on is the host's word; only signed reports count (tests/worker/test_gpu.py)."""

    def runner(argv: Sequence[str]) -> str:
        if "conf-compute" in argv:
            return "CC status: ON\n"
        return "NVIDIA H100 80GB HBM3, GPU-1234, 580.95.05, 81559\n"

    evidence = collect_gpu_evidence(runner)
    assert evidence.kind == "nvidia" and evidence.cc_mode == "on" and not evidence.confidential
    assert evidence.gpus[0].memory_mib == 81559
    assert evidence.to_claims()["gpus"][0]["uuid"] == "GPU-1234"


def test_nvidia_smi_failure_is_reported_not_raised() -> None:
    def runner(argv: Sequence[str]) -> str:
        raise subprocess.CalledProcessError(9, list(argv))

    evidence = collect_gpu_evidence(runner)
    assert evidence.kind == "none" and evidence.error


def test_every_health_view_renders_a_report() -> None:
    report = {
        "state": "running",
        "uptime_s": 3.0,
        "model": "m",
        "coefficient": 1500,
        "proxies": [{"address": "p:1", "connected": True}],
        "served": 4,
        "payments": {"p:1": {"earned_nano": 2_000_000_000, "paid_nano": 0, "adjusted_tokens": 10}},
        "gpu": {"kind": "none", "gpus": []},
        "system": {"cpus": 2, "load_avg": [0.1, 0.2, 0.3]},
        "log_lines": ["a line"],
    }
    console = Console(record=True, width=120)
    for view in [*VIEWS, "all"]:
        console.print(render(view, report))
    text = console.export_text()
    assert "1.500×" in text and "2 TON" in text and "a line" in text and "1/1" in text


def test_worker_config_validates() -> None:
    with pytest.raises(ValidationError):
        WorkerConfig(proxies=["no-port"])
    with pytest.raises(ValidationError):
        WorkerConfig(coefficient=-1)
    with pytest.raises(ValidationError):
        WorkerConfig.model_validate({"engine": {"kind": "http", "url": "ftp://x"}})


def test_engine_capabilities_come_from_the_config() -> None:
    from cocoon.inference import Capability, EmbeddedEngine, HttpEngine
    from cocoon.worker import build_engine

    config = WorkerConfig.model_validate(
        {"engine": {"kind": "http", "url": "http://127.0.0.1:8000", "capabilities": ["chat", "vision"]}}
    )
    engine = build_engine(config)
    assert isinstance(engine, HttpEngine)
    assert engine.capabilities == {Capability.CHAT, Capability.VISION}
    with pytest.raises(ValidationError):
        WorkerConfig.model_validate(
            {"engine": {"kind": "http", "url": "http://x", "capabilities": ["telepathy"]}}
        )
    quiet = build_engine(WorkerConfig.model_validate({"engine": {"embeddings": False}}))
    assert isinstance(quiet, EmbeddedEngine) and Capability.EMBEDDINGS not in quiet.capabilities
    assert Capability.TOOLS in quiet.capabilities and Capability.VISION not in quiet.capabilities
