"""``cocoon bench gateway``'s comparison with nginx: a tiny real run, and the pieces it is built from."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cocoon.inference import Endpoint, Script
from cocoon.localnet.bench import compare
from cocoon.localnet.bench.nginx import HOP_NAMES, Hop, find_nginx, render_config
from cocoon.localnet.bench.pki import write_tls_files
from cocoon.localnet.bench.processes import BenchSetupError, Child, wait_for
from cocoon.localnet.bench.procstat import cpu_seconds_by_process, cpu_seconds_since, cpu_snapshot
from cocoon.localnet.bench.report import COLUMNS, TARGET_COLUMNS, comparison_rows, target_rows
from cocoon.localnet.bench.targets import GOALS, judge
from cocoon.localnet.bench.tiers import toml_section
from cocoon.localnet.bench.upstream import EVENTS_FIELD, events_handler

REQUESTS = 20


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("compare")
    return asyncio.run(compare.bench_compare(root, levels=(1,), requests=REQUESTS, runs=1))


def _check_path(path: dict[str, Any], direct: dict[str, Any]) -> None:
    assert path["requests"] == REQUESTS and path["errors"] == 0
    assert path["rps"] > 0 and path["ttfb_p50_ms"] > 0 and path["middle_cpu_ms_per_request"] > 0
    assert path["rps_ratio"] == pytest.approx(path["rps"] / direct["rps"], abs=0.01)
    assert path["added_ttfb_p50_ms"] == pytest.approx(path["ttfb_p50_ms"] - direct["ttfb_p50_ms"], abs=0.02)
    (sample,) = path["samples"]
    assert sample["requests"] == REQUESTS and sample["middle_cpu_ms_per_request"] > 0


@pytest.mark.slow
def test_cocoon_tiers_measured_against_direct(report: dict[str, Any]) -> None:
    (row,) = report["rows"]
    assert row["concurrency"] == 1 and report["runs"] == 1
    direct = row["direct"]
    assert direct["rps"] > 0 and direct["ttfb_p50_ms"] > 0 and direct["errors"] == 0
    for layout in compare.LAYOUTS:
        _check_path(row["paths"][f"cocoon-{layout}"], direct)
    _check_path(row["paths"][compare.PLAIN], direct)
    assert row["paths"]["cocoon-separate"]["sealing"].startswith("sealed end to end")
    assert row["paths"][compare.PLAIN]["sealing"].endswith("(e2ee off)")
    table = comparison_rows(report)
    assert [r[:2] for r in table] == [
        ["1", "process each"],
        ["1", "one process"],
        ["1", "process each, e2ee off"],
    ]
    assert all(len(r) == len(COLUMNS) for r in table)


@pytest.mark.slow
def test_each_tier_split_into_fixed_and_per_event_cost_in_the_same_run(report: dict[str, Any]) -> None:
    (row,) = report["rows"]
    tiers = row["tiers"]
    assert tiers["events"] == [compare.FEW_EVENTS, report["events_per_answer"]]
    for tier in compare.TIERS:
        few, many = (tiers[tier]["cpu_ms_per_request"][str(n)] for n in tiers["events"])
        assert few > 0 and many > 0  # each tier's own process spent CPU on both counts
        slope = (many - few) / (tiers["events"][1] - tiers["events"][0])
        assert tiers[tier]["per_event_us"] == pytest.approx(slope * 1000, abs=0.1)
        assert tiers[tier]["fixed_ms"] == pytest.approx(few - compare.FEW_EVENTS * slope, abs=0.002)
    total = sum(tiers[t]["fixed_ms"] for t in compare.TIERS)
    assert tiers["fixed_ms_all_hops"] == pytest.approx(total, abs=0.002)


@pytest.mark.slow
def test_memory_and_every_target_reported_with_its_goal(report: dict[str, Any]) -> None:
    memory = report["memory"]
    assert memory["idle_link"]["links"] == compare.IDLE_LINKS
    assert memory["idle_link"]["per_link_kib"] > 0  # a link holds something at both ends
    assert set(memory["rss_idle_kib"]) == set(compare.TIERS) and all(memory["rss_idle_kib"].values())
    keys = {t["key"] for t in report["targets"]}
    expected = set(GOALS) - ({"cpu_vs_nginx", "ttfb_p99_vs_nginx"} if report["nginx"] is None else set())
    assert expected <= keys
    rows = target_rows(report)
    assert all(len(r) == len(TARGET_COLUMNS) and r[-1] in ("met", "NOT met", "n/a") for r in rows)


@pytest.mark.slow
def test_nginx_chain_measured_in_the_same_run(report: dict[str, Any]) -> None:
    if report["nginx"] is None:
        assert report["nginx_skipped"] == compare.NGINX_SKIPPED
        pytest.skip(compare.NGINX_SKIPPED)
    (row,) = report["rows"]
    for layout in compare.LAYOUTS:
        ours, theirs = row["paths"][f"cocoon-{layout}"], row["paths"][f"nginx-{layout}"]
        _check_path(theirs, row["direct"])
        cpu = ours["middle_cpu_ms_per_request"] / theirs["middle_cpu_ms_per_request"]
        assert row["ours_vs_nginx"][layout]["cpu_ratio"] == pytest.approx(cpu, abs=0.01)


def test_nginx_config_is_a_mutual_tls_chain_with_unbuffered_keepalive(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path / "tls", HOP_NAMES)
    hops = [
        Hop("hop1", 9001, tls_in=False, next_port=9002, next_name="hop2"),
        Hop("hop2", 9002, tls_in=True, next_port=9003, next_name="hop3"),
        Hop("hop3", 9003, tls_in=True, next_port=9100, next_name=None),
    ]
    conf = render_config("all", tmp_path, hops, tls, ["client_body", "proxy"])
    assert "worker_processes 1;" in conf and conf.count("proxy_buffering off;") == 3
    assert conf.count("ssl_verify_client on;") == 2 and conf.count("proxy_ssl_verify on;") == 2
    assert conf.count("keepalive 64;") == 3 and conf.count('proxy_set_header Connection "";') == 3
    assert "listen 127.0.0.1:9001;" in conf and "proxy_pass http://hop3_next;" in conf
    assert "server 127.0.0.1:9100;" in conf and "TLSv1.2" not in conf
    nginx = find_nginx()
    if nginx is None:
        pytest.skip(compare.NGINX_SKIPPED)
    (tmp_path / "all.conf").write_text(conf)
    for module in ("client_body", "proxy"):
        (tmp_path / "temp" / "all" / module).mkdir(parents=True)
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "all.conf")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_every_hop_key_is_private_and_every_cert_names_its_hop(tmp_path: Path) -> None:
    from cryptography import x509

    tls = write_tls_files(tmp_path, HOP_NAMES)
    for name, files in tls.hops.items():
        assert files.key.stat().st_mode & 0o077 == 0
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [name]


def test_cpu_seconds_count_this_process_and_its_live_threads() -> None:
    def spin(seconds: float) -> None:
        deadline = time.thread_time() + seconds
        while time.thread_time() < deadline:
            sum(i * i for i in range(1000))

    spun, release = threading.Event(), threading.Event()

    def helper() -> None:
        spin(0.03)
        spun.set()
        release.wait(timeout=30)

    before = cpu_snapshot([os.getpid()])
    thread = threading.Thread(target=helper)
    thread.start()
    spin(0.03)
    assert spun.wait(timeout=30)
    try:
        assert 0.06 <= cpu_seconds_since(before, [os.getpid()]) < 5  # the main thread's and the helper's
    finally:
        release.set()
        thread.join()
    assert cpu_snapshot([2**22 + 12345]) == {}  # no such process: nothing, not an error


def test_cpu_by_process_splits_a_snapshot_pair_by_process() -> None:
    before = {(1, 1): 10, (1, 2): 5, (2, 2): 0}
    after = {(1, 1): 30, (1, 2): 5, (1, 3): 7, (2, 2): 1_000_000_000}
    assert cpu_seconds_by_process(before, after) == {1: 27e-9, 2: 1.0}


def test_the_fake_upstream_takes_the_event_count_from_the_request() -> None:
    handler = events_handler(Script(chunks=50, chunk_bytes=128))
    assert handler(Endpoint.CHAT, {}).chunks == 50
    assert handler(Endpoint.CHAT, {EVENTS_FIELD: 5}).chunks == 5
    assert handler(Endpoint.CHAT, {EVENTS_FIELD: 5}) is handler(Endpoint.CHAT, {EVENTS_FIELD: 5})
    assert handler(Endpoint.CHAT, {EVENTS_FIELD: 5}).chunk_bytes == 128
    for nonsense in (-1, "5", True, 10**9):  # not a count: the default shape
        assert handler(Endpoint.CHAT, {EVENTS_FIELD: nonsense}).chunks == 50


def _judged_path(rps_ratio: float, added: float, errors: int = 0) -> dict[str, Any]:
    return {"rps_ratio": rps_ratio, "added_ttfb_p50_ms": added, "errors": errors}


def test_targets_are_judged_against_the_issue_goals() -> None:
    tier = {"fixed_ms": 0.9, "per_event_us": 12.0, "cpu_ms_per_request": {}}
    row = {
        "concurrency": 1,
        "paths": {
            "cocoon-separate": _judged_path(0.6, 1.5),
            "cocoon-one": _judged_path(0.4, 2.5, errors=1),
            "nginx-separate": _judged_path(0.9, 0.3),
        },
        "ours_vs_nginx": {"separate": {"cpu_ratio": 2.5, "ttfb_p99_ratio": 2.5}},
        "tiers": {
            "events": [5, 50],
            "client": tier,
            "proxy": tier,
            "worker": {**tier, "per_event_us": 25.0},
            "fixed_ms_all_hops": 2.7,
        },
    }
    memory = {
        "idle_link": {"links": 10, "proxy_kib": 20.0, "dialer_kib": 30.0, "per_link_kib": 50.0},
        "rss_idle_total_kib": 100 * 1024,
        "rss_after_load_total_kib": 120 * 1024,
    }
    targets = judge({"rows": [row], "events_per_answer": 50, "memory": memory})

    def met(key: str, where: str) -> bool | None:
        (verdict,) = [t["met"] for t in targets if t["key"] == key and where in t["where"]]
        assert verdict is None or isinstance(verdict, bool)
        return verdict

    assert met("cpu_vs_nginx", "process each") is True
    assert met("cpu_vs_nginx", "one process") is None  # no nginx beside it: cannot tell
    assert met("per_event_us", "client") is True
    assert met("per_event_us", "worker") is False
    assert met("fixed_ms", "0.9 + 0.9 + 0.9") is True
    assert met("rps_vs_direct", "process each") is True
    assert met("rps_vs_direct", "one process") is False
    assert met("added_ttfb_ms", "process each") is True
    assert met("failures", "c=1") is False
    assert met("ttfb_p99_vs_nginx", "process each (issue: c=128, 500)") is False
    assert met("idle_link_kib", "proxy 20 + dialer 30 KiB") is True
    assert met("rss_after_load", "100.0 → 120.0 MiB") is False  # 20 MiB over idle


def test_node_config_is_valid_toml_with_nested_tables() -> None:
    text = toml_section(
        "worker", {"home": 'a "b"', "proxies": ["127.0.0.1:1"], "n": 3, "engine": {"kind": "http"}}
    )
    assert tomllib.loads(text) == {
        "worker": {"home": 'a "b"', "proxies": ["127.0.0.1:1"], "n": 3, "engine": {"kind": "http"}}
    }


def test_comparison_without_nginx_says_so_in_every_nginx_column() -> None:
    path = {
        "rps_ratio": 0.2,
        "added_ttfb_p50_ms": 20.0,
        "middle_cpu_ms_per_request": 18.0,
        "ttfb_p99_ms": 31.0,
        "errors": 0,
    }
    result = {
        "rows": [
            {
                "concurrency": 8,
                "direct": {"rps": 100.0},
                "paths": {"cocoon-separate": path, "cocoon-one": path},
                "ours_vs_nginx": {},
            }
        ]
    }
    rows = comparison_rows(result)
    assert rows[0] == [
        "8",
        "process each",
        "100.0",
        "n/a / 0.2",
        "n/a / 20.0",
        "n/a / 18.0",
        "n/a / n/a",
        "n/a / 31.0",
        "n/a / 0",
    ]


def test_bench_refuses_empty_levels_before_starting_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(compare.bench_compare(tmp_path, levels=(), runs=1))
    assert list(tmp_path.iterdir()) == []


async def test_a_chain_process_that_dies_fails_the_wait_with_its_log(tmp_path: Path) -> None:
    script = "import sys; print('cannot listen: port taken'); sys.exit(3)"
    child = Child("hop", [sys.executable, "-c", script], tmp_path / "hop.log").start()

    async def never() -> bool:
        return False

    with pytest.raises(BenchSetupError, match=r"hop exited with status 3:\ncannot listen: port taken"):
        await wait_for(never, what="hop to listen", watch=[child], timeout=30)
