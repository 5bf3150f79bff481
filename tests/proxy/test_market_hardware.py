"""Attested hardware: the worker's GPU model, count and memory come from its attested claims and
verified NVIDIA reports; the proxy derives the hardware class from them and refuses, for good, a
worker whose claims contradict the reports or whose declared gpu_class contradicts the evidence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import typer

from cocoon.cli.runner import EXIT_REFUSED, serve_node
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.proxy.classes import (
    Hardware,
    HardwareContradiction,
    attested_hardware,
    declared_contradiction,
    gpu_hardware_class,
)
from cocoon.tee import nvgpu
from cocoon.tee.policy import PeerAttestation
from cocoon.worker import Worker, WorkerConfig
from cocoon.worker.gpu import evidence_for_key

KEY = b"\x07" * 32


def _attestation(tmp_path: Path, *, gpu_claims: dict[str, Any] | None = None) -> PeerAttestation:
    """A peer as the proxy's verifier sees it: sim-GPU claims and the verdicts of their reports."""
    claims = gpu_claims or evidence_for_key("sim", KEY, sim_home=tmp_path).to_claims()
    verdicts = nvgpu.sim_gpu(tmp_path).policy().verify_claims(claims, public_key=KEY, now=int(time.time()))
    return PeerAttestation(
        backend="sim",
        public_key=KEY,
        image_hash=None,
        model_hash=None,
        tcb_status=None,
        advisory_ids=(),
        mr_td=None,
        rtmrs=(),
        debug=False,
        claims={"gpu": claims},
        not_after=0,
        gpus=verdicts,
    )


def test_gpu_names_map_to_hardware_classes() -> None:
    assert gpu_hardware_class("NVIDIA H100 80GB HBM3") == "h100"
    assert gpu_hardware_class("NVIDIA H200") == "h200" and gpu_hardware_class("NVIDIA B200") == "b200"
    assert gpu_hardware_class("NVIDIA A100-SXM4-80GB") == "a100" and gpu_hardware_class("NVIDIA L4") == "l4"
    assert gpu_hardware_class("Simulated H100") == "h100" and gpu_hardware_class("Matrox G200") is None


def test_the_simulated_gpu_proves_one_confidential_h100(tmp_path: Path) -> None:
    hw = attested_hardware(_attestation(tmp_path))
    assert hw == Hardware("h100", "Simulated H100", 1, 81559, verified_gpus=1, confidential_gpu=True)
    assert attested_hardware(None) == Hardware()  # no claims: no GPU


def test_claims_that_contradict_the_verified_reports_are_refused(tmp_path: Path) -> None:
    genuine = evidence_for_key("sim", KEY, sim_home=tmp_path).to_claims()
    renamed = genuine | {"gpus": [g | {"name": "NVIDIA B200"} for g in genuine["gpus"]]}
    with pytest.raises(HardwareContradiction, match="prove Hopper GPUs"):
        attested_hardware(_attestation(tmp_path, gpu_claims=renamed))
    hidden = genuine | {"gpus": []}  # a report for a GPU the listing does not show
    with pytest.raises(HardwareContradiction, match="1 GPU reports verified"):
        attested_hardware(_attestation(tmp_path, gpu_claims=hidden))
    bad_memory = genuine | {"gpus": [g | {"memory_mib": "lots"} for g in genuine["gpus"]]}
    with pytest.raises(HardwareContradiction, match="memory_mib"):
        attested_hardware(_attestation(tmp_path, gpu_claims=bad_memory))


def test_a_declared_gpu_must_be_the_attested_one() -> None:
    h100 = Hardware("h100", "NVIDIA H100", 8, 8 * 81559, 8, True)
    assert declared_contradiction("H100", h100) is None
    assert declared_contradiction("cpu", h100) is None  # claims no GPU: proves nothing, refuses nothing
    assert declared_contradiction("unknown", Hardware()) is None
    why = declared_contradiction("B200", h100)
    assert why is not None and "'B200' contradicts the attested hardware (h100: 8 × NVIDIA H100)" in why
    assert declared_contradiction("H100", Hardware()) is not None  # a GPU the evidence does not show


def _proxy(tmp_path: Path) -> Proxy:
    tee = TeeSettings(sim_home=tmp_path)
    return Proxy(ProxyConfig(home=tmp_path / "proxy", worker_port=0, client_port=0, stats_port=0, tee=tee))


def _sim_gpu_worker(tmp_path: Path, proxy: Proxy, name: str, gpu_class: str) -> Worker:
    config = WorkerConfig(
        home=tmp_path / name,
        proxies=[f"127.0.0.1:{proxy.worker_port}"],
        health_port=0,
        owner_address=name,
        gpu="sim",
        gpu_class=gpu_class,
        tee=TeeSettings(sim_home=tmp_path),
    )
    return Worker(config, engine=ScriptedEngine(Script(chunks=2)))


async def test_the_proxy_admits_attested_hardware_and_refuses_a_false_gpu_class_for_good(
    tmp_path: Path,
) -> None:
    proxy = _proxy(tmp_path)
    await proxy.start()
    honest = _sim_gpu_worker(tmp_path, proxy, "honest", "H100")
    try:
        await honest.start()
        async with asyncio.timeout(20):
            while not proxy.registry.records():  # noqa: ASYNC110 - the proxy admits the worker on hello
                await asyncio.sleep(0.02)
        (record,) = proxy.registry.records()
        assert (record.hardware, record.gpu_count, record.gpu_memory_mib) == ("h100", 1, 81559)
        assert record.gpu_model == "Simulated H100" and record.confidential_gpu
        (model,) = proxy.models()
        assert model["hardware"] == ["h100"] and model["worker_market"][0]["confidential_gpu"] is True
        liar = _sim_gpu_worker(tmp_path, proxy, "liar", "B200")
        async with asyncio.timeout(20):
            with pytest.raises(typer.Exit) as exit_info:
                await serve_node(liar, "worker", lambda: {}, refused=liar.refusals.wait)
        assert exit_info.value.exit_code == EXIT_REFUSED  # for good: the same evidence gets the same answer
        (reason,) = liar.refusals.reasons
        assert "announced gpu_class 'B200' contradicts the attested hardware (h100" in reason
        assert [r.worker_id for r in proxy.registry.records()] == [record.worker_id]
    finally:
        await honest.stop()
        await proxy.stop()
