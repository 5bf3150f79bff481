"""A worker's sealing keys: in its attested claims, rotated with its certificate, the old key kept
(and opening requests sealed to it) until the certificate that published it expires."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocoon import tee
from cocoon.e2ee import RecipientKey, SealError, Suite, open_request, routing_aad, seal_request
from cocoon.inference import Script, ScriptedEngine
from cocoon.node import NodeTrust, TeeSettings
from cocoon.node.sealkeys import GRACE_S, SealKeys
from cocoon.node.secrets import open_node_secrets
from cocoon.tee.seal import sim_seal_server_thread
from cocoon.worker import Worker, WorkerConfig

AAD = routing_aad("/v1/chat/completions", "m", 16, "env")
LIFETIME = 3600


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _seal_to(claims: list[dict[str, str]], body: bytes = b"prompt") -> bytes:
    recipients = [RecipientKey.from_claim("w", c) for c in claims]
    return seal_request(body, recipients, aad=AAD).to_bytes()


def test_first_issue_publishes_the_start_keys_then_each_issue_rotates() -> None:
    clock = Clock()
    keys = SealKeys(lifetime_s=LIFETIME, clock=clock)
    start = keys.claims()
    assert [c["suite"] for c in start] == [Suite.HYBRID, Suite.CLASSICAL]  # preferred suite first
    assert keys.rotate() == start
    old_ids = [bytes.fromhex(c["key_id"]) for c in start]
    clock.now += LIFETIME // 2
    renewed = keys.rotate()
    assert {c["key_id"] for c in renewed}.isdisjoint(c["key_id"] for c in start)
    assert keys.current.key_id.hex() == renewed[0]["key_id"]
    # The old certificate is still in force: requests sealed to its keys still open.
    old = keys.find(old_ids[0])
    assert old is not None and open_request(_seal_to(start[:1]), old, aad=AAD).body == b"prompt"
    assert keys.key_ids()[:2] == [bytes.fromhex(c["key_id"]) for c in renewed]
    clock.now = 1_800_000_000.0 + LIFETIME + GRACE_S  # the old certificate expired (and the grace)
    assert keys.find(old_ids[0]) is None and keys.find(old_ids[1]) is None
    assert keys.find(keys.current.key_id) is keys.current


def test_sealed_keys_are_rederived_after_a_restart() -> None:
    seed, clock = os.urandom(32), Clock()
    first = SealKeys(lifetime_s=LIFETIME, seed=seed, clock=clock)
    published = first.rotate()
    clock.now += LIFETIME // 2 + 5  # the next period: the restarted worker's certificate renews
    restarted = SealKeys(lifetime_s=LIFETIME, seed=seed, clock=clock)
    assert restarted.sealed and restarted.rotate() != published
    pair = restarted.find(bytes.fromhex(published[0]["key_id"]))
    assert pair is not None and open_request(_seal_to(published), pair, aad=AAD).body == b"prompt"
    other = SealKeys(lifetime_s=LIFETIME, seed=os.urandom(32), clock=clock)
    assert other.find(bytes.fromhex(published[0]["key_id"])) is None  # another root: other keys


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SealKeys(lifetime_s=1)
    with pytest.raises(ValueError):
        SealKeys(lifetime_s=60, suites=[Suite.HYBRID, Suite.HYBRID])


def test_trust_evaluates_callable_claims_at_each_issue(tmp_path: Path) -> None:
    keys = SealKeys(lifetime_s=120)
    calls: list[int] = []

    def claims() -> dict[str, object]:
        calls.append(1)
        return {"e2ee": keys.rotate()}

    trust = NodeTrust(
        TeeSettings(sim_home=tmp_path, cert_lifetime_s=120), home=tmp_path, role="worker", extra_claims=claims
    )
    before = trust.identity
    assert before.claims.extra["e2ee"] == keys.claims() and len(calls) == 1
    assert not trust.refresh() and len(calls) == 1  # not due: no issue, no rotation
    sealed_before = _seal_to(keys.claims())
    assert trust.refresh(now=before.not_before + 61)
    seen = tee.AttestationPolicy.any().verify_certificate(trust.identity.cert_der, now=before.not_before + 61)
    assert seen.claims["e2ee"] == keys.claims() != before.claims.extra["e2ee"]
    old = keys.find(bytes.fromhex(before.claims.extra["e2ee"][0]["key_id"]))
    assert old is not None and open_request(sealed_before, old, aad=AAD).body == b"prompt"
    with pytest.raises(SealError, match="not sealed to key"):
        open_request(sealed_before, keys.current, aad=AAD)


async def test_worker_certificate_carries_its_sealing_keys_and_renewal_rotates_them(tmp_path: Path) -> None:
    config = WorkerConfig(home=tmp_path / "w", health_port=0)
    async with Worker(config, engine=ScriptedEngine(Script(chunks=1))) as worker:
        assert worker.trust is not None and worker.seal_keys is not None
        first = worker.trust.identity
        seen = tee.AttestationPolicy.any().verify_certificate(first.cert_der, now=first.not_before)
        claims = seen.claims["e2ee"]
        assert claims == worker.seal_keys.claims() and claims[0]["suite"] == "mlkem768-x25519"
        sealed = _seal_to(claims)  # sealed by a client just before the renewal
        assert worker.trust.refresh(now=first.not_before + first.lifetime_s // 2 + 1)
        renewed = worker.trust.identity.claims.extra["e2ee"]
        assert renewed[0]["key_id"] != claims[0]["key_id"]
        old = worker.seal_keys.find(bytes.fromhex(claims[0]["key_id"]))
        assert old is not None and open_request(sealed, old, aad=AAD).body == b"prompt"


@pytest.fixture
def sock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("seal") / "seal.sock"  # unix socket paths must stay short
    yield path


def test_sealed_nodes_get_a_stable_seal_seed_and_others_none(tmp_path: Path, sock: Path) -> None:
    assert (
        open_node_secrets(TeeSettings(sim_home=tmp_path), home=tmp_path / "a", role="worker").seal_seed
        is None
    )
    settings = TeeSettings(sim_home=tmp_path, seal_address=f"unix:{sock}")
    image = {"image": "cocoon-worker"}
    with sim_seal_server_thread(tee.sim_platform(tmp_path), sock):
        first = open_node_secrets(settings, home=tmp_path / "w", role="worker", measurements=image)
        again = open_node_secrets(settings, home=tmp_path / "w", role="worker", measurements=image)
    assert first.seal_seed is not None and len(first.seal_seed) == 32
    assert first.seal_seed == again.seal_seed  # a restart derives the same sealing keys


async def test_a_sealed_worker_restarted_still_opens_requests_sealed_to_its_published_key(
    tmp_path: Path, sock: Path
) -> None:
    tee_settings = TeeSettings(sim_home=tmp_path, seal_address=f"unix:{sock}")
    config = WorkerConfig(home=tmp_path / "w", health_port=0, tee=tee_settings)
    with sim_seal_server_thread(tee.sim_platform(tmp_path), sock):
        async with Worker(config, engine=ScriptedEngine(Script(chunks=1))) as first:
            assert first.seal_keys is not None and first.seal_keys.sealed
            published = first.seal_keys.claims()
        sealed = _seal_to(published)  # a client sealed to it while the worker was down
        async with Worker(config, engine=ScriptedEngine(Script(chunks=1))) as again:
            assert again.seal_keys is not None
            pair = again.seal_keys.find(bytes.fromhex(published[0]["key_id"]))
            assert pair is not None and open_request(sealed, pair, aad=AAD).body == b"prompt"
