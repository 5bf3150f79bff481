"""NodeTrust over memory links: real attestation without sockets, and root-contract allowlists that
drop live links when an image or model is revoked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cocoon import net, tee, wire
from cocoon.node import NodeTrust, RootAllowlist, TeeSettings, apply_root_once, root_allowlist

OTHER_IMAGE = b"\x07" * 48


class _Echo(net.NullHandler):
    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return {"echo": method}


@dataclass(frozen=True)
class _Root:
    """A root contract's allowlists, as cocoon.chain.RootConfig carries them."""

    proxy_image_hashes: frozenset[bytes] = frozenset()
    worker_image_hashes: frozenset[bytes] = frozenset()
    model_hashes: frozenset[bytes] = frozenset()


def _trust(home: Path, role: str, hub: net.MemoryHub, **kw: Any) -> NodeTrust:
    return NodeTrust(TeeSettings(sim_home=home), home=home / role, role=role, links=hub, **kw)


@pytest.fixture
def hub() -> net.MemoryHub:
    return net.MemoryHub()


async def _linked(
    tmp_path: Path, hub: net.MemoryHub
) -> tuple[NodeTrust, NodeTrust, net.Listener, net.Dialer]:
    proxy = _trust(tmp_path, "proxy", hub)
    worker = _trust(tmp_path, "worker", hub, model_hash=b"m" * 32)
    listener = await proxy.serve("proxy.test", 0, role=wire.Role.PROXY, info={}, handler=_Echo())
    dialer = worker.dialer(
        f"proxy.test:{listener.port}", role=wire.Role.WORKER, info={}, handler=net.NullHandler()
    )
    await dialer.start()
    await dialer.wait_connected()
    return proxy, worker, listener, dialer


async def test_services_link_over_memory_with_full_attestation(tmp_path: Path, hub: net.MemoryHub) -> None:
    proxy, worker, listener, dialer = await _linked(tmp_path, hub)
    try:
        conn = await dialer.wait_connected()
        seen = conn.peer.attestation
        assert isinstance(seen, tee.PeerAttestation) and seen.verified_quote
        assert seen.public_key == proxy.identity.public_key and seen.image_hash == proxy.image_hash
        (inbound,) = listener.connections
        assert isinstance(inbound.peer.attestation, tee.PeerAttestation)
        assert inbound.peer.attestation.model_hash == b"m" * 32
        assert await conn.query("ping", {}) == {"echo": "ping"}
        assert worker.live_links() == [conn] and proxy.live_links() == [inbound]
    finally:
        await dialer.aclose()
        await listener.aclose()


async def test_an_unattested_peer_is_refused_over_memory_too(tmp_path: Path, hub: net.MemoryHub) -> None:
    proxy = _trust(tmp_path, "proxy", hub)
    listener = await proxy.serve("proxy.test", 0, role=wire.Role.PROXY, info={}, handler=_Echo())
    plain = NodeTrust(TeeSettings(backend="none", peer_policy="any"), home=tmp_path / "p", role="client")
    try:
        with pytest.raises(net.HandshakeRefused):
            await hub.connect(
                "proxy.test",
                listener.port,
                certificate=plain.identity.cert_der,
                verifier=plain.verify_peer,
                role=wire.Role.WORKER,
                info={},
                handler=net.NullHandler(),
            )
        assert listener.connections == frozenset()
    finally:
        await listener.aclose()


async def test_a_revoked_proxy_image_drops_the_live_link_and_refuses_new_dials(
    tmp_path: Path, hub: net.MemoryHub
) -> None:
    proxy, worker, listener, dialer = await _linked(tmp_path, hub)
    assert proxy.image_hash is not None
    try:
        conn = await dialer.wait_connected()
        # The root lists the proxy's image (and another): nothing changes.
        kept = await worker.apply_root(
            root_allowlist("worker", _Root(frozenset({proxy.image_hash, OTHER_IMAGE})))
        )
        assert kept == [] and not conn.closed
        # The root revokes it: the live link is closed at once ...

        async def read_root() -> _Root:
            return _Root(proxy_image_hashes=frozenset({OTHER_IMAGE}))

        assert await apply_root_once(worker, read_root) == 1
        await conn.wait_closed()
        assert worker.policy.allowed_image_hashes == frozenset({OTHER_IMAGE})
        # ... and a new dial to that proxy is refused.
        with pytest.raises(net.HandshakeRefused, match="image hash"):
            await hub.connect(
                "proxy.test",
                listener.port,
                certificate=worker.identity.cert_der,
                verifier=worker.verify_peer,
                role=wire.Role.WORKER,
                info={},
                handler=net.NullHandler(),
            )
    finally:
        await dialer.aclose()
        await listener.aclose()


