"""Time-budgeted mutation campaigns over every parser of outside input (see ``campaign.py``).

Valid inputs are mutated; each parser must return or raise its package's own error, never anything else.
About 16 s in CI (4 s per target); ``COCOON_LONG_FUZZ=1 COCOON_FUZZ_SECONDS=600`` for a long campaign.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytoniq_core.boc.address import Address
from pytoniq_core.boc.cell import Cell

from cocoon import chain, tee, wire
from cocoon.chain.messages import Op, client_body, proxy_body, root_body
from cocoon.chain.wallet import KeyPair
from cocoon.wire import NEED_DATA, Connection, Hello, Role, StreamError

from .campaign import Target, budget_seconds, run_campaign

pytestmark = [
    pytest.mark.fuzz,
    # Mutated serial numbers: cryptography warns before it rejects them in a future release.
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]

NOW = 1_760_000_000
QUOTE = (Path(__file__).resolve().parents[1] / "fixtures" / "tee" / "cocoon_quote.dat").read_bytes()
ADDR = Address("0:" + "11" * 32)


# ---------------------------------------------------------------- wire


def _request(stream_id: int) -> wire.Request:
    return wire.Request(
        stream_id=stream_id,
        endpoint="/v1/chat/completions",
        model="m",
        body=b'{"messages": []}',
        max_coefficient=4000,
        max_tokens=64,
        timeout=30.0,
        request_id=bytes(32),
        meta={"region": "eu"},
    )


def _hello(role: Role) -> Hello:
    return Hello(role=role, min_version=1, max_version=1, info={"model": "m"})


def _wire_messages() -> list[wire.Message]:
    """What a client may send after the handshake: requests, cancels, queries, pings, goodbyes."""
    return [
        _request(1),
        wire.Cancel(stream_id=1, reason="x"),
        wire.Query(query_id=1, method="balance", params={"a": [1, 2]}),
        wire.Ping(nonce=7),
        wire.Notify(method="n", params={}),
        wire.Goodbye(reason="bye"),
    ]


def _wire_seeds() -> list[bytes]:
    frames = [wire.encode_frame(msg) for msg in _wire_messages()]
    # Every prefix of the conversation is a valid input on its own.
    return [b"".join(frames[: i + 1]) for i in range(len(frames))]


def _feed_proxy_side(data: bytes) -> None:
    """A proxy-side connection after a good handshake reads ``data`` as if the client had sent it."""
    client = Connection(our_role=Role.CLIENT, dialer=True)
    proxy = Connection(our_role=Role.PROXY, dialer=False)
    proxy.receive_data(client.send(_hello(Role.CLIENT)))
    while proxy.next_event() is not NEED_DATA:
        pass
    client.receive_data(proxy.send(_hello(Role.PROXY)) + proxy.send(wire.HelloAck(version=1, info={})))
    proxy.receive_data(data)
    for _ in range(10_000):
        event = proxy.next_event()
        if event is NEED_DATA or isinstance(event, wire.ConnectionClosed):
            return
        if isinstance(event, wire.Request):  # answer it, as the proxy would
            proxy.send(StreamError(stream_id=event.stream_id, code=wire.ErrorCode.BUSY, message="no"))
    raise AssertionError("connection produced 10000 events from one input")


def _wire_payload(data: bytes) -> None:
    wire.decode_payload(data)


# ---------------------------------------------------------------- tee


def _cert_seed(home: Path) -> tuple[bytes, tee.SimPlatform]:
    platform = tee.sim_platform(home)
    identity = tee.NodeIdentity.create(platform.backend({"image": "w"}), now=NOW, extra_claims={"role": "w"})
    return identity.cert_der, platform


# ---------------------------------------------------------------- chain


def _chain_seeds() -> list[bytes]:
    key = KeyPair.from_seed(bytes(range(32)))
    cells: list[Cell] = [
        root_body(Op.ADD_MODEL_TYPE, 1, hash=bytes(32), name="m"),
        root_body(Op.CHANGE_PRICE, 2, price_per_token=10, worker_fee_per_token=5),
        root_body(Op.REGISTER_PROXY, 3, address="127.0.0.1:1"),
        client_body(Op.CLIENT_TOP_UP, 4, amount=10**9, excess=ADDR),
        proxy_body(Op.CLIENT_PAYMENT, 5, amount=7),
        chain.sign(key, Op.CLIENT_CHARGE_SIGNED, target=ADDR, counter=9).body(ADDR),
        chain.sign_state_commit(key, target=ADDR, seqno=3, session_hash=bytes(32)).body(),
    ]
    return [c.to_boc() for c in cells]  # type: ignore[no-untyped-call]


_CHAIN_PARSERS = (
    chain.decode_body,
    chain.parse_signed,
    chain.parse_root_state,
    chain.parse_proxy_state,
    chain.parse_client_state,
    chain.parse_worker_state,
)


def _chain_run(data: bytes) -> None:
    try:
        cell = Cell.one_from_boc(data)
    except Exception:
        return
    refused: chain.MessageError | None = None
    for parse in _CHAIN_PARSERS:
        try:
            parse(cell)
        except chain.MessageError as exc:
            refused = refused or exc
    if refused is not None:  # reported so that the campaign keeps inputs reaching new refusals
        raise refused


# ---------------------------------------------------------------- the campaign


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    cert, platform = _cert_seed(tmp_path_factory.mktemp("sim"))
    original = tee.parse_certificate(cert)
    policy = tee.AttestationPolicy.sim(platform)

    def verify(data: bytes) -> None:
        att = policy.verify_certificate(data, now=NOW)
        # Accepted only if nothing signed changed: same key, same image.
        assert att.public_key == original.public_key

    yield {
        "wire-connection": Target("wire-connection", _wire_seeds(), _feed_proxy_side, (wire.WireError,)),
        "wire-payload": Target(
            "wire-payload",
            [wire.encode_payload(m) for m in _wire_messages()],
            _wire_payload,
            (wire.WireError,),
        ),
        "ratls-certificate": Target(
            "ratls-certificate", [cert], tee.parse_certificate, (tee.AttestationError,)
        ),
        "ratls-verify": Target("ratls-verify", [cert], verify, (tee.AttestationError,)),
        "tdx-quote": Target("tdx-quote", [QUOTE], tee.parse_quote, (tee.AttestationError,)),
        "chain-messages": Target("chain-messages", _chain_seeds(), _chain_run, (chain.MessageError,)),
    }


# Six targets at ~2.5 s each: about 15 s of CI time, as the budget asks.
@pytest.mark.parametrize(
    "name",
    ["wire-connection", "wire-payload", "ratls-certificate", "ratls-verify", "tdx-quote", "chain-messages"],
)
def test_campaign(targets: dict[str, Target], name: str) -> None:
    target = targets[name]
    for seed in target.seeds:  # seeds are well-formed (a chain body still fails the other parsers)
        with contextlib.suppress(chain.MessageError):
            target.run(seed)
    started = time.monotonic()
    result = run_campaign(target, budget_seconds(2.5))
    elapsed = time.monotonic() - started
    print(
        f"\n{name}: {result.executions} executions in {elapsed:.1f}s, {result.accepted} accepted,"
        f" {result.distinct_errors} distinct errors, seed {result.seed}"
    )
    assert result.executions > 50
    assert not result.findings, (
        f"{name} (COCOON_FUZZ_SEED={result.seed}): {result.findings[0].error}\ninput: {result.findings[0].data.hex()}"
    )
