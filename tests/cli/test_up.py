"""`cocoon up` as its users run it: a process that prints where everything listens and stops on SIGINT."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CLI = str(Path(sys.executable).with_name("cocoon"))
UPSTREAM = Path(__file__).resolve().parents[1] / "faults" / "upstream.py"
DEADLINE_S = 60


def _wait_for(path: Path, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        assert process.poll() is None, "the upstream exited"
        assert time.monotonic() < deadline, "the upstream did not start"
        time.sleep(0.05)  # polling for a file the other process writes once it listens
    return path.read_text()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    port_file = tmp_path / "upstream.port"
    process = subprocess.Popen(
        [sys.executable, str(UPSTREAM), str(port_file), "--model", "up-model"], text=True
    )
    try:
        yield _wait_for(port_file, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _up(home: Path, url: str, *flags: str) -> subprocess.Popen[str]:
    args = [CLI, "up", "--engine-url", url, "--port", "0", "--health-port", "0", *flags, "--home", str(home)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_up_prints_every_endpoint_and_stops_cleanly_on_sigint(tmp_path: Path, upstream: str) -> None:
    process = _up(tmp_path / "net", upstream, "--proxy-port", "0", "--json")
    try:
        assert process.stdout is not None
        endpoints = json.loads(process.stdout.readline())  # written once the network is ready
        assert endpoints["openai_base_url"].endswith("/v1")
        assert endpoints["root_address"] and Path(endpoints["chain"]).is_file()
        with httpx.Client(timeout=10) as http:
            assert http.get(endpoints["proxy_stats_url"]).json()["state"] == "running"
            [health] = endpoints["worker_health_urls"]
            assert http.get(f"{health}/health").json()["state"] == "running"
            models = http.get(endpoints["openai_base_url"] + "/models").json()["data"]
            assert [m["id"] for m in models] == ["up-model"]
        for address in (endpoints["proxy_workers_address"], endpoints["proxy_clients_address"]):
            host, port = address.rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=5).close()
        home = tmp_path / "net"
        for directory in (home, *(d for d in home.iterdir() if d.is_dir())):
            assert directory.stat().st_mode & 0o077 == 0, directory
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, stderr
    assert "proxy operator view" in stderr and "worker 0 health" in stderr and "root contract" in stderr


def test_up_on_a_busy_port_is_one_line_naming_it(tmp_path: Path, upstream: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = _up(tmp_path / "net", upstream, "--proxy-port", str(port))
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 1 and stdout == ""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"], stderr
    assert "Traceback" not in stderr
