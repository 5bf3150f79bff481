"""An HTTP engine's weights: the worker hashes the directory the engine was started from and
refuses to serve when the engine reports another model path (or none)."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cocoon import net
from cocoon.errors import ServiceError
from cocoon.inference import model_hash
from cocoon.inference.server import running_server
from cocoon.node.trust import TeeSettings
from cocoon.worker import Worker, WorkerConfig
from cocoon.worker.config import EngineSettings
from cocoon.worker.weights import (
    hash_weights,
    paths_from_answers,
    same_path,
    verify_engine_weights,
    watch_engine_weights,
)


def _weights(root: Path, text: bytes = b"weights") -> Path:
    root.mkdir(parents=True)
    (root / "model-00001.safetensors").write_bytes(text * 1000)
    (root / "config.json").write_text("{}")
    return root


def _upstream(answers: dict[str, Any]) -> FastAPI:
    """A vLLM/SGLang-like upstream that answers the given probe paths."""
    app = FastAPI()
    for path, body in answers.items():
        app.add_api_route(path, lambda body=body: body, methods=["GET"])
    return app


def _vllm(model: str, root: str) -> dict[str, Any]:
    return {"/v1/models": {"object": "list", "data": [{"id": model, "object": "model", "root": root}]}}


def test_reported_paths_from_each_engine_kind() -> None:
    answers = {
        "/v1/models": {"data": [{"id": "other", "root": "/x"}, {"id": "m", "root": "/models/m"}]},
        "/get_model_info": {"model_path": "/models/m", "is_generation": True},
        "/props": {"model_path": "/models/m/model.gguf"},
    }
    assert paths_from_answers(answers, "m") == ["/models/m", "/models/m", "/models/m/model.gguf"]
    assert paths_from_answers({"/v1/models": {"data": "nope"}, "/props": [1]}, "m") == []


def test_same_path_resolves_links_and_refuses_hub_ids(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w")
    (tmp_path / "link").symlink_to(weights)
    assert same_path(str(tmp_path / "link"), weights) and same_path(str(weights) + "/", weights)
    assert not same_path("meta-llama/Llama-3-8B", weights) and not same_path(str(tmp_path), weights)


async def test_verify_against_an_engine_over_http(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w")

    def transport(answers: dict[str, Any]) -> httpx.MockTransport:
        return httpx.MockTransport(
            lambda r: (
                httpx.Response(200, json=answers[r.url.path])
                if r.url.path in answers
                else httpx.Response(404)
            )
        )

    good = transport(_vllm("m", str(weights)))
    assert await verify_engine_weights("http://engine:8000/v1", "m", weights, transport=good) == str(weights)
    sglang = transport({"/get_model_info": {"model_path": str(weights)}})
    assert await verify_engine_weights("http://engine:8000", "m", weights, transport=sglang) == str(weights)
    with pytest.raises(ServiceError, match="serves 'm' from /elsewhere"):
        await verify_engine_weights("http://e", "m", weights, transport=transport(_vllm("m", "/elsewhere")))
    with pytest.raises(ServiceError, match="does not report"):
        await verify_engine_weights("http://e", "m", weights, transport=transport({}))
    mixed = transport({**_vllm("m", str(weights)), "/props": {"model_path": "/other.gguf"}})
    with pytest.raises(ServiceError, match=re.escape("/other.gguf")):
        await verify_engine_weights("http://e", "m", weights, transport=mixed)


def test_hash_weights_is_the_embedded_engines_hash_and_logs_progress(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = _weights(tmp_path / "w", b"x" * 5000)  # 5 MB: several 1 MiB chunks
    log = logging.getLogger("test.weights")
    with caplog.at_level(logging.INFO, logger="test.weights"):
        assert hash_weights(weights, log=log, interactive=False) == model_hash(weights)
    percents = [r.getMessage() for r in caplog.records if "%" in r.getMessage()]
    assert percents and percents[-1].endswith("100%")
    assert hash_weights(weights, log=log, interactive=True) == model_hash(weights)


def _worker(tmp_path: Path, url: str, weights: Path) -> Worker:
    config = WorkerConfig(
        home=tmp_path / "worker",
        proxies=["proxy.test:1"],
        health_port=0,
        tee=TeeSettings(sim_home=tmp_path),
        engine=EngineSettings(kind="http", url=url, model_name="m", model_path=weights),
    )
    return Worker(config, links=net.MemoryHub())


async def test_a_worker_announces_the_hash_of_the_weights_its_engine_serves(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w")
    async with running_server(_upstream(_vllm("m", str(weights)))) as url:
        worker = _worker(tmp_path, url, weights)
        try:
            await worker.start()
            assert worker.model_hash == model_hash(weights)
            assert worker.announce()["model_hash"] == model_hash(weights).hex()
        finally:
            await worker.stop()


async def test_a_worker_pointed_at_other_weights_than_its_engine_serves_refuses_to_start(
    tmp_path: Path,
) -> None:
    announced = _weights(tmp_path / "announced")
    served = _weights(tmp_path / "served", b"other")
    async with running_server(_upstream(_vllm("m", str(served)))) as url:
        worker = _worker(tmp_path, url, announced)
        with pytest.raises(ServiceError, match=re.escape(f"from {served}, not from {announced}")):
            await worker.start()
        assert worker.model_hash is None and worker.trust is None  # nothing announced, no identity made


async def test_a_running_worker_stops_taking_requests_when_its_engine_changes_weights(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "w")
    answers = _vllm("m", str(weights))
    async with running_server(_upstream(answers)) as url:
        worker = _worker(tmp_path, url, weights)
        try:
            await worker.start()
            assert any(t.get_name() == "worker-weights-watch" for t in worker.tasks)
        finally:
            await worker.stop()

    changed = asyncio.Event()
    reasons: list[str] = []

    def on_mismatch(why: str) -> None:
        reasons.append(why)
        changed.set()

    state = {"root": str(weights)}
    asked = [0]
    three_rounds = asyncio.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            asked[0] += 1
            if asked[0] == 3:
                three_rounds.set()
            return httpx.Response(200, json={"data": [{"id": "m", "root": state["root"]}]})
        return httpx.Response(404)

    watch = asyncio.create_task(
        watch_engine_weights(
            "http://e",
            "m",
            weights,
            on_mismatch=on_mismatch,
            interval_s=0,
            transport=httpx.MockTransport(handler),
        )
    )
    async with asyncio.timeout(5):
        await three_rounds.wait()
    assert not changed.is_set()  # three rounds with the right path: nothing happened
    state["root"] = "/models/other"  # the engine restarted from other weights
    async with asyncio.timeout(5):
        await changed.wait()
    await watch
    assert "/models/other" in reasons[0]
