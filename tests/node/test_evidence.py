"""Fresh evidence for /v1/attestation: signed by the attested key over the nonce and the claims,
with a fresh quote whose report data covers them; replayed, stale or foreign answers are refused."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cocoon import net, tee, wire
from cocoon.node.evidence import (
    DOMAIN,
    EvidenceError,
    _canonical,
    answer_challenge,
    check_evidence,
    collect_evidence,
    sign_evidence,
    verify_evidence,
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> tee.SimPlatform:
    return tee.sim_platform(tmp_path_factory.mktemp("sim"))


def _node(platform: tee.SimPlatform, image: str) -> tee.NodeIdentity:
    return tee.NodeIdentity.create(platform.backend({"image": image}), now=int(time.time()))


def _attested(platform: tee.SimPlatform, node: tee.NodeIdentity) -> tee.PeerAttestation:
    """What a challenger saw on its RA-TLS link to ``node``."""
    return tee.AttestationPolicy.sim(platform).verify_certificate(node.cert_der, now=int(time.time()))


def test_evidence_verifies_with_the_attested_key_and_a_fresh_quote(platform: tee.SimPlatform) -> None:
    node = _node(platform, "cocoon-proxy")
    seen = _attested(platform, node)
    now = int(time.time())
    evidence = sign_evidence(node, nonce="n-1", now=now, claims={"role": "proxy"})
    assert "quote" in evidence["claims"]  # the simulated TD quotes, as TDX does
    claims = verify_evidence(
        evidence,
        nonce="n-1",
        public_key=seen.public_key,
        now=now,
        policy=tee.AttestationPolicy.sim(platform),
        attested_image=seen.image_hash,
    )
    assert claims["role"] == "proxy" and claims["public_key"] == node.public_key.hex()
    assert check_evidence(evidence, nonce="n-1", public_key_hex=seen.public_key.hex(), now=now) == (True, "")


def test_replayed_stale_or_foreign_answers_are_refused(platform: tee.SimPlatform) -> None:
    node, other = _node(platform, "cocoon-proxy"), _node(platform, "cocoon-worker")
    key = _attested(platform, node).public_key
    now = int(time.time())
    old = sign_evidence(node, nonce="yesterday", now=now)
    with pytest.raises(EvidenceError, match="another nonce"):
        verify_evidence(old, nonce="today", public_key=key, now=now)
    with pytest.raises(EvidenceError, match="fresh"):
        verify_evidence(old, nonce="yesterday", public_key=key, now=now + tee.CLOCK_SKEW_S + 1)
    with pytest.raises(EvidenceError, match="attested key"):
        verify_evidence(sign_evidence(other, nonce="today", now=now), nonce="today", public_key=key, now=now)
    tampered = {"claims": {**old["claims"], "nonce": "today"}, "signature": old["signature"]}
    with pytest.raises(EvidenceError, match="attested key"):
        verify_evidence(tampered, nonce="today", public_key=key, now=now)


def test_a_quote_that_does_not_cover_the_claims_or_comes_from_another_image_is_refused(
    platform: tee.SimPlatform,
) -> None:
    node, other = _node(platform, "cocoon-proxy"), _node(platform, "cocoon-worker")
    seen = _attested(platform, node)
    policy = tee.AttestationPolicy.sim(platform)
    now = int(time.time())
    # The node's own key signs, but the quote was made for another challenge.
    stale_quote = sign_evidence(node, nonce="first", now=now)["claims"]["quote"]
    claims = {**sign_evidence(node, nonce="second", now=now)["claims"], "quote": stale_quote}
    resigned = {"claims": claims, "signature": node.private_key.sign(DOMAIN + _canonical(claims)).hex()}
    with pytest.raises(EvidenceError, match="challenge"):
        verify_evidence(resigned, nonce="second", public_key=seen.public_key, now=now, policy=policy)
    # A fresh quote from another image, wrapped in the attested key's signature.
    foreign = sign_evidence(other, nonce="x", now=now)["claims"]
    mixed_claims = {**foreign, "public_key": node.public_key.hex()}
    del mixed_claims["quote"]
    mixed_claims["quote"] = (
        __import__("base64")
        .b64encode(
            other.backend.quote(__import__("cocoon.node.evidence", fromlist=["_"])._report_data(mixed_claims))
        )
        .decode()
    )
    mixed = {
        "claims": mixed_claims,
        "signature": node.private_key.sign(DOMAIN + _canonical(mixed_claims)).hex(),
    }
    with pytest.raises(EvidenceError, match="another image"):
        verify_evidence(
            mixed,
            nonce="x",
            public_key=seen.public_key,
            now=now,
            policy=policy,
            attested_image=seen.image_hash,
        )


class _Worker(net.NullHandler):
    def __init__(self, identity: tee.NodeIdentity) -> None:
        self.identity = identity

    async def on_query(
        self, conn: net.NodeConnection, method: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if method == "attestation":
            return await answer_challenge(
                self.identity, params, now=int(time.time()), claims={"role": "worker"}
            )
        return await super().on_query(conn, method, params)


async def test_the_proxy_collects_each_workers_evidence_for_the_apps_nonce(
    platform: tee.SimPlatform, tmp_path: Path
) -> None:
    worker = _node(platform, "cocoon-worker")
    proxy_side, worker_side = await net.memory_pair(
        dialer_role=wire.Role.PROXY,
        dialer_info={},
        dialer_handler=net.NullHandler(),
        acceptor_role=wire.Role.WORKER,
        acceptor_info={},
        acceptor_handler=_Worker(worker),
        acceptor_attestation=_attested(platform, worker),
    )
    try:
        found = await collect_evidence({"w1": proxy_side}, "app-nonce")
        key = proxy_side.peer.attestation.public_key  # type: ignore[attr-defined]
        claims = verify_evidence(found["w1"], nonce="app-nonce", public_key=key, now=time.time())
        assert claims["role"] == "worker"
        with pytest.raises(net.QueryFailed, match="nonce"):
            await proxy_side.query("attestation", {"nonce": "not a nonce!"})
    finally:
        await proxy_side.aclose()
        await worker_side.aclose()


def test_check_evidence_verifies_the_quote_when_given_a_policy(platform: tee.SimPlatform) -> None:
    worker, proxy = _node(platform, "cocoon-worker"), _node(platform, "cocoon-proxy")
    assert worker.image_hash is not None and proxy.image_hash is not None
    now = int(time.time())
    evidence = sign_evidence(worker, nonce="n", now=now)
    policy = tee.AttestationPolicy.sim(platform)
    key = worker.public_key.hex()
    good = check_evidence(
        evidence,
        nonce="n",
        public_key_hex=key,
        now=now,
        policy=policy,
        attested_image_hex=worker.image_hash.hex(),
    )
    assert good == (True, "")
    ok, why = check_evidence(
        evidence,
        nonce="n",
        public_key_hex=key,
        now=now,
        policy=policy,
        attested_image_hex=proxy.image_hash.hex(),
    )
    assert not ok and "another image" in why
    unquoted = {k: v for k, v in evidence["claims"].items() if k != "quote"}
    bare = {"claims": unquoted, "signature": worker.private_key.sign(DOMAIN + _canonical(unquoted)).hex()}
    ok, why = check_evidence(bare, nonce="n", public_key_hex=key, now=now, policy=policy)
    assert not ok and "needs a fresh quote" in why
