from __future__ import annotations

import os

import pytest
from pytoniq_core import begin_cell

from cocoon.chain import network as net
from cocoon.chain.errors import ChainError, ChainStoreError, MessageError, TransactionFailed
from cocoon.chain.localchain import LocalChain
from cocoon.chain.messages import (
    STATE_CLOSED,
    STATE_CLOSING,
    ExitCode,
    Op,
    parse_proxy_state,
    parse_root_state,
    parse_worker_state,
    root_body,
)
from cocoon.chain.payments import sign, sign_state_commit
from cocoon.chain.wallet import KeyPair

TON = net.TON


def expect_exit(code):
    return pytest.raises(TransactionFailed, match=f"exit code {int(code)}")


async def proxy_state(world):
    return parse_proxy_state((await world.chain.get_account(world.proxy_sc)).data)


async def test_root_config_and_owner_updates(world):
    cfg = await net.fetch_root_config(world.chain, world.root)
    assert cfg.proxy_image_hashes == {b"\x01" * 32}
    assert cfg.worker_image_hashes == {b"\x02" * 32}
    assert cfg.model_hashes == {b"\x03" * 32} and cfg.models == {b"\x03" * 32: "model-3"}
    assert cfg.registered_proxies == ((1, "127.0.0.1:8800"),)
    assert cfg.price_per_token == 1000 and cfg.worker_fee_per_token == 800
    v = cfg.version

    await net.send_root_op(world.owner, world.root, Op.ADD_WORKER_TYPE, hash=b"\x05" * 32)
    await net.send_root_op(world.owner, world.root, Op.ADD_MODEL_TYPE, hash=b"\x06" * 32, name="m6")
    await net.send_root_op(world.owner, world.root, Op.REGISTER_PROXY, address="10.0.0.2:9000")
    await net.send_root_op(world.owner, world.root, Op.DEL_PROXY_TYPE, hash=b"\x01" * 32)
    await net.send_root_op(
        world.owner, world.root, Op.CHANGE_PRICE, price_per_token=2000, worker_fee_per_token=1500
    )
    cfg2 = await net.fetch_root_config(world.chain, world.root)
    assert cfg2.version == v + 5
    assert b"\x05" * 32 in cfg2.worker_image_hashes and cfg2.models[b"\x06" * 32] == "m6"
    assert cfg2.proxy_image_hashes == frozenset()
    assert cfg2.registered_proxies == ((1, "127.0.0.1:8800"), (2, "10.0.0.2:9000"))
    assert cfg2.price_per_token == 2000 and cfg2.params_version == cfg.params_version + 1

    # get-methods agree with the parsed data
    ok = await world.chain.run_get_method(
        world.root, "worker_hash_is_valid", [int.from_bytes(b"\x05" * 32, "big")]
    )
    assert ok == [-1]
    assert await world.chain.run_get_method(world.root, "get_root_version") == [cfg2.version]
    assert await world.chain.run_get_method(world.root, "last_proxy_seqno") == [2]

    stranger = await world.wallet()
    with expect_exit(ExitCode.NOT_OWNER):
        await net.send_root_op(stranger, world.root, Op.ADD_PROXY_TYPE, hash=b"\x09" * 32)
    with expect_exit(ExitCode.NOT_FOUND):
        await net.send_root_op(world.owner, world.root, Op.UNREGISTER_PROXY, seqno=77)
    with expect_exit(ExitCode.BAD_ARGUMENT):
        await net.send_root_op(
            world.owner, world.root, Op.CHANGE_PRICE, price_per_token=1, worker_fee_per_token=2
        )
    assert (await net.fetch_root_config(world.chain, world.root)).version == cfg2.version

    await net.send_root_op(world.owner, world.root, Op.UNREGISTER_PROXY, seqno=1)
    new = net.default_params(price_per_token=5, worker_fee_per_token=4, client_delay_before_close=60)
    await net.send_root_op(world.owner, world.root, Op.CHANGE_PARAMS, params=new)
    cfg3 = await net.fetch_root_config(world.chain, world.root)
    assert cfg3.registered_proxies == ((2, "10.0.0.2:9000"),)
    assert cfg3.client_delay_before_close == 60 and cfg3.params_version == cfg2.params_version + 1


