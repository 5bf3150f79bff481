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
from tests.e2e.nodes import started_nodes


def _impostor(home: Path) -> dict[str, str]:
    """A genuine worker certificate of the same image, but another node's key."""
    other = NodeTrust(TeeSettings(sim_home=home), home=home / "other", role="worker")
    return renewal_params(other.identity)


@pytest.mark.parametrize(
    ("kind", "why"),
    [("another-key", "another key"), ("not-base64", "not base64"), ("junk-der", "certificate refused")],
)
async def test_a_bad_renewal_closes_the_link(
    tmp_path: Path, kind: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    params = {
        "another-key": _impostor(tmp_path),
        "not-base64": {"certificate": "%%%"},
        "junk-der": {"certificate": "AAAA"},
    }[kind]
    async with started_nodes(tmp_path, ScriptedEngine(Script(chunks=1)), links=net.MemoryHub()) as nodes:
        proxy, worker, _client = nodes
        (record,) = proxy.registry.records()
        link = worker._dialers[0].connection
        assert link is not None
        await link.notify(RENEWED, params)
        async with asyncio.timeout(10):
            while not link.closed:  # noqa: ASYNC110 - the proxy closes it on its notify task
                await asyncio.sleep(0.01)
        again = proxy.registry.get(record.worker_id)
        assert again is None or again.attested_at == record.attested_at
        assert why in caplog.text
