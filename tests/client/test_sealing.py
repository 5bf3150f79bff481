"""The client's sealing, sans network: a request sealed for verified workers opens only at one of
them under the same routing fields, and the answer's frames open only in order and complete."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cocoon import net, tee, wire
from cocoon.client.dashboard import client_snapshot
from cocoon.client.sealing import Sealing, VerifiedWorker, WorkerKeyCache, is_stale_keys_refusal
from cocoon.e2ee import MAX_BODY_SIZE, SealKeyPair, Suite
from cocoon.oai import ApiError, ErrorKind
from cocoon.worker.sealing import SealedAnswer, SealedRefusal, open_sealed

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "a secret"}]}).encode()
USAGE = wire.Usage(prompt_tokens=3, cached_tokens=0, completion_tokens=2, reasoning_tokens=0)


def _worker(keypair: SealKeyPair, worker_id: str = "w1") -> VerifiedWorker:
    return VerifiedWorker(worker_id, keypair.recipient(worker_id), expires_at=2**40, image_hash="")


class _Listed:
    """A cache whose verification already happened: the workers it was given."""

    def __init__(self, workers: list[VerifiedWorker]) -> None:
        self.workers_listed = workers

    async def workers(self, model: str) -> list[VerifiedWorker]:
        return self.workers_listed

    def forget(self, model: str) -> None:
        self.workers_listed = []

    def cached(self) -> dict[str, list[VerifiedWorker]]:
        return {"m": self.workers_listed}


def _sealing(mode: str, workers: list[VerifiedWorker]) -> Sealing:
    return Sealing(mode, _Listed(workers))  # type: ignore[arg-type]


def _request(body: bytes, meta: Mapping[str, Any], *, max_tokens: int = 50, model: str = "m") -> wire.Request:
    return wire.Request(
        stream_id=1,
        endpoint="/v1/chat/completions",
        model=model,
        body=body,
        max_coefficient=1000,
        max_tokens=max_tokens,
        timeout=10.0,
        request_id=secrets.token_bytes(32),
        meta=dict(meta),
    )


async def _sealed(keys: list[SealKeyPair]) -> tuple[Any, wire.Request]:
    sealing = _sealing("auto", [_worker(k, f"w{i}") for i, k in enumerate(keys)])
    call = await sealing.seal(endpoint="/v1/chat/completions", model="m", max_tokens=50, body=BODY, meta={})
    assert call is not None
    return call, _request(call.body, {"e2ee": {"v": 1, "id": call.meta["e2ee"]["id"]}})


def _end(answer: SealedAnswer) -> wire.ResponseEnd:
    return wire.ResponseEnd(stream_id=1, usage=USAGE, meta={"e2ee": answer.end_meta(USAGE)})


async def test_a_sealed_request_opens_at_any_candidate_and_the_answer_opens_in_order() -> None:
    keys = [SealKeyPair.generate(Suite.HYBRID), SealKeyPair.generate(Suite.CLASSICAL)]
    call, request = await _sealed(keys)
    assert b"a secret" not in call.body
    assert set(call.meta["e2ee"]["key_ids"]) == {k.key_id.hex() for k in keys}
    for key in keys:  # either worker can open it: the proxy may route or retry to either
        answer = open_sealed(request, {key.key_id: key}.get)
        assert answer.body == BODY
    frames = [answer.seal(b"data: one\n\n"), answer.seal(b"data: two\n\n")]
    assert [call.open(f) for f in frames] == [b"data: one\n\n", b"data: two\n\n"]
    record = call.finish(_end(answer))
    assert call.complete and record["frames"] == 3 and record["complete"]


@pytest.mark.parametrize(
    "routing", [{"max_tokens": 51}, {"model": "other"}], ids=["max_tokens changed", "model changed"]
)
async def test_a_routing_field_changed_on_the_way_is_refused_by_the_worker(routing: dict[str, Any]) -> None:
    key = SealKeyPair.generate()
    call, _ = await _sealed([key])
    changed = _request(call.body, {"e2ee": {"v": 1, "id": call.meta["e2ee"]["id"]}}, **routing)
    with pytest.raises(SealedRefusal) as refused:
        open_sealed(changed, {key.key_id: key}.get)
    assert refused.value.code is wire.ErrorCode.BAD_REQUEST


async def test_a_worker_without_the_keys_refuses_with_the_stale_keys_phrase() -> None:
    _, request = await _sealed([SealKeyPair.generate()])
    with pytest.raises(SealedRefusal) as refused:
        open_sealed(request, lambda _key_id: None)
    assert refused.value.code is wire.ErrorCode.UNAVAILABLE  # the proxy retries another worker
    error = wire.StreamError(stream_id=1, code=refused.value.code, message=refused.value.message)
    assert is_stale_keys_refusal(error)


def _tampered(frames: list[bytes], how: str) -> list[bytes]:
    if how == "flipped":
        broken = bytearray(frames[1])
        broken[-1] ^= 1
        return [frames[0], bytes(broken), frames[2]]
    if how == "reordered":
        return [frames[0], frames[2], frames[1]]
    if how == "dropped":
        return [frames[0], frames[2]]
    return [frames[0], frames[0], frames[1]]  # duplicated (replayed)


@pytest.mark.parametrize("how", ["flipped", "reordered", "dropped", "duplicated"])
async def test_a_tampered_answer_is_refused_at_the_first_bad_frame(how: str) -> None:
    key = SealKeyPair.generate()
    call, request = await _sealed([key])
    answer = open_sealed(request, {key.key_id: key}.get)
    frames = [answer.seal(f"part {i}".encode()) for i in range(3)]
    opened = []
    with pytest.raises(ApiError) as refused:
        for frame in _tampered(frames, how):
            opened.append(call.open(frame))
    assert refused.value.kind is ErrorKind.UPSTREAM_FAILED
    assert "failed authentication" in refused.value.message
    assert opened == [b"part 0"]  # nothing past the failure point
    assert not call.complete


async def test_an_answer_without_its_end_marker_or_with_another_is_refused() -> None:
    key = SealKeyPair.generate()
    call, request = await _sealed([key])
    answer = open_sealed(request, {key.key_id: key}.get)
    call.open(answer.seal(b"part 0"))
    truncated = wire.ResponseEnd(stream_id=1, usage=USAGE, meta={})
    with pytest.raises(ApiError, match="end marker"):
        call.finish(truncated)
    # An end marker from another answer (another request's keys) does not open either.
    other_call, other_request = await _sealed([key])
    other = open_sealed(other_request, {key.key_id: key}.get)
    with pytest.raises(ApiError, match="failed authentication"):
        call.finish(_end(other))
    assert not call.complete and other_call.opener.frames == 0


async def test_modes_decide_between_sealed_plain_and_refused() -> None:
    worker = _worker(SealKeyPair.generate())
    kwargs: dict[str, Any] = {"endpoint": "/v1/chat/completions", "model": "m", "max_tokens": 5, "body": BODY}
    assert await _sealing("off", [worker]).seal(meta={}, **kwargs) is None
    assert await _sealing("auto", []).seal(meta={}, **kwargs) is None  # the allowed fallback
    with pytest.raises(ApiError) as refused:
        await _sealing("required", []).seal(meta={}, **kwargs)
    assert refused.value.kind is ErrorKind.MODEL_UNAVAILABLE
    call = await _sealing("required", [worker]).seal(meta={"region": "eu"}, **kwargs)
    assert call is not None and call.meta["region"] == "eu"  # routing fields stay outside


class _Proxy:
    def __init__(self, answer: Mapping[str, Any]) -> None:
        self.answer = answer
        self.asked = 0

    async def query(self, method: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        assert method == "worker_keys" and params == {"model": "m"}
        self.asked += 1
        return self.answer


async def test_the_cache_uses_only_certificates_its_own_policy_verifies(tmp_path: Path) -> None:
    platform = tee.sim_platform(tmp_path)
    keypair = SealKeyPair.generate()
    backend = tee.make_backend("sim", home=tmp_path, measurements={"image": "cocoon-worker"})
    now = int(time.time())
    good = tee.NodeIdentity.create(backend, now=now, extra_claims={"model": "m", "e2ee": [keypair.claim()]})
    wrong_model = tee.NodeIdentity.create(
        backend, now=now, extra_claims={"model": "other", "e2ee": [keypair.claim()]}
    )
    listed = {
        "workers": [
            {"worker_id": "forged", "certificate": base64.b64encode(b"not a certificate").decode()},
            {"worker_id": "other", "certificate": base64.b64encode(wrong_model.cert_der).decode()},
            {"worker_id": "good", "certificate": base64.b64encode(good.cert_der).decode()},
        ]
    }
    proxy = _Proxy(listed)
    cache = WorkerKeyCache(proxy.query, lambda: tee.AttestationPolicy.sim(platform))
    together = await asyncio.gather(*(cache.workers("m") for _ in range(5)))
    assert proxy.asked == 1 and all(len(w) == 1 for w in together)  # one question for all five
    (worker,) = await cache.workers("m")
    assert worker.worker_id == "good" and worker.key.key_id == keypair.key_id
    await cache.workers("m")
    assert proxy.asked == 1  # cached
    cache.forget("m")
    await cache.workers("m")
    assert proxy.asked == 2
    # Under a policy that allows only another image, nothing verifies: nothing to seal to.
    allow_other = frozenset({b"x" * 32})
    strict = WorkerKeyCache(
        proxy.query, lambda: tee.AttestationPolicy.sim(platform, allowed_image_hashes=allow_other)
    )
    assert await strict.workers("m") == []


async def test_a_proxy_that_does_not_know_worker_keys_means_plain(tmp_path: Path) -> None:
    async def old_proxy(method: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        raise net.QueryFailed(wire.ErrorCode.NOT_FOUND, "unknown query worker_keys")

    platform = tee.sim_platform(tmp_path)
    cache = WorkerKeyCache(old_proxy, lambda: tee.AttestationPolicy.sim(platform))
    assert await cache.workers("m") == []


async def test_a_body_too_large_to_seal_is_refused_not_sent_plain() -> None:
    sealing = _sealing("auto", [_worker(SealKeyPair.generate())])
    huge = b"x" * (MAX_BODY_SIZE + 1)
    with pytest.raises(ApiError) as refused:
        await sealing.seal(endpoint="/v1/chat/completions", model="m", max_tokens=5, body=huge, meta={})
    assert refused.value.kind is ErrorKind.REQUEST_TOO_LARGE


def test_the_dashboard_shows_which_answers_were_sealed() -> None:
    page = client_snapshot(
        {"state": "running"}, [{"time": 1.0, "sealed": True}, {"time": 2.0, "sealed": False}]
    )
    (receipts,) = [t for t in page.tables if t.columns[-1] == "sealed"]
    assert [row.cells[-1].value for row in receipts.rows] == ["no", "yes"]  # newest first