async def test_worker_payout(world):
    # fees first: a client pays 1000 tokens
    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=10 * TON
    )
    await net.post_signed(
        world.client, sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=1000)
    )

    wc = net.worker_contract(world.worker.address, world.proxy_sc, world.proxy_key.public, world.params)
    pay = sign(world.proxy_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=600, query_id=7)
    bal = await world.worker.balance()
    trace = await net.post_signed(world.worker, pay, state_init=wc.state_init)
    earned = 600 * world.params.worker_fee_per_token
    assert any(
        t.address == world.worker.address and t.in_op == Op.PAYOUT and t.value_in == earned for t in trace
    )
    assert parse_worker_state((await world.chain.get_account(wc.address)).data).tokens == 600
    assert (await proxy_state(world)).balance == 1000 * world.params.price_per_token - earned
    assert await world.worker.balance() > bal + earned - net.OP_VALUE

    with expect_exit(ExitCode.NOT_INCREASING):
        await net.post_signed(world.worker, pay)
    last = sign(world.proxy_key, Op.WORKER_LAST_PAYOUT_SIGNED, target=wc.address, counter=700, query_id=8)
    await net.post_signed(world.worker, last)
    ws = parse_worker_state((await world.chain.get_account(wc.address)).data)
    assert ws.state == STATE_CLOSED and ws.tokens == 700
    with expect_exit(ExitCode.BAD_STATE):
        await net.post_signed(
            world.worker, sign(world.proxy_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=900)
        )


async def test_fake_worker_contract_cannot_drain_proxy(world):
    # A worker contract bound to another proxy key computes to a different address: the proxy refuses.
    rogue_key = KeyPair.generate()
    wc = net.worker_contract(world.worker.address, world.proxy_sc, rogue_key.public, world.params)
    pay = sign(rogue_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=10**6)
    before = (await proxy_state(world)).stake
    trace = await net.post_signed(world.worker, pay, state_init=wc.state_init)
    proxy_tx = [t for t in trace if t.address == world.proxy_sc]
    assert proxy_tx and not proxy_tx[0].success and proxy_tx[0].exit_code == ExitCode.NOT_OWNER
    assert (await proxy_state(world)).stake == before
    # the bounce restored the worker contract's counter
    assert parse_worker_state((await world.chain.get_account(wc.address)).data).tokens == 0


async def test_proxy_commit_payout_and_close(world):
    session = os.urandom(32)
    c1 = sign_state_commit(world.proxy_key, target=world.proxy_sc, seqno=5, session_hash=session)
    await net.post_signed(world.proxy_owner, c1)
    st = await proxy_state(world)
    assert (st.commit_seqno, st.session_hash) == (5, session)
    with expect_exit(ExitCode.NOT_INCREASING):
        await net.post_signed(world.proxy_owner, c1)
    with expect_exit(ExitCode.BAD_SIGNATURE):
        await net.post_signed(
            world.proxy_owner,
            sign_state_commit(KeyPair.generate(), target=world.proxy_sc, seqno=6, session_hash=session),
        )

    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=5 * TON
    )
    await net.post_signed(
        world.client, sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=2000)
    )
    fees = 2000 * world.params.price_per_token
    assert (await proxy_state(world)).balance == fees
    stranger = await world.wallet()
    with expect_exit(ExitCode.NOT_OWNER):
        await net.send_proxy_op(stranger, world.proxy_sc, Op.PROXY_PAYOUT)
    trace = await net.send_proxy_op(world.proxy_owner, world.proxy_sc, Op.PROXY_PAYOUT)
    assert any(t.address == world.proxy_owner.address and t.value_in == fees for t in trace)
    assert (await proxy_state(world)).balance == 0

    await net.post_signed(
        world.proxy_owner,
        sign(world.proxy_key, Op.PROXY_CLOSE_REQUEST_SIGNED, target=world.proxy_sc, counter=0),
    )
    assert (await proxy_state(world)).state == STATE_CLOSING
    complete = sign(world.proxy_key, Op.PROXY_CLOSE_COMPLETE_SIGNED, target=world.proxy_sc, counter=0)
    with expect_exit(ExitCode.TOO_EARLY):
        await net.post_signed(world.proxy_owner, complete)
    world.chain.advance(world.params.proxy_delay_before_close)
    await net.post_signed(world.proxy_owner, complete)
    st = await proxy_state(world)
    assert st.state == STATE_CLOSED and st.stake == 0


