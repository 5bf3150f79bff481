"""``/v1/attestation`` checks the proxy's and workers' evidence against the nonce it was asked."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from cocoon import tee
from cocoon.client.attestation import attestation_report
from cocoon.node.evidence import answer_challenge
from cocoon.oai import ApiError


def _identity() -> tee.NodeIdentity:
    return tee.NodeIdentity.create(tee.make_backend("none"), now=int(time.time()))


@dataclass
class _Attested:
    identity: tee.NodeIdentity

    def to_json(self) -> dict[str, Any]:
        return {"public_key": self.identity.public_key.hex(), "image_hash": None}


@dataclass
class _Peer:
    attestation: _Attested
    address: str = "memory:proxy"


@dataclass
class _Link:
    peer: _Peer


@dataclass
class _FakeProxy:
    """Answers like a proxy that signs with ``signer`` (its own key, or an impostor's)."""

    attested: tee.NodeIdentity
    signer: tee.NodeIdentity
    worker: tee.NodeIdentity = field(default_factory=_identity)
    replay_nonce: str | None = None

    def link(self) -> Any:
        return _Link(_Peer(_Attested(self.attested)))

    async def query(self, method: str, params: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        asked = {"nonce": self.replay_nonce or (params or {})["nonce"]}
        now = int(time.time())
        worker = {
            "worker_id": "w0",
            "attestation": {"public_key": self.worker.public_key.hex()},
            **(await answer_challenge(self.worker, asked, now=now)),
        }
        return {**(await answer_challenge(self.signer, asked, now=now)), "workers": [worker]}

    def attestation_policy(self) -> tee.AttestationPolicy | None:
        return None


async def test_evidence_signed_by_the_attested_keys_for_this_nonce_is_bound() -> None:
    proxy = _identity()
    report = await attestation_report(_FakeProxy(proxy, proxy), "nonce-1")  # type: ignore[arg-type]
    assert report["nonce"] == "nonce-1"
    assert report["proxy"]["nonce_bound"] is True and report["proxy"]["nonce_problem"] == ""
    assert report["proxy_report"]["workers"][0]["nonce_bound"] is True


async def test_replayed_or_foreign_evidence_is_not_bound() -> None:
    proxy = _identity()
    replayed = await attestation_report(_FakeProxy(proxy, proxy, replay_nonce="old"), "nonce-2")  # type: ignore[arg-type]
    assert replayed["proxy"]["nonce_bound"] is False and "nonce" in replayed["proxy"]["nonce_problem"]
    assert replayed["proxy_report"]["workers"][0]["nonce_bound"] is False
    impostor = await attestation_report(_FakeProxy(proxy, _identity()), "nonce-3")  # type: ignore[arg-type]
    assert impostor["proxy"]["nonce_bound"] is False and "attested key" in impostor["proxy"]["nonce_problem"]


async def test_a_bad_nonce_is_refused() -> None:
    proxy = _identity()
    with pytest.raises(ApiError) as info:
        await attestation_report(_FakeProxy(proxy, proxy), "<script>")  # type: ignore[arg-type]
    assert info.value.status == 400 and info.value.param == "nonce"
