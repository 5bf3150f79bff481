"""Crash safety for real: a process settling paid requests is killed with SIGKILL at random points.

After each kill the store is reopened: the counters must equal the sums of the request rows, every settled
request must carry exactly its deterministic charge (nothing doubled), and the next process replays the last
few requests (as a restarted proxy would) without charging them twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cocoon.proxy.ledger import BillingLedger, RequestState

from .helpers import charge_of, funded_ledger

CHILD = r"""
import sys
import types
from pathlib import Path

import cocoon

# Import only the ledger's modules, not the whole proxy service behind cocoon/proxy/__init__.py: a fast
# start lets the test kill many processes at random points in a few seconds.
_pkg = types.ModuleType("cocoon.proxy")
_pkg.__path__ = [str(Path(cocoon.__file__).parent / "proxy")]
sys.modules["cocoon.proxy"] = _pkg

from cocoon.proxy.errors import RequestConflict
import pytest

from cocoon.proxy.ledger import BillingLedger, Settlement
from cocoon.proxy.pricing import PriceParams, TokenCounts, price

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)
path, start = Path(sys.argv[1]), int(sys.argv[2])
ledger = BillingLedger(path)
print("ready", flush=True)
i = start
while True:
    rid = f"r{i:07d}"
    charge = price(TokenCounts(prompt=i % 97, completion=i % 89 + 1), 1000 + i % 3 * 500, PARAMS)
    client = "alice" if i % 2 else "bob"
    worker = f"w{i % 4}"
    try:
        ledger.reserve(rid, client, 10**7, float(i), model="m")
    except RequestConflict:
        pass  # already settled or failed by the previous process: replay the ending below
    if i % 11 == 0:
        ledger.fail(rid, charge, worker=worker, now=float(i))
    elif i % 7 == 3:  # the group-commit path
        (rec,) = ledger.settle_many([Settlement(rid, worker, charge)], float(i))
        assert not isinstance(rec, Exception), rec
    else:
        ledger.settle(rid, worker, charge, float(i))
        ledger.settle(rid, worker, charge, float(i))  # an immediate replay must be a no-op
    print(rid, flush=True)  # the answer is released only after the ledger write returned
    if i % 25 == 0:
        ledger.bump_seqno(float(i))
    i += 1
"""


def _expected_charge(i: int):  # type: ignore[no-untyped-def]
    from cocoon.proxy.pricing import TokenCounts, price

    from .helpers import PARAMS

    return price(TokenCounts(prompt=i % 97, completion=i % 89 + 1), 1000 + i % 3 * 500, PARAMS)


def _check(ledger: BillingLedger, released: frozenset[str] = frozenset()) -> int:
    """Counters equal the rows; each finished row carries exactly its own charge. Returns the highest index."""
    rows = ledger._debug_rows()
    requests = {r[0]: r for r in rows["requests"]}
    highest = -1
    for rid in requests:
        rec = ledger.request(rid)
        assert rec is not None
        i = int(rid[1:])
        highest = max(highest, i)
        if rid in released:
            assert rec.state is RequestState.FAILED and rec.charge.total_adjusted == 0
        elif rec.state is not RequestState.RESERVED:
            assert rec.charge == _expected_charge(i), rid
    for client in ledger.clients():
        mine = [ledger.request(r) for r in requests if requests[r][1] == client.client]
        done = [r for r in mine if r is not None and r.state is not RequestState.RESERVED]
        held = [r for r in mine if r is not None and r.state is RequestState.RESERVED]
        assert client.tokens == sum(r.charge.total_adjusted for r in done)
        assert client.cost_nano == sum(r.charge.client_cost_nano for r in done)
        assert client.reserved_nano == sum(r.reserved_nano for r in held)
        assert len(held) <= 1  # one request in flight at a time in the child
    for worker in ledger.workers():
        done = [
            r
            for r in (ledger.request(x) for x in requests if requests[x][2] == worker.worker)
            if r is not None and r.state is not RequestState.RESERVED
        ]
        assert worker.tokens == sum(r.charge.total_adjusted for r in done)
        assert worker.earnings_nano == sum(r.charge.worker_earning_nano for r in done)
    stats = ledger.statistics()
    assert stats.revenue_nano - stats.worker_earnings_nano == stats.proxy_fees_nano
    return highest


@pytest.mark.slow
def test_sigkill_during_settlement_loses_and_doubles_nothing(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    funded_ledger(path, "alice", "bob", balance=10**18, stake=10**18).close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    rng = random.Random(1234)
    start = 0
    deadline = time.monotonic() + 10.0
    settled_seen = 0
    for _ in range(10):
        if time.monotonic() > deadline:
            break
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(start)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.02, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
        released = child.stdout.read().decode().split()
        child.stdout.close()
        with BillingLedger(path) as ledger:  # the kill released the writer lock
            highest = _check(ledger)
            settled_seen = ledger.statistics().requests_settled
            # Every answer the "clients" got is durably billed, with exactly its charge.
            for rid in released:
                rec = ledger.request(rid)
                assert rec is not None and rec.state is not RequestState.RESERVED, rid
                assert rec.charge == _expected_charge(int(rid[1:]))
        # Restart a little behind where the dead process was, replaying its last requests.
        start = max(highest - 3, 0)
    assert settled_seen > 20, "the child never got going"
    with BillingLedger(path) as ledger:
        released = ledger.release_stale(now=1e9, older_than=1e9)
        assert released in ([], [f"r{highest:07d}"])
        _check(ledger, frozenset(released))
        assert ledger.statistics().requests_reserved == 0


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with funded_ledger(path, "alice") as led:
        led.reserve("r1", "alice", 10**6, 1.0)
        led.settle("r1", "w1", charge_of(10, 10), 2.0)
        before = led._debug_rows()
    with BillingLedger(path) as led:
        assert led._debug_rows() == before


PROGRESS_CHILD = r"""
import sys
import types
from pathlib import Path