async def test_full_lifecycle_conserves_value(world):
    chain = world.chain
    price, fee = world.params.price_per_token, world.params.worker_fee_per_token
    payouts: dict[str, int] = {}

    def collect(trace):
        for t in trace:
            if t.in_op == Op.PAYOUT:
                key = t.address.to_str()
                payouts[key] = payouts.get(key, 0) + t.value_in
        return trace

    deposit = 20 * TON
    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=deposit
    )
    wc = net.worker_contract(world.worker.address, world.proxy_sc, world.proxy_key.public, world.params)
    for i, tokens in enumerate((1000, 3000, 7000), start=1):
        msg = sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=tokens, query_id=i)
        collect(await net.post_signed(world.client, msg))
    for tokens in (2000, 6500):
        msg = sign(world.proxy_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=tokens)
        collect(await net.post_signed(world.worker, msg, state_init=wc.state_init))
    collect(await net.send_proxy_op(world.proxy_owner, world.proxy_sc, Op.PROXY_PAYOUT))
    collect(await net.send_client_op(world.client, sc, Op.CLIENT_REQUEST_REFUND))
    chain.advance(world.params.client_delay_before_close)
    collect(await net.send_client_op(world.client, sc, Op.CLIENT_REQUEST_REFUND))
    last = sign(world.proxy_key, Op.WORKER_LAST_PAYOUT_SIGNED, target=wc.address, counter=7000)
    collect(await net.post_signed(world.worker, last))

    # Every nanoTON minted is on some account or went to validators as fees.
    assert chain.totals().conserved
    # Logical money: what the client put in came out exactly as refund + worker pay + proxy fees.
    charged = 7000 * price
    worker_paid = 7000 * fee
    client_refund = payouts[world.client.address.to_str()]
    proxy_fees = payouts[world.proxy_owner.address.to_str()]
    assert client_refund == deposit - charged
    assert payouts[world.worker.address.to_str()] == worker_paid
    # The proxy withdrew its fees (for 6500 paid tokens) before the last worker payout, so the
    # last 500 tokens were paid from its stake: fees + worker pay = charges + stake spent.
    p = await proxy_state(world)
    stake_spent = world.params.min_proxy_stake - p.stake
    assert p.balance == 0 and stake_spent == 500 * fee
    assert proxy_fees == charged - 6500 * fee
    assert proxy_fees + worker_paid == charged + stake_spent
    assert client_refund + charged == deposit


async def test_persistence_across_reopen(tmp_path):
    path = tmp_path / "c.sqlite"
    chain = LocalChain(path)
    owner = KeyPair.generate()
    h = await net.bootstrap_local_network(
        chain,
        owner=owner,
        proxy_image_hashes=[b"\x01" * 32],
        worker_image_hashes=[],
        models={},
        proxy_addresses=[],
    )
    await net.send_root_op(h.owner, h.root, Op.ADD_MODEL_TYPE, hash=b"\x07" * 32, name="m7")
    chain.advance(100)
    n, now, minted = chain.transaction_count(), chain.now_sync(), chain.minted
    chain.close()

    again = LocalChain(path)
    assert (again.transaction_count(), again.now_sync(), again.minted) == (n, now, minted)
    cfg = await net.fetch_root_config(again, h.root)
    assert cfg.models == {b"\x07" * 32: "m7"}
    # idempotent bootstrap reuses the root
    h2 = await net.bootstrap_local_network(
        again,
        owner=owner,
        proxy_image_hashes=[b"\x01" * 32],
        worker_image_hashes=[],
        models={},
        proxy_addresses=[],
    )
    assert h2.root == h.root
    txs = await again.get_transactions(h.root)
    assert len(txs) >= 2 and txs[0].lt > txs[-1].lt
    again.close()


