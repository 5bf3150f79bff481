"""The root's market terms (service classes, collateral), its governed code upgrade and proxy entries
with separate worker and client addresses, on the real TVM."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pytoniq_core import Cell, begin_cell

from cocoon.chain import (
    DEFAULT_COLLATERAL,
    DEFAULT_SERVICE_CLASSES,
    Collateral,
    MessageError,
    ProxyEntry,
    ServiceClass,
    decode_body,
    load_contract,
    parse_root_state,
)
from cocoon.chain import network as net
from cocoon.chain.errors import TransactionFailed
from cocoon.chain.governance import check_root_migration, upgrade_root_code
from cocoon.chain.market_cells import class_name_key
from cocoon.chain.messages import ExitCode, Op, RootState, root_body

TON = net.TON
ROUND2_ROOT = Path(__file__).parent / "data" / "root_round2.json"


def expect_exit(code):
    return pytest.raises(TransactionFailed, match=f"exit code {int(code)}")


async def config(world):
    return await net.fetch_root_config(world.chain, world.root)


async def send_raw(world, body: Cell, sender=None):
    w = sender or world.owner
    return net.ensure_success(await w.transfer(world.root, net.OP_VALUE, body), world.root)


async def test_a_root_without_terms_gives_the_defaults(world):
    cfg = await config(world)
    assert cfg.service_classes == DEFAULT_SERVICE_CLASSES and cfg.collateral == DEFAULT_COLLATERAL
    held, stake, window, slash = await world.chain.run_get_method(world.root, "collateral_terms")
    assert (held, stake, window, slash) == (0, 0, 3600, 1000)
    assert (await world.chain.run_get_method(world.root, "service_class", [class_name_key("premium")]))[
        0
    ] == 0


async def test_owner_sets_and_removes_classes_and_collateral(world):
    v = (await config(world)).version
    gold = ServiceClass(
        name="gold",
        price_multiplier=2500,
        target_ttft_ms=800,
        min_tokens_per_s=40,
        max_retries=4,
        min_success_rate_permille=990,
    )
    await net.send_root_op(world.owner, world.root, Op.SET_SERVICE_CLASS, service_class=gold)
    await net.send_root_op(
        world.owner, world.root, Op.SET_SERVICE_CLASS, service_class=DEFAULT_SERVICE_CLASSES["elastic"]
    )
    col = Collateral(min_worker_stake=5 * TON, dispute_window_s=7200, max_slash_permille=300)
    await net.send_root_op(world.owner, world.root, Op.SET_COLLATERAL, collateral=col)
    cfg = await config(world)
    assert cfg.version == v + 3
    assert dict(cfg.service_classes) == {"elastic": DEFAULT_SERVICE_CLASSES["elastic"], "gold": gold}
    assert cfg.collateral == col
    assert await world.chain.run_get_method(world.root, "service_class", [class_name_key("gold")]) == [
        -1,
        2500,
        800,
        40,
        4,
        990,
    ]
    assert await world.chain.run_get_method(world.root, "collateral_terms") == [-1, 5 * TON, 7200, 300]
    # re-setting a class replaces it; removing one leaves the others
    await net.send_root_op(world.owner, world.root, Op.REMOVE_SERVICE_CLASS, name="elastic")
    assert set((await config(world)).service_classes) == {"gold"}
    with expect_exit(ExitCode.NOT_FOUND):
        await net.send_root_op(world.owner, world.root, Op.REMOVE_SERVICE_CLASS, name="elastic")
    # params_version is for contract code and prices: market terms do not force redeploys
    assert (await config(world)).params_version == cfg.params_version


async def test_market_refusals_change_nothing(world):
    before = (await world.chain.get_account(world.root)).data.hash
    stranger = await world.wallet()
    with expect_exit(ExitCode.NOT_OWNER):
        await send_raw(world, root_body(Op.SET_COLLATERAL, collateral=Collateral()), stranger)
    terms = dict(price=1000, ttft=0, tps=0, retries=17, success=0)

    def cls(name_key: int, **kw: int) -> Cell:
        t = {**terms, **kw}
        b = begin_cell().store_uint(Op.SET_SERVICE_CLASS, 32).store_uint(0, 64).store_uint(name_key, 128)
        b.store_uint(t["price"], 32).store_uint(t["ttft"], 32).store_uint(t["tps"], 32)
        return b.store_uint(t["retries"], 8).store_uint(t["success"], 16).end_cell()

    with expect_exit(ExitCode.BAD_ARGUMENT):  # 17 retries
        await send_raw(world, cls(class_name_key("x")))
    with expect_exit(ExitCode.BAD_ARGUMENT):  # upper case name
        await send_raw(world, cls(int.from_bytes(b"Gold".ljust(16, b"\0"), "big"), retries=1))
    with expect_exit(ExitCode.BAD_ARGUMENT):  # a gap in the name
        await send_raw(world, cls(int.from_bytes(b"ab\0c".ljust(16, b"\0"), "big"), retries=1))
    with expect_exit(ExitCode.BAD_ARGUMENT):  # success rate above 1000 ‰
        await send_raw(world, cls(class_name_key("x"), retries=1, success=1001))
    bad_col = (
        begin_cell()
        .store_uint(Op.SET_COLLATERAL, 32)
        .store_uint(0, 64)
        .store_coins(0)
        .store_uint(60, 32)
        .store_uint(1001, 16)
        .end_cell()
    )
    with expect_exit(ExitCode.BAD_ARGUMENT):
        await send_raw(world, bad_col)
    assert (await world.chain.get_account(world.root)).data.hash == before
    with pytest.raises(ValueError):
        Collateral(max_slash_permille=1001)
    with pytest.raises(MessageError):
        root_body(Op.REMOVE_SERVICE_CLASS, name="Not A Name")


def test_market_bodies_and_init_data_round_trip():
    gold = ServiceClass(name="gold", price_multiplier=2000, max_retries=3)
    d = decode_body(root_body(Op.SET_SERVICE_CLASS, 5, service_class=gold))
    assert d.op == Op.SET_SERVICE_CLASS and d.query_id == 5 and d.fields["service_class"] == gold
    col = Collateral(min_worker_stake=7, dispute_window_s=9, max_slash_permille=11)
    assert decode_body(root_body(Op.SET_COLLATERAL, collateral=col)).fields["collateral"] == col
    owner = net.Address("0:" + "a1" * 32)
    data = RootState.init_data(owner, net.default_params(), service_classes={"gold": gold}, collateral=col)
    st = parse_root_state(data)
    assert dict(st.market.service_classes) == {"gold": gold} and st.market.collateral == col
    plain = parse_root_state(RootState.init_data(owner, net.default_params()))
    assert plain.market.service_classes == DEFAULT_SERVICE_CLASSES and not plain.market.classes_held


# ---------------------------------------------------------------- governed code upgrade


async def test_upgrade_keeps_the_state_and_bumps_the_version(world):
    await net.send_root_op(
        world.owner, world.root, Op.SET_COLLATERAL, collateral=Collateral(dispute_window_s=9)
    )
    before = await config(world)
    code = load_contract("root").code
    await upgrade_root_code(world.owner, world.root, code)
    after = await config(world)
    assert after.version == before.version + 1
    assert (after.models, after.registered_proxies, after.collateral, after.params) == (
        before.models,
        before.registered_proxies,
        before.collateral,
        before.params,
    )
    # the root still works under the new code
    await net.send_root_op(world.owner, world.root, Op.ADD_WORKER_TYPE, hash=b"\x09" * 32)
    assert b"\x09" * 32 in (await config(world)).worker_image_hashes


async def test_upgrade_with_a_migration_replaces_code_and_data(world):
    """Down to the previous round's root code, migrating the data to its layout (no market ref)."""
    doc = json.loads(ROUND2_ROOT.read_text())
    old_code = Cell.one_from_boc(base64.b64decode(doc["codeBoc64"]))
    acc = await world.chain.get_account(world.root)
    current = parse_root_state(acc.data)
    s = acc.data.begin_parse()
    owner, _ = s.load_address(), s.load_uint(32)
    migration = (
        begin_cell()
        .store_address(owner)
        .store_uint(current.version + 1, 32)
        .store_ref(s.load_ref())
        .store_ref(s.load_ref())
        .end_cell()
    )
    stale = begin_cell().store_address(owner).store_uint(current.version, 32).end_cell()
    with pytest.raises(MessageError, match="must be"):
        check_root_migration(current, stale)
    with expect_exit(ExitCode.BAD_ARGUMENT):  # the contract refuses it as well
        await net.send_root_op(world.owner, world.root, Op.UPGRADE_CODE, code=old_code, migration=stale)
    await upgrade_root_code(world.owner, world.root, old_code, migration=migration)
    acc = await world.chain.get_account(world.root)
    assert acc.code.hash == old_code.hash and acc.data.hash == migration.hash
    assert await world.chain.run_get_method(world.root, "get_root_version") == [current.version + 1]
    assert (await config(world)).models == current.models


