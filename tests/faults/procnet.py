"""Cocoon nodes as real OS processes (``python -m cocoon.cli.main proxy|worker|client --config F``).

Each node gets a TOML config in the test's directory, ports picked free on loopback, and the shared
simulated TEE platform (``tee.sim_home``) so the processes trust each other. Faults are real: SIGKILL,
SIGSTOP, a relay process between proxy and worker, a file-size limit on the proxy (a full disk).
Every wait has a deadline; :meth:`ProcNet.close` kills whatever is still running.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cocoon import tee

__all__ = ["MODEL", "Node", "ProcNet", "free_port", "wait_until"]

MODEL = "fault-model"
HERE = Path(__file__).resolve().parent
CREDIT_NANO = 1000 * 10**9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, section: str, values: dict[str, Any]) -> Path:
    lines = [f"[{section}]"]
    tables: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {_toml(value)}")
    for name, table in tables.items():
        lines.append(f"[{section}.{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Node:
    name: str
    argv: list[str]
    log: Path
    ports: dict[str, int] = field(default_factory=dict)
    fsize_limit: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        limit = self.fsize_limit

        def _limit() -> None:  # runs in the child before exec
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_limit,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (graceful), then SIGKILL after ``timeout``."""
        if not self.alive:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def set_file_size_limit(self, limit: int | None) -> None:
        """Change the node's RLIMIT_FSIZE while it runs (``None``: unlimited) — filling or freeing a disk."""
        soft = resource.RLIM_INFINITY if limit is None else limit
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class ProcNet:
    """Builds and tears down a network of node processes under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sim_home = root / "sim"
        tee.sim_platform(self.sim_home)  # create the shared platform once, before any node reads it
        self.nodes: list[Node] = []
        self.http = httpx.Client(timeout=10)

    # -- generic ---------------------------------------------------------------------------------

    def _node(self, name: str, argv: list[str], **kw: Any) -> Node:
        node = Node(name=name, argv=argv, log=self.root / f"{name}.log", **kw)
        self.nodes.append(node)
        return node

    def _cocoon(self, name: str, role: str, values: dict[str, Any], **kw: Any) -> Node:
        config = write_config(self.root / f"{name}.toml", role, values)
        return self._node(
            name, [sys.executable, "-m", "cocoon.cli.main", role, "--config", str(config)], **kw
        )

    def _tee(self) -> dict[str, Any]:
        return {"backend": "sim", "peer_policy": "sim", "sim_home": str(self.sim_home)}

    def close(self) -> None:
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):
                node.stop(timeout=5)
        self.http.close()

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} ---\n{n.tail()}" for n in self.nodes)

    # -- nodes -----------------------------------------------------------------------------------

    def upstream(self, name: str = "upstream", **script: Any) -> tuple[Node, str]:
        """A fake OpenAI upstream process; returns it and its base URL."""
        node = self.launch_upstream(name, **script)
        return node, self.upstream_url(node)

    def launch_upstream(self, name: str = "upstream", **script: Any) -> Node:
        port_file = self.root / f"{name}.url"
        port_file.unlink(missing_ok=True)
        args = [f"--{k.replace('_', '-')}={v}" for k, v in script.items()]
        argv = [sys.executable, str(HERE / "upstream.py"), str(port_file), f"--model={MODEL}", *args]
        return self._node(name, argv).start()

    def upstream_url(self, node: Node) -> str:
        port_file = self.root / f"{node.name}.url"
        wait_until(port_file.exists, timeout=30, what=f"{node.name} to listen")
        return port_file.read_text().strip()

    def relay(self, target_port: int, *, name: str = "relay", port: int | None = None) -> Node:
        port = port or free_port()
        node = self._node(
            name,
            [sys.executable, str(HERE / "relay.py"), str(port), "127.0.0.1", str(target_port)],
            ports={"listen": port},
        )
        return self.start_relay(node)

    def start_relay(self, node: Node) -> Node:
        node.start()
        wait_until(lambda: "listening" in node.log.read_text(), timeout=20, what=f"{node.name} to listen")
        return node

    def proxy(
        self, name: str = "proxy", *, fsize_limit: int | None = None, wait: bool = True, **overrides: Any
    ) -> Node:
        ports = {"worker_port": free_port(), "client_port": free_port(), "stats_port": free_port()}
        values = {
            "home": str(self.root / name),
            "host": "127.0.0.1",
            **ports,
            "test_credit_nano": CREDIT_NANO,
            **overrides,
            "tee": self._tee(),
        }
        node = self._cocoon(name, "proxy", values, ports=ports, fsize_limit=fsize_limit)
        return self.start_proxy(node, wait=wait)

    def start_proxy(self, node: Node, *, wait: bool = True) -> Node:
        node.start()
        if wait:
            self.wait_proxy(node)
        return node

    def wait_proxy(self, node: Node) -> None:
        wait_until(lambda: self.stats(node)["state"] == "running", timeout=30, what=f"{node.name} to run")

    def worker(self, name: str, proxy_port: int, upstream_url: str, **overrides: Any) -> Node:
        values = {
            "home": str(self.root / name),
            "proxies": [f"127.0.0.1:{proxy_port}"],
            "owner_address": name,
            "health_port": free_port(),
            "engine": {"kind": "http", "url": upstream_url, "model_name": MODEL},
            **overrides,
            "tee": self._tee(),
        }
        return self._cocoon(name, "worker", values).start()

    def client(self, name: str, proxy: Node, *, wait: bool = True, **overrides: Any) -> Node:
        ports = {"http_port": free_port()}
        values = {
            "home": str(self.root / name),
            "http_host": "127.0.0.1",
            **ports,
            "proxies": [f"127.0.0.1:{proxy.ports['client_port']}"],
            "owner_address": name,
            **overrides,
            "tee": self._tee(),
        }
        node = self._cocoon(name, "client", values, ports=ports).start()
        if wait:
            self.wait_until_client(node)
        return node

    def standard(
        self,
        *,
        workers: int = 1,
        upstream: dict[str, Any] | None = None,
        proxy: dict[str, Any] | None = None,
        worker: dict[str, Any] | None = None,
    ) -> tuple[str, Node, list[Node], Node]:
        """Upstream, proxy, ``workers`` workers and a client ``app``, started two phases in parallel
        (each process spends ~2 s importing): returns the upstream URL, proxy, workers and client."""
        up = self.launch_upstream(**(upstream or {}))
        prx = self.proxy(wait=False, **(proxy or {}))
        url = self.upstream_url(up)
        self.wait_proxy(prx)
        nodes = [
            self.worker(f"worker-{chr(97 + i)}", prx.ports["worker_port"], url, **(worker or {}))
            for i in range(workers)
        ]
        app = self.client("app", prx, wait=False)
        self.wait_workers(prx, workers)
        self.wait_until_client(app)
        return url, prx, nodes, app

    # -- views -----------------------------------------------------------------------------------

    def stats(self, proxy: Node) -> dict[str, Any]:
        reply = self.http.get(f"http://127.0.0.1:{proxy.ports['stats_port']}/stats")
        reply.raise_for_status()
        return dict(reply.json())

    def wait_workers(self, proxy: Node, count: int, timeout: float = 30) -> None:
        wait_until(
            lambda: self.stats(proxy)["workers"]["count"] >= count,
            timeout=timeout,
            what=f"{count} workers at {proxy.name}",
        )

    def wait_workers_exactly(self, proxy: Node, count: int, timeout: float = 30) -> None:
        wait_until(
            lambda: self.stats(proxy)["workers"]["count"] == count,
            timeout=timeout,
            what=f"exactly {count} workers at {proxy.name}",
        )

    def wait_until_stats(
        self, proxy: Node, check: Callable[[dict[str, Any]], bool], *, timeout: float, what: str
    ) -> None:
        wait_until(lambda: check(self.stats(proxy)), timeout=timeout, what=what)

    def wait_until_client(self, client: Node, timeout: float = 30) -> None:
        wait_until(lambda: self.client_connected(client), timeout=timeout, what=f"{client.name} to reconnect")

    def client_connected(self, client: Node) -> bool:
        health = self.http.get(f"{self.base(client)}/health").json()
        return any(p["connected"] for p in health["proxies"])

    def base(self, client: Node) -> str:
        return f"http://127.0.0.1:{client.ports['http_port']}"


@contextlib.contextmanager
def procnet(root: Path) -> Iterator[ProcNet]:
    net = ProcNet(root)
    try:
        yield net
    except BaseException:
        print(net.logs())
        raise
    finally:
        net.close()