async def test_lean_tx_reader_agrees_with_full_tlb_parse(world):
    from pytoniq_core import Cell
    from pytoniq_core.tlb.transaction import Transaction

    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=3 * TON
    )
    await net.post_signed(world.client, sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=10))
    with pytest.raises(TransactionFailed):
        await net.send_client_op(world.client, sc, Op.CLIENT_WITHDRAW, amount=100 * TON)
    rows = world.chain._db.execute("SELECT address, boc FROM transactions").fetchall()
    assert len(rows) > 15
    for addr, boc in rows:
        rec = await world.chain.get_transactions(net.Address(addr), 1000)
        rec = next(r for r in rec if r.boc == boc)
        full = Transaction.deserialize(Cell.one_from_boc(boc).begin_parse())
        assert rec.lt == full.lt and rec.now == full.now and rec.total_fees == full.total_fees.grams
        assert rec.out_msgs == len(full.out_msgs)
        assert rec.value_out == sum(m.info.value.grams for m in full.out_msgs if m.is_internal)
        assert rec.aborted == full.description.aborted
        cp = full.description.compute_ph
        if cp.type_ != "skipped":
            assert rec.exit_code in (
                cp.exit_code,
                getattr(full.description.action, "result_code", None),
            )
            assert rec.gas_used == cp.gas_used
        if full.in_msg is not None and full.in_msg.is_internal:
            assert rec.value_in == full.in_msg.info.value.grams and rec.bounced_in == full.in_msg.info.bounced
            assert rec.fwd_fee_in == full.in_msg.info.fwd_fee


async def test_local_network_handles_open_everything(tmp_path):
    chain = LocalChain(tmp_path / "n.sqlite")
    h = await net.bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={},
        proxy_addresses=["127.0.0.1:1"],
    )
    proxy_key, proxy_wallet, client_key = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    psc = await h.open_proxy(proxy_key, proxy_wallet)
    assert await h.open_proxy(proxy_key, proxy_wallet) == psc  # idempotent
    csc = await h.open_client(client_key, psc, proxy_key.public, amount=5 * TON)
    assert parse_proxy_state((await chain.get_account(psc)).data).stake == h.config.min_proxy_stake
    w = h.wallet(client_key)
    assert await w.seqno() >= 1
    assert await w.wait_seqno_above(0, poll_s=0) >= 1
    worker = h.worker_contract(w.address, psc, proxy_key.public)
    assert worker.address != csc
    chain.close()


async def test_get_methods_of_every_contract(world):
    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=3 * TON
    )
    await net.post_signed(world.client, sign(world.proxy_key, Op.CLIENT_CHARGE_SIGNED, target=sc, counter=42))
    state, balance, stake, used, _unlock, _secret = await world.chain.run_get_method(sc, "get_client_state")
    assert (state, balance, stake, used) == (
        0,
        3 * TON - 42 * world.params.price_per_token,
        world.params.min_client_stake,
        42,
    )
    p = await world.chain.run_get_method(world.proxy_sc, "get_proxy_state")
    assert p[1] == 42 * world.params.price_per_token and p[2] == world.params.min_proxy_stake
    wc = net.worker_contract(world.worker.address, world.proxy_sc, world.proxy_key.public, world.params)
    await net.post_signed(
        world.worker,
        sign(world.proxy_key, Op.WORKER_PAYOUT_SIGNED, target=wc.address, counter=5),
        state_init=wc.state_init,
    )
    assert await world.chain.run_get_method(wc.address, "get_worker_state") == [0, 5]
    params_cell = (await world.chain.run_get_method(world.root, "get_cur_params"))[0]
    from cocoon.chain.messages import Params

    assert Params.from_cell(params_cell) == world.params
    from cocoon.chain import AccountNotFound

    with pytest.raises(AccountNotFound):
        await world.chain.run_get_method(net.Address("0:" + "99" * 32), "seqno")
    from cocoon.chain import GetMethodError

    with pytest.raises(GetMethodError):
        await world.chain.run_get_method(world.root, "no_such_method")