async def test_a_stranger_cannot_upgrade(world):
    stranger = await world.wallet()
    before = await world.chain.get_account(world.root)
    with expect_exit(ExitCode.NOT_OWNER):
        await net.send_root_op(stranger, world.root, Op.UPGRADE_CODE, code=load_contract("wallet").code)
    with pytest.raises(MessageError, match="not the root owner"):
        await upgrade_root_code(stranger, world.root, load_contract("wallet").code)
    after = await world.chain.get_account(world.root)
    assert (after.code.hash, after.data.hash) == (before.code.hash, before.data.hash)


# ---------------------------------------------------------------- proxy entries


async def test_proxy_entries_name_worker_and_client_addresses(world):
    await net.send_root_op(
        world.owner, world.root, Op.REGISTER_PROXY, address="10.0.0.2:9001 proxy.example:443"
    )
    cfg = await config(world)
    assert cfg.proxy_entries == (
        ProxyEntry(1, "127.0.0.1:8800", "127.0.0.1:8800"),  # an old one-address entry: both the same
        ProxyEntry(2, "10.0.0.2:9001", "proxy.example:443"),
    )
    for bad in (b" a:1", b"a:1 ", b"a:1  b:2", b"a:1 b:2 c:3", b"a:\x01"):
        body = (
            begin_cell()
            .store_uint(Op.REGISTER_PROXY, 32)
            .store_uint(0, 64)
            .store_uint(0, 1)
            .store_uint(len(bad), 7)
            .store_bytes(bad)
            .end_cell()
        )
        with expect_exit(ExitCode.BAD_ARGUMENT):
            await send_raw(world, body)
        with pytest.raises(MessageError):
            root_body(Op.REGISTER_PROXY, address=bad.decode())
    assert (await config(world)).last_proxy_seqno == 2
    # what the services dial from these entries: workers the first address, clients the second
    from cocoon.node.trust import registered_proxy_addresses

    texts = [text for _seqno, text in cfg.registered_proxies]
    assert registered_proxy_addresses(texts, for_workers=True) == ["127.0.0.1:8800", "10.0.0.2:9001"]
    assert registered_proxy_addresses(texts, for_workers=False) == ["127.0.0.1:8800", "proxy.example:443"]


