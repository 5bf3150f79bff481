"""Renewals a proxy refuses: another node's certificate, or junk, sent as a worker's renewal over
its live link closes that link and leaves its attestation age as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cocoon import net
from cocoon.inference import Script, ScriptedEngine
from cocoon.node.renewal import RENEWED, renewal_params
from cocoon.node.trust import NodeTrust, TeeSettings
from cocoon.proxy import Proxy
from cocoon.worker import Worker
from tests.e2e.nodes import started_nodes


def _impostor(home: Path) -> dict[str, str]:
    """A genuine worker certificate of the same image, but another node's key."""
    other = NodeTrust(TeeSettings(sim_home=home), home=home / "other", role="worker")
    return renewal_params(other.identity)


async def _admitted_link(proxy: Proxy, worker: Worker) -> net.NodeConnection:
    """The worker's live link once the proxy has admitted the worker on it."""
    async with asyncio.timeout(10):
        while True:
            link = worker._dialers[0].connection
            admitted = [c for c in proxy._worker_links.values() if not c.closed]
            if link is not None and not link.closed and admitted and proxy.registry.records():
                return link
            await asyncio.sleep(0.01)


async def test_a_bad_renewal_closes_the_link(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        (_impostor(tmp_path), "another key"),
        ({"certificate": "%%%"}, "not base64"),
        ({"certificate": "AAAA"}, "certificate refused"),
    ]
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=1)), links=net.MemoryHub()) as nodes:
        proxy, worker, _client = nodes
        for params, why in bad:
            link = await _admitted_link(proxy, worker)
            (record,) = proxy.registry.records()
            caplog.clear()
            await link.notify(RENEWED, params)
            async with asyncio.timeout(10):
                while not link.closed:  # noqa: ASYNC110 - the proxy closes it on its notify task
                    await asyncio.sleep(0.01)
            again = proxy.registry.get(record.worker_id)
            assert again is None or again.attested_at == record.attested_at
            assert why in caplog.text


async def test_a_bad_renewal_from_the_proxy_makes_its_worker_and_client_drop_the_link(tmp_path: Path) -> None:
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=1)), links=net.MemoryHub()) as nodes:
        proxy, worker, client = nodes
        await _admitted_link(proxy, worker)
        to_worker = next(iter(proxy._worker_links.values()))
        (to_client,) = proxy._client_links.values()
        for link in (to_worker, to_client):
            await link.notify(RENEWED, _impostor(tmp_path))  # another node's genuine certificate
        async with asyncio.timeout(10):
            while not (to_worker.closed and to_client.closed):  # noqa: ASYNC110 - they close on their notify tasks
                await asyncio.sleep(0.01)
        await worker.wait_connected()  # both dial again and judge the proxy afresh
        await client.wait_connected()