async def test_two_connections_see_each_others_writes(tmp_path):
    # `cocoon chain` (CLI) and `cocoon up` may open the same file at once.
    path = tmp_path / "shared.sqlite"
    a, b = LocalChain(path), LocalChain(path)
    w = net.WalletClient(a, net.Wallet(KeyPair.generate()))
    await a.faucet(w.address, 5 * TON)
    assert (await b.get_account(w.address)).balance == 5 * TON  # b caches it now
    await b.faucet(w.address, 1 * TON)
    assert (await a.get_account(w.address)).balance == 6 * TON  # a's cache was invalidated
    await a.faucet(w.address, 1 * TON)
    assert (await b.get_account(w.address)).balance == 7 * TON
    assert a.minted == b.minted == 7 * TON
    a.close()
    b.close()


async def test_failed_trace_rolls_back_everything(tmp_path, monkeypatch):
    chain = LocalChain(tmp_path / "r.sqlite")
    src = net.WalletClient(chain, net.Wallet(KeyPair.generate()))
    dst = net.WalletClient(chain, net.Wallet(KeyPair.generate()))
    await chain.faucet(src.address, 5 * TON)
    n, lt_before = chain.transaction_count(), chain._meta("lt")
    before = await src.balance()
    real = chain._execute
    calls = {"n": 0}

    def flaky(address, message):
        calls["n"] += 1
        if calls["n"] == 2:  # the wallet's transaction ran; crash before the receiver's
            raise RuntimeError("power cut")
        return real(address, message)

    monkeypatch.setattr(chain, "_execute", flaky)
    with pytest.raises(RuntimeError):
        await src.transfer(dst.address, TON)
    assert chain.transaction_count() == n and chain._meta("lt") == lt_before
    assert await src.balance() == before and await src.seqno() == 0
    monkeypatch.setattr(chain, "_execute", real)
    await src.transfer(dst.address, TON, bounce=False)
    assert await dst.balance() == TON
    chain.close()


async def test_wall_clock_mode(tmp_path):
    t = [2_000_000_000.0]
    chain = LocalChain(None, clock=lambda: t[0])
    assert chain.now_sync() == 2_000_000_000
    t[0] += 10
    assert await chain.now() == 2_000_000_010
    assert chain.advance(100) == 2_000_000_110
    t[0] -= 50  # a clock stepping back never moves chain time back
    assert chain.now_sync() == 2_000_000_110
    with pytest.raises(ChainError):
        chain.advance(-1)
    chain.close()


async def test_corrupt_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ChainStoreError):
        LocalChain(bad)


async def test_state_readers(world):
    from cocoon.chain import AccountNotFound, read_client_state, read_proxy_state, read_worker_state

    sc = await net.open_client_contract(
        world.client, world.proxy_sc, world.proxy_key.public, world.params, amount=2 * TON
    )
    assert (await read_client_state(world.chain, sc)).balance == 2 * TON
    assert (await read_proxy_state(world.chain, world.proxy_sc)).commit_seqno == 0
    wc = net.worker_contract(world.worker.address, world.proxy_sc, world.proxy_key.public, world.params)
    with pytest.raises(AccountNotFound):
        await read_worker_state(world.chain, wc.address)