def test_class_histories_match_a_model():
    """Random set / remove / collateral histories on one root: the parsed terms equal a dict model,
    refusals (removing what is not held, bad bounds) change nothing."""
    import asyncio

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from cocoon.chain import KeyPair, LocalChain

    loop = asyncio.new_event_loop()
    chain = LocalChain()
    h = loop.run_until_complete(
        net.bootstrap_local_network(
            chain,
            owner=KeyPair.generate(),
            proxy_image_hashes=[],
            worker_image_hashes=[],
            models={},
            proxy_addresses=[],
        )
    )
    model: dict[str, ServiceClass] = {}
    terms = [DEFAULT_COLLATERAL]
    names = st.sampled_from(["a", "premium", "elastic", "z9_-"])
    classes = st.builds(
        ServiceClass, name=names, price_multiplier=st.integers(0, 10**6), max_retries=st.integers(0, 16)
    )
    collaterals = st.builds(
        Collateral,
        min_worker_stake=st.integers(0, 10 * TON),
        dispute_window_s=st.integers(0, 31_536_000),
        max_slash_permille=st.integers(0, 1000),
    )
    step = st.one_of(
        st.tuples(st.just("set"), classes),
        st.tuples(st.just("remove"), names),
        st.tuples(st.just("col"), collaterals),
    )

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(history=st.lists(step, min_size=1, max_size=6))
    def prop(history: list) -> None:  # type: ignore[type-arg]
        async def go() -> None:
            for kind, arg in history:
                if kind == "set":
                    body, expect_ok = root_body(Op.SET_SERVICE_CLASS, service_class=arg), True
                elif kind == "remove":
                    body, expect_ok = root_body(Op.REMOVE_SERVICE_CLASS, name=arg), arg in model
                else:
                    body, expect_ok = root_body(Op.SET_COLLATERAL, collateral=arg), True
                trace = await h.owner.transfer(h.root, net.OP_VALUE, body)
                assert next(t for t in trace if t.address == h.root).success == expect_ok
                if expect_ok and kind == "set":
                    model[arg.name] = arg
                elif expect_ok and kind == "remove":
                    del model[arg]
                elif kind == "col":
                    terms[0] = arg
                cfg = await net.fetch_root_config(chain, h.root)
                assert dict(cfg.service_classes) == (model or dict(DEFAULT_SERVICE_CLASSES))
                assert cfg.service_classes_held == bool(model) and cfg.collateral == terms[0]

        loop.run_until_complete(go())

    try:
        prop()
    finally:
        chain.close()
        loop.close()
