"""A PCCS for the simulated platform: Intel's PCS v4 endpoints over HTTP, backed by a :class:`SimPlatform`.

Lets nodes on several machines share one simulated platform the way production nodes share
Intel's PCS: each node points :class:`~cocoon.tee.collateral.PccsCollateral` at this server and
trusts the sim root. Development only — production collateral comes from Intel or a real PCCS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cocoon.tee.sim import SimPlatform

__all__ = ["SimPccsServer"]


class SimPccsServer:
    """``start()`` binds and serves in a background thread; ``stop()`` shuts down. Context manager too."""

    def __init__(
        self,
        platform: SimPlatform,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.platform = platform
        self._clock = clock
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = outer.platform.pccs_response(self.path, now=int(outer._clock()))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimPccsServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> SimPccsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