import cocoon

_pkg = types.ModuleType("cocoon.proxy")
_pkg.__path__ = [str(Path(cocoon.__file__).parent / "proxy")]
sys.modules["cocoon.proxy"] = _pkg

from cocoon.proxy.ledger import BillingLedger
from cocoon.proxy.pricing import PriceParams

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)
ledger = BillingLedger(Path(sys.argv[1]))
rid = sys.argv[2]
ledger.reserve(rid, "alice", 10**12, 1.0)
ledger.assign_worker(rid, "w1", coefficient=1000, params=PARAMS, now=1.0)
print("ready", flush=True)
k = 0
while True:
    k += 1
    ledger.record_progress(rid, prompt_tokens=50, completion_tokens=k, now=2.0)
    print(k, flush=True)  # the proxy relays the next piece only after its progress is on disk
"""


@pytest.mark.slow
def test_sigkill_mid_answer_charges_the_last_recorded_progress(tmp_path: Path) -> None:
    """A proxy killed mid-stream: the restart charges what it had durably recorded, never less."""
    from cocoon.proxy.pricing import TokenCounts, price

    from .helpers import PARAMS

    path = tmp_path / "billing.db"
    funded_ledger(path, "alice", balance=10**18, stake=10**18).close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    rng = random.Random(99)
    billed = 0
    for round_ in range(3):
        rid = f"stream{round_}"
        child = subprocess.Popen(
            [sys.executable, "-c", PROGRESS_CHILD, str(path), rid], stdout=subprocess.PIPE, env=env
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        seen = [int(x) for x in child.stdout.read().split()]
        child.stdout.close()
        last = seen[-1] if seen else 0
        with BillingLedger(path) as ledger:
            assert ledger.release_stale(now=10.0, older_than=10.0) == [rid]
            rec = ledger.request(rid)
            assert rec is not None and rec.state is RequestState.FAILED and rec.usage is not None
            # at least the last record the relay saw confirmed, at most the one being written at the kill
            assert last <= rec.usage.completion <= last + 1, (last, rec.usage)
            assert rec.charge == price(TokenCounts(prompt=50, completion=rec.usage.completion), 1000, PARAMS)
            billed += rec.charge.client_cost_nano
            alice = ledger.client_totals("alice")
            assert (alice.cost_nano, alice.reserved_nano) == (billed, 0)