async def test_the_proxy_drops_a_worker_whose_model_the_root_no_longer_allows(
    tmp_path: Path, hub: net.MemoryHub
) -> None:
    proxy, worker, listener, dialer = await _linked(tmp_path, hub)
    assert worker.image_hash is not None
    try:
        conn = await dialer.wait_connected()
        (inbound,) = listener.connections
        allowed = RootAllowlist(frozenset({worker.image_hash}), frozenset({b"m" * 32}))
        assert await proxy.apply_root(allowed) == []
        dropped = await proxy.apply_root(
            RootAllowlist(frozenset({worker.image_hash}), frozenset({b"n" * 32}))
        )
        assert dropped == [inbound]
        await conn.wait_closed()  # the worker sees its link go too
        assert proxy.live_links() == []
    finally:
        await dialer.aclose()
        await listener.aclose()


def test_root_allowlist_per_role() -> None:
    root = _Root(frozenset({b"p"}), frozenset({b"w"}), frozenset({b"m"}))
    assert root_allowlist("client", root) == RootAllowlist(frozenset({b"p"}))
    assert root_allowlist("worker", root) == RootAllowlist(frozenset({b"p"}))
    assert root_allowlist("proxy", root) == RootAllowlist(frozenset({b"w"}), frozenset({b"m"}))


class _ProxySide(net.NullHandler):
    def __init__(self) -> None:
        self.hellos: list[Mapping[str, Any]] = []

    async def on_connect(self, conn: net.NodeConnection) -> None:
        self.hellos.append(conn.peer.info)


async def test_a_worker_service_runs_over_memory_links(tmp_path: Path, hub: net.MemoryHub) -> None:
    from cocoon.inference import Script, ScriptedEngine
    from cocoon.worker import Worker, WorkerConfig

    proxy = _trust(tmp_path, "proxy", hub)
    side = _ProxySide()
    listener = await proxy.serve("proxy.test", 0, role=wire.Role.PROXY, info={}, handler=side)
    worker = Worker(
        WorkerConfig(
            home=tmp_path / "worker",
            proxies=[f"proxy.test:{listener.port}"],
            health_port=0,
            tee=TeeSettings(sim_home=tmp_path),
        ),
        engine=ScriptedEngine(Script(chunks=1)),
        links=hub,
    )
    try:
        await worker.start()
        await worker.wait_connected()
        (inbound,) = listener.connections
        assert side.hellos and side.hellos[0]["model"] == "scripted-model"
        attested = inbound.peer.attestation
        assert isinstance(attested, tee.PeerAttestation) and attested.model_hash == worker.model_hash
        status = await inbound.query("status", {})
        assert status["state"] == "running"
    finally:
        await worker.stop()
        await listener.aclose()


async def test_a_renewed_certificate_is_presented_to_new_links_and_live_ones_stay(tmp_path: Path) -> None:
    """Over real TLS: after renewal the listener presents the fresh certificate (same key), and the
    link made before it keeps working."""
    settings = TeeSettings(sim_home=tmp_path, cert_lifetime_s=120)
    proxy = NodeTrust(settings, home=tmp_path / "proxy", role="proxy")
    worker = NodeTrust(settings, home=tmp_path / "worker", role="worker")
    listener = await proxy.serve("127.0.0.1", 0, role=wire.Role.PROXY, info={}, handler=_Echo())

    async def dial() -> net.NodeConnection:
        return await net.dial(
            "127.0.0.1",
            listener.port,
            ssl_context=worker.client_context(),
            verifier=worker.verify_peer,
            role=wire.Role.WORKER,
            info={},
            handler=net.NullHandler(),
        )

    before = await dial()
    old = proxy.identity
    try:
        assert not proxy.refresh()  # not due yet
        assert proxy.refresh(now=old.not_before + 61)  # half the lifetime gone
        assert proxy.identity.cert_der != old.cert_der and proxy.identity.public_key == old.public_key
        after = await dial()
        seen = after.peer.attestation
        assert isinstance(seen, tee.PeerAttestation) and seen.cert_sha256 == proxy.identity.cert_sha256
        assert seen.public_key == before.peer.attestation.public_key  # type: ignore[attr-defined]
        assert await before.query("still", {}) == {"echo": "still"}
        await after.aclose()
    finally:
        await before.aclose()
        await listener.aclose()
