"""A new owner reaches a serving second worker from the README alone.

The test reads README.md's own block under "A second worker, from nothing, beside a running `cocoon
up`", runs its commands as written (in a fresh HOME, as separate processes, as a user's shell would)
and checks what the README promises: `--check` prints every line ok, the worker serves on the port
the README names, and requests through the network reach it. A README change that breaks the
walk-through fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow  # three model loads in separate processes (~15 s)

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "A second worker, from nothing, beside a running `cocoon up`:"
CLI = str(Path(sys.executable).with_name("cocoon"))
PORTS = (10000, 11000, 11001, 11002, 12000)  # what `cocoon up` binds by default
DEADLINE_S = 90


def readme_commands() -> list[tuple[list[str], bool]]:
    """(argv, in the background) for each command of the README's fenced block in that section."""
    text = README.read_text()
    start = text.index(SECTION)
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None, "the section has no ```sh block"
    commands = []
    for raw in block.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if not line:
            continue
        background = line.endswith("&")
        commands.append((shlex.split(line.removesuffix("&")), background))
    return commands


def _argv(words: list[str], home: Path) -> list[str]:
    assert words[0] == ".venv/bin/cocoon", words
    return [CLI, *(str(home / w[2:]) if w.startswith("~/") else w for w in words[1:])]


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _until_answers(url: str, process: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert process.poll() is None, f"exited with {process.returncode}: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{url} never answered"
        try:
            return dict(httpx.get(url, timeout=2).json())
        except httpx.HTTPError:
            time.sleep(0.1)  # the other process is still starting: poll its port


@pytest.fixture
def shell_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    busy = [p for p in (*PORTS, 12100) if _port_busy(p)]
    if busy:
        pytest.skip(f"the README walk-through needs the default ports; busy here: {busy}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCOON_")}
    env.update(HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    yield env


def test_readme_second_worker_walkthrough(tmp_path: Path, shell_env: dict[str, str]) -> None:
    commands = readme_commands()
    assert [words[:2] for words, _ in commands] == [
        [".venv/bin/cocoon", "up"],
        [".venv/bin/cocoon", "worker"],
        [".venv/bin/cocoon", "worker"],
        [".venv/bin/cocoon", "worker"],
    ], "the walk-through changed: update this test with it"
    promised = re.search(r"dashboard on :(\d+)", README.read_text().split(SECTION, 1)[1])
    assert promised is not None, "the walk-through no longer says where the worker serves"
    health_port = int(promised.group(1))
    started: list[subprocess.Popen[str]] = []
    try:
        base_url = ""
        for index, (words, background) in enumerate(commands):
            argv = _argv(words, tmp_path)
            serving = background or index == len(commands) - 1  # the last one serves until stopped
            if not serving:
                done = subprocess.run(argv, env=shell_env, capture_output=True, text=True, timeout=DEADLINE_S)
                assert done.returncode == 0, f"{words}: {done.stdout}{done.stderr}"
                assert "FAIL" not in done.stdout, done.stdout
                if "--check" in words:
                    assert "ready to serve" in done.stdout
                continue
            process = subprocess.Popen(
                argv, env=shell_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            started.append(process)
            if words[1] == "up":
                assert process.stdout is not None
                base_url = process.stdout.readline().strip()  # printed once the network is up
                assert base_url.startswith("http://127.0.0.1:10000"), base_url
        second = _until_answers(f"http://127.0.0.1:{health_port}/health", started[-1])
        deadline = time.monotonic() + DEADLINE_S
        while not all(p["connected"] for p in second["proxies"]):
            assert time.monotonic() < deadline, second["proxies"]
            time.sleep(0.1)  # its link to the proxy is being attested
            second = _until_answers(f"http://127.0.0.1:{health_port}/health", started[-1])
        model = httpx.get(f"{base_url}/models", timeout=10).json()["data"][0]["id"]
        chat = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
        for _ in range(6):
            httpx.post(f"{base_url}/chat/completions", json=chat, timeout=60).raise_for_status()
        # The proxy's spot checks send canaries to both workers at random moments (a round after
        # about 50 requests, drawn from an exponential: ~11 % of runs see one within 6), and a
        # worker cannot tell a canary from an app's request, so it counts them as served too.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            second = httpx.get(f"http://127.0.0.1:{health_port}/health", timeout=5).json()
            first = httpx.get("http://127.0.0.1:12000/health", timeout=5).json()
            stats = httpx.get("http://127.0.0.1:11000/stats", timeout=5).json()
            canaries = stats["reputation"]["canaries_sent"]
            if second["served"] + first["served"] == 6 + canaries:
                break  # every app request and every canary answered, and nothing else
            assert time.monotonic() < deadline, (second["served"], first["served"], canaries)
            time.sleep(0.1)  # a canary sent is still being answered
        assert second["served"] >= 1, "the second worker served nothing"
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
