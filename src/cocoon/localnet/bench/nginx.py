"""nginx as the reference 3-hop TLS chain of the gateway benchmark (found on the system, never installed).

The chain mirrors cocoon's: the app speaks plain HTTP to hop 1 (like the client), hop 1 → hop 2 →
hop 3 is mutual TLS 1.3 (like client → proxy → worker), hop 3 speaks plain HTTP to the upstream
(like the worker). Every hop has one worker process, keep-alive upstream connections and
``proxy_buffering off`` (each SSE event is forwarded as it arrives). Two layouts: ``separate`` runs
one nginx per hop (a machine per node), ``one`` runs the three hops as server blocks of one nginx.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from cocoon.localnet.bench.pki import TlsFiles, write_tls_files
from cocoon.localnet.bench.processes import Child, Layout, free_port, stop_all, wait_for

__all__ = ["HOP_NAMES", "Hop", "NginxChain", "find_nginx", "render_config", "render_hop"]

HOP_NAMES = ["hop1", "hop2", "hop3"]
_TEMP_MODULES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def find_nginx() -> str | None:
    """The nginx binary, also where ``PATH`` lacks the sbin directories; None when not installed."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class Hop:
    name: str
    port: int
    tls_in: bool  # listens with mutual TLS (hops 2 and 3); hop 1 takes the app's plain HTTP
    next_port: int
    next_name: str | None  # the next hop's certificate name; None: the plain-HTTP upstream


def render_hop(hop: Hop, tls: TlsFiles) -> str:
    """One ``upstream`` + ``server`` block: listen (plain or mutual TLS), proxy to the next hop."""
    own = tls.hops[hop.name]
    scheme = "https" if hop.next_name else "http"
    lines = [
        f"upstream {hop.name}_next {{ server 127.0.0.1:{hop.next_port}; keepalive 64; keepalive_requests 1000000; }}",
        "server {",
        f"  listen 127.0.0.1:{hop.port}{' ssl' if hop.tls_in else ''};",
        "  keepalive_requests 1000000;",
    ]
    if hop.tls_in:
        lines += [
            f"  ssl_certificate {own.cert}; ssl_certificate_key {own.key};",
            f"  ssl_client_certificate {tls.ca}; ssl_verify_client on;",
            "  ssl_protocols TLSv1.3;",
        ]
    lines += [
        "  location / {",
        f"    proxy_pass {scheme}://{hop.name}_next;",
        '    proxy_http_version 1.1; proxy_set_header Connection "";',
        "    proxy_buffering off; proxy_request_buffering off;",
    ]
    if hop.next_name:
        lines += [
            f"    proxy_ssl_certificate {own.cert}; proxy_ssl_certificate_key {own.key};",
            f"    proxy_ssl_trusted_certificate {tls.ca}; proxy_ssl_verify on; proxy_ssl_name {hop.next_name};",
            "    proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on;",
        ]
    lines += ["  }", "}"]
    return "\n".join(lines)


def render_config(
    name: str, prefix: Path, hops: Sequence[Hop], tls: TlsFiles, temp_modules: Sequence[str]
) -> str:
    """A complete nginx.conf: one worker, in the foreground, every file under ``prefix``."""
    temp = "\n".join(f"  {m}_temp_path {prefix / 'temp' / name / m};" for m in temp_modules)
    servers = "\n".join(render_hop(hop, tls) for hop in hops)
    # As root the worker would drop to "nobody" and lose the temp dirs the master made in a 0700 dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\ndaemon off;\npid {prefix / (name + '.pid')};\n"
        f"error_log {prefix / (name + '.error.log')} warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{\n  access_log off;\n{temp}\n{servers}\n}}\n"
    )


def _temp_modules(binary: str) -> list[str]:
    """The temp-path directives this build knows (a module built out has no directive)."""
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr
    return [m for m in _TEMP_MODULES if m == "client_body" or f"--without-http_{m}_module" not in built]


class NginxChain:
    """Three nginx hops in front of ``upstream_port``, in the given layout, under ``root``."""

    def __init__(self, binary: str, root: Path, upstream_port: int, layout: Layout) -> None:
        self.binary = binary
        self.root = root
        self.layout = layout
        ports = [free_port() for _ in HOP_NAMES]
        self.hops = [
            Hop(
                name=name,
                port=ports[i],
                tls_in=i > 0,
                next_port=ports[i + 1] if i + 1 < len(ports) else upstream_port,
                next_name=HOP_NAMES[i + 1] if i + 1 < len(ports) else None,
            )
            for i, name in enumerate(HOP_NAMES)
        ]
        self.children: list[Child] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.hops[0].port}/v1/chat/completions"

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def _launch(self, name: str, hops: Sequence[Hop], tls: TlsFiles, modules: Sequence[str]) -> Child:
        for module in modules:
            (self.root / "temp" / name / module).mkdir(parents=True, exist_ok=True)
        conf = self.root / f"{name}.conf"
        conf.write_text(render_config(name, self.root, hops, tls, modules))
        argv = [self.binary, "-p", str(self.root), "-c", str(conf)]
        return Child(name=f"nginx-{name}", argv=argv, log=self.root / f"{name}.log").start()

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tls = write_tls_files(self.root / "tls", HOP_NAMES)
        modules = _temp_modules(self.binary)
        groups = [[hop] for hop in self.hops] if self.layout == "separate" else [self.hops]
        for group in groups:
            self.children.append(self._launch("-".join(h.name for h in group), group, tls, modules))
        async with httpx.AsyncClient(timeout=2) as http:

            async def answers() -> bool:
                reply = await http.get(f"http://127.0.0.1:{self.hops[0].port}/v1/models")
                return reply.status_code == 200

            await wait_for(answers, what=f"nginx chain ({self.layout}) to answer", watch=self.children)

    def stop(self) -> None:
        stop_all(self.children)
