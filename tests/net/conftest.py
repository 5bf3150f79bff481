"""Fixtures: one proxy and one worker identity per session, and a live loopback TLS link."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .helpers import Link, Node, make_node, open_link


@pytest.fixture(scope="session")
def proxy_node() -> Node:
    return make_node("proxy")


@pytest.fixture(scope="session")
def worker_node() -> Node:
    return make_node("worker")


@pytest.fixture
async def link(proxy_node: Node, worker_node: Node) -> AsyncIterator[Link]:
    lk = await open_link(proxy_node, worker_node)
    try:
        yield lk
    finally:
        await lk.client.aclose()
        await lk.server.aclose()