async def test_root_binds_each_model_hash_to_one_name(world):
    h3, h8 = b"\x03" * 32, b"\x08" * 32
    key = int.from_bytes(h3, "big")
    name_slice = (await world.chain.run_get_method(world.root, "model_name", [key]))[0]
    assert name_slice.begin_parse().load_uint(8) == len("model-3")
    missing = (await world.chain.run_get_method(world.root, "model_name", [int.from_bytes(h8, "big")]))[0]
    assert missing.begin_parse().remaining_bits == 0
    await net.send_root_op(
        world.owner, world.root, Op.ADD_MODEL_TYPE, hash=h8, name="Qwen/Qwen3-0.6B@abc:def"
    )
    await net.send_root_op(world.owner, world.root, Op.ADD_MODEL_TYPE, hash=h3, name="model-3-renamed")
    cfg = await net.fetch_root_config(world.chain, world.root)
    assert cfg.models == {h3: "model-3-renamed", h8: "Qwen/Qwen3-0.6B@abc:def"}
    assert cfg.model_refusal(h8, "Qwen/Qwen3-0.6B@abc:def") is None
    assert "only as 'model-3-renamed'" in (cfg.model_refusal(h3, "Llama-3.1-405B-Instruct") or "")
    assert "not allowed" in (cfg.model_refusal(b"\x09" * 32, "model-3-renamed") or "")

    # The contract refuses names it cannot bind (the Python side refuses them before sending).
    for name_bits in (
        begin_cell().store_uint(0, 8),  # empty name
        begin_cell().store_uint(5, 8).store_bytes(b"abc"),  # length lies
        begin_cell().store_uint(81, 8).store_bytes(b"x" * 81),  # too long
        begin_cell(),  # no name at all (the old layout)
    ):
        body = begin_cell().store_uint(Op.ADD_MODEL_TYPE, 32).store_uint(0, 64).store_bytes(h8)
        with expect_exit(ExitCode.BAD_ARGUMENT):
            trace = await world.owner.transfer(
                world.root, net.OP_VALUE, body.store_cell(name_bits.end_cell()).end_cell()
            )
            net.ensure_success(trace, world.root)
    assert (await net.fetch_root_config(world.chain, world.root)).version == cfg.version
    for bad in ("", " padded", "x" * 81, "é" * 41, "tab\there", 42):
        with pytest.raises(MessageError):
            root_body(Op.ADD_MODEL_TYPE, hash=h8, name=bad)
    with pytest.raises(MessageError, match="needs the name"):
        root_body(Op.ADD_MODEL_TYPE, hash=h8)


def test_root_data_with_a_malformed_model_name_is_refused():
    from pytoniq_core import HashMap

    from cocoon.chain.messages import RootState, parse_root_state

    owner = net.Address("0:" + "11" * 32)
    good = RootState.init_data(owner, net.default_params(), models={b"\x01" * 32: "ok"})
    assert parse_root_state(good).models == {b"\x01" * 32: "ok"}
    for value in (
        begin_cell().store_uint(2, 8).store_bytes(b"\xff\xfe"),  # not UTF-8
        begin_cell().store_uint(2, 8).store_bytes(b"ok").store_uint(1, 1),  # trailing bits
        begin_cell().store_uint(3, 8).store_bytes(b"a\nb"),  # a control character
        begin_cell(),  # the old layout: no name
    ):
        hm = HashMap(256, value_serializer=lambda v, b: b.store_cell(v))
        hm.set_int_key(1, value.end_cell())
        data = good.begin_parse()
        root = data.load_address()
        version = data.load_uint(32)
        inner = data.load_ref().begin_parse()
        params = data.load_ref()
        rebuilt = (
            begin_cell()
            .store_maybe_ref(inner.load_maybe_ref())
            .store_maybe_ref(inner.load_maybe_ref())
            .store_uint(inner.load_uint(32), 32)
            .store_maybe_ref(inner.load_maybe_ref())
            .store_maybe_ref(hm.serialize())
            .end_cell()
        )
        bad = begin_cell().store_address(root).store_uint(version, 32).store_ref(rebuilt).store_ref(params)
        with pytest.raises(MessageError):
            parse_root_state(bad.end_cell())


async def test_the_longest_model_name_fits_a_single_entry_root(tmp_path):
    """80 bytes is the bound: it fits the allow message and the leaf of a one-entry dict (the longest
    label), both when the contract stores it and when the Python side builds the initial data."""
    longest = "org/" + "m" * 76
    chain = LocalChain(tmp_path / "c.sqlite")
    h = await net.bootstrap_local_network(
        chain,
        owner=KeyPair.generate(),
        proxy_image_hashes=[],
        worker_image_hashes=[],
        models={},
        proxy_addresses=[],
    )
    await net.send_root_op(h.owner, h.root, Op.ADD_MODEL_TYPE, hash=b"\xff" * 32, name=longest)
    assert (await net.fetch_root_config(chain, h.root)).models == {b"\xff" * 32: longest}
    built = net.root_contract(h.owner.address, h.config.params, models={b"\x01" * 32: longest})
    assert parse_root_state(built.data).models == {b"\x01" * 32: longest}
    chain.close()
