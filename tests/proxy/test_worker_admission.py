"""Admission of workers: many GPUs under one wallet are distinct, stable workers; a refusal that
cannot change stops the worker (exit code 3 from the CLI's runner); a transient one backs off."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import typer

from cocoon import net
from cocoon.cli.runner import EXIT_REFUSED, serve_node
from cocoon.client import Client, ClientConfig
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.proxy.selection import WorkerRecord
from cocoon.worker import Worker, WorkerConfig
from cocoon.worker.instance import INSTANCE_FILE

MODEL = "scripted-model"
OWNER = "one-wallet"


def _proxy_config(tmp_path: Path) -> ProxyConfig:
    return ProxyConfig(
        home=tmp_path / "proxy",
        worker_port=0,
        client_port=0,
        stats_port=0,
        test_credit_nano=10**15,
        tee=TeeSettings(sim_home=tmp_path),
    )


def _worker(tmp_path: Path, proxy: Proxy, name: str, owner: str = OWNER) -> Worker:
    config = WorkerConfig(
        home=tmp_path / name,
        proxies=[f"127.0.0.1:{proxy.worker_port}"],
        health_port=0,
        owner_address=owner,
        tee=TeeSettings(sim_home=tmp_path),
    )
    return Worker(config, engine=ScriptedEngine(Script(chunks=2)))


@contextlib.asynccontextmanager
async def _running(node: Any) -> AsyncIterator[Any]:
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def _registered(proxy: Proxy, n: int) -> list[WorkerRecord]:
    async with asyncio.timeout(10):
        while len(proxy.registry.records()) < n:  # noqa: ASYNC110 - the registry has no change event
            await asyncio.sleep(0.02)
    return proxy.registry.records()


async def test_two_gpus_of_one_owner_both_serve_under_stable_ids(tmp_path: Path) -> None:
    async with _running(Proxy(_proxy_config(tmp_path))) as proxy:
        gpus = [_worker(tmp_path, proxy, "gpu-0"), _worker(tmp_path, proxy, "gpu-1")]
        async with _running(gpus[0]), _running(gpus[1]):
            records = await _registered(proxy, 2)
            ids = sorted(r.worker_id for r in records)
            assert len(set(ids)) == 2 and all(i.startswith(f"{OWNER}/{MODEL}/") for i in ids)
            client = Client(
                ClientConfig(
                    home=tmp_path / "client",
                    http_port=0,
                    proxies=[f"127.0.0.1:{proxy.client_port}"],
                    owner_address="app",
                    tee=TeeSettings(sim_home=tmp_path),
                )
            )
            async with _running(client):
                await client.wait_connected()
                async with openai.AsyncOpenAI(base_url=client.base_url, api_key="x", max_retries=0) as oai:
                    for _ in range(6):
                        await oai.chat.completions.create(
                            model=MODEL, messages=[{"role": "user", "content": "hi"}]
                        )
            served = [gpu.counters["served"] for gpu in gpus]
            assert sum(served) == 6 and min(served) > 0  # both GPUs take requests
        # The same home comes back as the same worker (its reputation stays with it).
        instance = (tmp_path / "gpu-0" / INSTANCE_FILE).read_text().strip()
        async with _running(_worker(tmp_path, proxy, "gpu-0")):
            (again,) = await _registered(proxy, 1)
            assert again.worker_id == f"{OWNER}/{MODEL}/{instance}" and again.worker_id in ids


async def test_a_refusal_for_good_stops_the_worker_with_exit_code_3(tmp_path: Path) -> None:
    async with _running(Proxy(_proxy_config(tmp_path))) as proxy:
        proxy.allowed_model_hashes = frozenset({bytes(32)})  # this worker's model is not allowed
        worker = _worker(tmp_path, proxy, "gpu-0")
        async with asyncio.timeout(20):
            with pytest.raises(typer.Exit) as exit_info:
                await serve_node(worker, "worker", lambda: {}, refused=worker.refusals.wait)
        assert exit_info.value.exit_code == EXIT_REFUSED
        assert worker.refusals.reasons == ["model hash not allowed by the root contract"]
        (dialer,) = worker._dialers
        assert dialer.attempts == 1  # not retried
        assert isinstance(dialer.refused, net.HandshakeRefused) and "not allowed" in str(dialer.refused)
        assert not proxy.registry.records()


class _NotReadyYet(Proxy):
    """A proxy that refuses the first two worker links for a reason that can change."""

    refusals_left = 2

    async def admit_worker(self, conn: net.NodeConnection) -> WorkerRecord:
        if self.refusals_left:
            self.refusals_left -= 1
            raise net.HandshakeRefused("not ready yet")
        return await super().admit_worker(conn)


async def test_a_transient_refusal_backs_off_and_the_worker_joins(tmp_path: Path) -> None:
    proxy = _NotReadyYet(_proxy_config(tmp_path))
    async with _running(proxy):
        worker = _worker(tmp_path, proxy, "gpu-0")
        async with _running(worker):
            async with asyncio.timeout(10):
                await worker.wait_connected()
            await _registered(proxy, 1)
            (dialer,) = worker._dialers
            assert dialer.attempts == 3 and proxy.refusals_left == 0
            assert worker.refusals.reasons == [] and dialer.refused is None
            # Two failures in a row: the delays double (0.5-1x jitter of 0.25 s, then of 0.5 s).
            assert 0.125 <= dialer.backoff(1) <= 0.25 and 0.25 <= dialer.backoff(2) <= 0.5
