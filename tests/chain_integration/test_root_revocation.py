"""A proxy image revoked in the root contract: the worker's live link to that proxy drops at the
next root read, and new dials to it are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cocoon import net, wire
from cocoon.chain import KeyPair, LocalChain, Op, bootstrap_local_network, send_root_op
from cocoon.inference import Script, ScriptedEngine
from cocoon.node import apply_root_once
from cocoon.node.trust import TeeSettings
from cocoon.proxy import Proxy, ProxyConfig
from cocoon.worker import Worker, WorkerConfig
from cocoon.worker.config import WorkerRootSettings


async def test_a_revoked_proxy_image_drops_the_workers_link(tmp_path: Path) -> None:
    tee = TeeSettings(sim_home=tmp_path)
    proxy = Proxy(ProxyConfig(home=tmp_path / "proxy", worker_port=0, client_port=0, stats_port=0, tee=tee))
    await proxy.start()
    chain = LocalChain(tmp_path / "chain.sqlite")
    worker: Worker | None = None
    try:
        assert proxy.trust is not None and proxy.trust.image_hash is not None
        proxy_image = proxy.trust.image_hash
        handles = await bootstrap_local_network(
            chain,
            owner=KeyPair.generate(),
            proxy_image_hashes=[proxy_image, b"\x09" * 32],
            worker_image_hashes=[],
            models={},
            proxy_addresses=[],
        )
        root = WorkerRootSettings(
            local_path=tmp_path / "chain.sqlite",
            root_address=handles.root.to_str(),  # type: ignore[no-untyped-call]
            proxies_from_root=False,
        )
        worker = Worker(
            WorkerConfig(
                home=tmp_path / "worker",
                proxies=[f"127.0.0.1:{proxy.worker_port}"],
                health_port=0,
                tee=tee,
                root=root,
            ),
            engine=ScriptedEngine(Script(chunks=1)),
        )
        await worker.start()
        assert worker.trust is not None
        async with asyncio.timeout(20):
            await worker.wait_connected()
        (link,) = worker.trust.live_links()
        assert worker.trust.policy.allowed_image_hashes == frozenset({proxy_image, b"\x09" * 32})

        await send_root_op(handles.owner, handles.root, Op.DEL_PROXY_TYPE, hash=proxy_image)
        assert await apply_root_once(worker.trust, worker._read_root) == 1  # what the 60 s watch does
        async with asyncio.timeout(10):
            await link.wait_closed()
        with pytest.raises(net.HandshakeRefused, match="not allowed"):
            await net.dial(
                "127.0.0.1",
                proxy.worker_port,
                ssl_context=worker.trust.client_context(),
                verifier=worker.trust.verify_peer,
                role=wire.Role.WORKER,
                info=worker.announce(),
                handler=net.NullHandler(),
            )
    finally:
        if worker is not None:
            await worker.stop()
        await proxy.stop()
        await chain.aclose()


async def test_a_revoked_worker_image_drops_the_proxys_link_to_it(tmp_path: Path) -> None:
    from cocoon import tee as tee_room
    from cocoon.chain import fetch_root_config
    from cocoon.node.trust import ROLE_MEASUREMENTS

    tee = TeeSettings(sim_home=tmp_path)
    worker_image = tee_room.make_backend(
        "sim", home=tmp_path, measurements=ROLE_MEASUREMENTS["worker"]
    ).image_hash()
    assert worker_image is not None
    chain = LocalChain(tmp_path / "chain.sqlite")
    handles = await bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[worker_image, b"\x09" * 32],
        models={},
        proxy_addresses=[],
    )
    proxy = Proxy(ProxyConfig(home=tmp_path / "proxy", worker_port=0, client_port=0, stats_port=0, tee=tee))
    await proxy.start()
    worker = Worker(
        WorkerConfig(
            home=tmp_path / "worker", proxies=[f"127.0.0.1:{proxy.worker_port}"], health_port=0, tee=tee
        ),
        engine=ScriptedEngine(Script(chunks=1)),
    )
    try:
        proxy._apply_root(await fetch_root_config(chain, handles.root))  # what ChainSync hands it
        await worker.start()
        async with asyncio.timeout(20):
            await worker.wait_connected()
        assert proxy.trust is not None
        (link,) = proxy.trust.live_links()
        await send_root_op(handles.owner, handles.root, Op.DEL_WORKER_TYPE, hash=worker_image)
        proxy._apply_root(await fetch_root_config(chain, handles.root))
        async with asyncio.timeout(10):
            await link.wait_closed()
        assert proxy.trust.live_links() == []
    finally:
        await worker.stop()
        await proxy.stop()
        await chain.aclose()
