"""The +25 h wall-clock jump with every node a real process (upstream, proxy, worker, client), linked
only through their ports: each process's ``time.time()`` steps at once (``clockshift/sitecustomize``),
their monotonic clocks do not. The app keeps asking; the first answer after the jump comes by itself,
over the links that were up before it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from .procnet import MODEL, procnet

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
JUMP_S = 25 * 3600
WITHIN_S = 20.0
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def test_processes_answer_again_by_themselves_after_a_25_hour_jump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_file = tmp_path / "clock-offset"
    clock_file.write_text("0")
    monkeypatch.setenv("COCOON_TEST_CLOCK_FILE", str(clock_file))
    paths = [str(HERE / "clockshift"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    with procnet(tmp_path) as net, httpx.Client(timeout=10) as http:
        _, proxy, _, app = net.standard(workers=1)
        url = f"{net.base(app)}/v1/chat/completions"
        assert http.post(url, json=CHAT).status_code == 200
        (before,) = net.stats(proxy)["workers"]["list"]
        clock_file.write_text(str(JUMP_S))  # every node's wall clock steps 25 h forward
        jumped = time.monotonic()
        failures = 0
        while True:
            status = http.post(url, json=CHAT).status_code
            if status == 200:
                break
            failures += 1
            assert time.monotonic() - jumped < WITHIN_S, f"no answer within {WITHIN_S} s of the jump"
            time.sleep(0.05)  # an app retrying 20 times a second
        took = time.monotonic() - jumped
        print(f"\nprocesses, clock +25 h: first answer after {took:.2f} s ({failures} failed tries)")
        stats = net.stats(proxy)
        # The worker's renewal reached the proxy over the same link, re-verified after the jump.
        (record,) = stats["workers"]["list"]
        assert record["attested_at"] >= before["attested_at"] + JUMP_S - 600
        assert record["connected_at"] == before["connected_at"]  # the link from before the jump
