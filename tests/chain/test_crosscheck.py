"""Differential test: the same messages on LocalChain (tonpy, TVM 11) and on @ton/sandbox (the official
emulator, latest TVM) must give the same exit codes and the same final contract data."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from pytoniq_core import Address, Cell, begin_cell

from cocoon.chain import (
    Collateral,
    KeyPair,
    LocalChain,
    Op,
    ServiceClass,
    load_contract,
    sign,
    sign_slash_claim,
    sign_slash_receipt,
    sign_state_commit,
)
from cocoon.chain import network as net
from cocoon.chain.messages import client_body, proxy_body, root_body
from cocoon.chain.slashing import slash_dispute_body, slash_execute_body, stake_worker_body

CONTRACTS = Path(__file__).parents[2] / "src" / "cocoon" / "chain" / "contracts"
TON = net.TON
T0 = 1_760_000_000

OWNER, PROXY_OWNER, CLIENT, WORKER, STRANGER = (
    Address(f"0:{b * 32}") for b in ("a1", "a2", "a3", "a4", "a5")
)


def _sandbox_ready() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: no sandbox cross-check")
    if not (CONTRACTS / "node_modules" / "@ton" / "sandbox").exists():
        try:
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=CONTRACTS,
                check=True,
                capture_output=True,
                timeout=300,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"npm ci failed (registry unreachable?): {exc}")


def _b64(cell: Cell | None) -> str | None:
    return None if cell is None else base64.b64encode(cell.to_boc()).decode()


def scenario() -> tuple[list[dict], list[Address]]:
    key = KeyPair.from_seed(bytes(range(32)))
    rogue = KeyPair.from_seed(bytes(range(1, 33)))
    params = net.default_params(price_per_token=1000, worker_fee_per_token=800)
    root = net.root_contract(
        OWNER,
        params,
        proxy_hashes=[b"\x01" * 32],
        models={b"\x03" * 32: "model-3"},
        proxies=["127.0.0.1:8800"],
    )
    proxy = net.proxy_contract(PROXY_OWNER, key.public, root.address, params)
    client = net.client_contract(CLIENT, proxy.address, key.public, params)
    worker = net.worker_contract(WORKER, proxy.address, key.public, params)
    rogue_worker = net.worker_contract(WORKER, proxy.address, rogue.public, params)
    lone_worker = net.worker_contract(STRANGER, proxy.address, key.public, params)  # closes on its own
    now = T0
    steps: list[dict] = []

    def step(src, dest, value, body=None, init=None, bounce=True, at=None):  # type: ignore[no-untyped-def]
        steps.append(
            {
                "now": now if at is None else at,
                "src": src.to_str(is_user_friendly=False),
                "dest": dest.to_str(is_user_friendly=False),
                "value": value,
                "bounce": bounce,
                "body": _b64(body),
                "init": _b64(init.serialize() if init is not None else None),
            }
        )

    op = net.OP_VALUE
    step(OWNER, root.address, TON, init=root.state_init, bounce=False)
    step(OWNER, root.address, op, root_body(Op.ADD_MODEL_TYPE, 1, hash=b"\x07" * 32, name="Qwen/Qwen3-0.6B"))
    bad_name = begin_cell().store_uint(Op.ADD_MODEL_TYPE, 32).store_uint(1, 64).store_bytes(b"\x07" * 32)
    step(OWNER, root.address, op, bad_name.store_uint(5, 8).store_bytes(b"abc").end_cell())  # len lies
    step(OWNER, root.address, op, root_body(Op.ADD_MODEL_TYPE, 1, hash=b"\x03" * 32, name="model-3b"))
    step(STRANGER, root.address, op, root_body(Op.ADD_PROXY_TYPE, 2, hash=b"\x09" * 32))
    step(OWNER, root.address, op, root_body(Op.REGISTER_PROXY, 3, address="10.0.0.2:9000"))
    step(
        OWNER,
        root.address,
        op,
        root_body(Op.CHANGE_PRICE, 4, price_per_token=2000, worker_fee_per_token=1500),
    )
    step(OWNER, root.address, op, root_body(Op.UNREGISTER_PROXY, 5, seqno=77))
    step(OWNER, root.address, op, root_body(Op.REGISTER_PROXY, 3, address="10.0.0.3:9001 10.0.0.3:9000"))
    bad_entry = begin_cell().store_uint(Op.REGISTER_PROXY, 32).store_uint(3, 64).store_uint(0, 1)
    step(OWNER, root.address, op, bad_entry.store_uint(4, 7).store_bytes(b"a  b").end_cell())  # two spaces
    gold = ServiceClass(name="gold", price_multiplier=2500, target_ttft_ms=900, max_retries=4)
    step(OWNER, root.address, op, root_body(Op.SET_SERVICE_CLASS, 7, service_class=gold))
    step(OWNER, root.address, op, root_body(Op.REMOVE_SERVICE_CLASS, 7, name="elastic"))  # not held: 411
    terms = Collateral(min_worker_stake=TON, dispute_window_s=300, max_slash_permille=400)
    step(OWNER, root.address, op, root_body(Op.SET_COLLATERAL, 8, collateral=terms))
    step(STRANGER, root.address, op, root_body(Op.UPGRADE_CODE, 9, code=load_contract("wallet").code))
    step(OWNER, root.address, op, root_body(Op.UPGRADE_CODE, 9, code=root.code))
    step(
        OWNER,
        root.address,
        op,
        root_body(Op.CHANGE_PARAMS, 6, params=replace(params, client_delay_before_close=9)),
    )
    step(
        PROXY_OWNER,
        proxy.address,
        TON + op,
        proxy_body(Op.PROXY_INCREASE_STAKE, amount=TON, excess=PROXY_OWNER),
        proxy.state_init,
    )
    step(
        CLIENT,
        client.address,
        10 * TON + op,
        client_body(Op.CLIENT_TOP_UP, amount=10 * TON, excess=CLIENT),
        client.state_init,
    )
    charge = sign(key, Op.CLIENT_CHARGE_SIGNED, target=client.address, counter=1000, query_id=1)
    step(CLIENT, client.address, op, charge.body(CLIENT))
    step(CLIENT, client.address, op, charge.body(CLIENT))  # replay
    step(
        CLIENT,
        client.address,
        op,
        sign(key, Op.CLIENT_CHARGE_SIGNED, target=client.address, counter=999).body(CLIENT),
    )
    step(
        CLIENT,
        client.address,
        op,
        sign(rogue, Op.CLIENT_CHARGE_SIGNED, target=client.address, counter=5000).body(CLIENT),
    )
    step(
        CLIENT,
        client.address,
        op,
        sign(key, Op.CLIENT_CHARGE_SIGNED, target=worker.address, counter=5000).body(CLIENT),
    )
    step(CLIENT, client.address, op, client_body(Op.CLIENT_WITHDRAW, amount=9_500_000_000, excess=CLIENT))
    step(CLIENT, client.address, op, client_body(Op.CLIENT_WITHDRAW, amount=TON, excess=CLIENT))
    step(STRANGER, client.address, op, client_body(Op.CLIENT_WITHDRAW, amount=1, excess=STRANGER))
    step(CLIENT, client.address, op, begin_cell().store_uint(0xDEADBEEF, 32).end_cell())
    step(CLIENT, client.address, op, client_body(Op.CLIENT_INCREASE_STAKE, amount=3 * TON, excess=CLIENT))
    pay = sign(key, Op.WORKER_PAYOUT_SIGNED, target=worker.address, counter=600)
    step(WORKER, worker.address, op, pay.body(WORKER), worker.state_init)
    step(WORKER, worker.address, op, pay.body(WORKER))
    now = collateral_steps(step, now, key, rogue, worker.address, op)
    rogue_pay = sign(rogue, Op.WORKER_PAYOUT_SIGNED, target=rogue_worker.address, counter=10**6)
    step(WORKER, rogue_worker.address, op, rogue_pay.body(WORKER), rogue_worker.state_init)
    commit = sign_state_commit(key, target=proxy.address, seqno=5, session_hash=b"\x05" * 32)
    step(PROXY_OWNER, proxy.address, op, commit.body(PROXY_OWNER))
    step(PROXY_OWNER, proxy.address, op, commit.body(PROXY_OWNER))
    step(PROXY_OWNER, proxy.address, op, proxy_body(Op.PROXY_PAYOUT, excess=PROXY_OWNER))
    step(CLIENT, client.address, op, client_body(Op.CLIENT_REQUEST_REFUND, excess=CLIENT))
    step(CLIENT, client.address, op, client_body(Op.CLIENT_REQUEST_REFUND, excess=CLIENT))
    now += params.client_delay_before_close
    step(CLIENT, client.address, op, client_body(Op.CLIENT_REQUEST_REFUND, excess=CLIENT))
    step(CLIENT, client.address, op, client_body(Op.CLIENT_REQUEST_REFUND, excess=CLIENT))
    step(
        CLIENT,
        client.address,
        op,
        sign(key, Op.CLIENT_GRANT_REFUND_SIGNED, target=client.address, counter=2000).body(),
    )
    step(
        WORKER,
        worker.address,
        op,
        sign(key, Op.WORKER_LAST_PAYOUT_SIGNED, target=worker.address, counter=700).body(),
    )
    step(
        PROXY_OWNER,
        proxy.address,
        op,
        sign(key, Op.PROXY_CLOSE_REQUEST_SIGNED, target=proxy.address, counter=0).body(),
    )
    complete = sign(key, Op.PROXY_CLOSE_COMPLETE_SIGNED, target=proxy.address, counter=0)
    step(PROXY_OWNER, proxy.address, op, complete.body())
    now += params.proxy_delay_before_close
    step(PROXY_OWNER, proxy.address, op, complete.body())
    now = owner_close_steps(step, now, lone_worker, params.proxy_delay_before_close, op)
    watch = [root.address, proxy.address, client.address, worker.address, rogue_worker.address]
    return steps, [*watch, lone_worker.address]


def collateral_steps(add_step, now, key, rogue, worker, op):  # type: ignore[no-untyped-def]
    """Stake, a claim that asks the root for its terms through the proxy contract, disputes, execution."""

    def step(*args, **kw):  # type: ignore[no-untyped-def]
        add_step(*args, at=now, **kw)

    step(WORKER, worker, 3 * TON + op, stake_worker_body(3 * TON, excess=WORKER))
    step(STRANGER, worker, 3 * TON + op, stake_worker_body(TON, excess=STRANGER))  # not the owner
    evidence = b"\x0e" * 32
    claim = sign_slash_claim(key, worker, amount=5 * TON, evidence_hash=evidence, counter=1)
    step(
        PROXY_OWNER,
        worker,
        op,
        sign_slash_claim(rogue, worker, amount=TON, evidence_hash=evidence, counter=1).body(),
    )
    step(PROXY_OWNER, worker, op, claim.body(PROXY_OWNER))
    step(PROXY_OWNER, worker, op, claim.body(PROXY_OWNER))  # replay
    wrong = sign_slash_receipt(key, worker, evidence_hash=b"\x0f" * 32)
    step(WORKER, worker, op, slash_dispute_body(wrong, excess=WORKER))
    step(
        WORKER,
        worker,
        op,
        slash_dispute_body(sign_slash_receipt(key, worker, evidence_hash=evidence), excess=WORKER),
    )
    step(STRANGER, worker, op, slash_execute_body(excess=STRANGER))  # nothing pending
    second = sign_slash_claim(key, worker, amount=TON, evidence_hash=evidence, counter=2)
    step(PROXY_OWNER, worker, op, second.body(PROXY_OWNER))
    step(STRANGER, worker, op, slash_execute_body(excess=STRANGER))  # too early
    now += 300
    step(STRANGER, worker, op, slash_execute_body(excess=STRANGER))
    return now


def owner_close_steps(add_step, now, lone, delay, op):  # type: ignore[no-untyped-def]
    """A worker owner closes its contract alone: notice, too early, complete."""

    def step(*args, **kw):  # type: ignore[no-untyped-def]
        add_step(*args, at=now, **kw)

    def body(o: Op) -> Cell:
        return begin_cell().store_uint(o, 32).store_uint(4, 64).store_address(STRANGER).end_cell()

    step(STRANGER, lone.address, 2 * TON + op, stake_worker_body(2 * TON, excess=STRANGER), lone.state_init)
    step(STRANGER, lone.address, op, body(Op.WORKER_CLOSE_COMPLETE))  # not closing: 408
    step(STRANGER, lone.address, op, body(Op.WORKER_CLOSE_REQUEST))
    step(STRANGER, lone.address, op, body(Op.WORKER_CLOSE_COMPLETE))  # too early: 409
    now += delay
    step(STRANGER, lone.address, op, body(Op.WORKER_CLOSE_COMPLETE))
    return now


def run_local(steps: list[dict], watch: list[Address]) -> dict:
    chain = LocalChain(None, genesis_time=T0)
    out = []
    for s in steps:
        chain.advance(s["now"] - chain.now_sync())
        body = Cell.one_from_boc(base64.b64decode(s["body"])) if s["body"] else None
        init = None
        if s["init"]:
            from pytoniq_core.tlb.account import StateInit

            init = StateInit.deserialize(Cell.one_from_boc(base64.b64decode(s["init"])).begin_parse())
        trace = chain.inject_sync(
            Address(s["src"]), Address(s["dest"]), s["value"], body=body, state_init=init, bounce=s["bounce"]
        )
        out.append(
            [
                {
                    "address": t.address.to_str(is_user_friendly=False),
                    "exit": t.exit_code,
                    "success": t.success,
                }
                for t in trace
            ]
        )
    data = {}
    for a in watch:
        acc = chain._state_of(a)
        data[a.to_str(is_user_friendly=False)] = acc.data.hash.hex() if acc.data is not None else None
    assert chain.totals().conserved
    chain.close()
    return {"steps": out, "data": data}


@pytest.mark.slow
def test_localchain_matches_sandbox(tmp_path):
    _sandbox_ready()
    steps, watch = scenario()
    local = run_local(steps, watch)
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"steps": steps, "watch": [a.to_str(is_user_friendly=False) for a in watch]}))
    proc = subprocess.run(
        ["node", "crosscheck.mjs", str(path)], cwd=CONTRACTS, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sandbox = json.loads(proc.stdout.strip().splitlines()[-1])

    def key(tx: dict) -> tuple:
        return (tx["address"], tx["exit"], tx["success"])

    for i, (mine, theirs) in enumerate(zip(local["steps"], sandbox["steps"], strict=True)):
        assert Counter(map(key, mine)) == Counter(map(key, theirs)), f"step {i}: {steps[i]['dest']}"
    assert local["data"] == sandbox["data"]
    # the scenario exercises refusals, not only happy paths
    exits = {tx["exit"] for st in local["steps"] for tx in st}
    assert {401, 402, 403, 405, 407, 408, 409, 411, 412, 413} <= exits
