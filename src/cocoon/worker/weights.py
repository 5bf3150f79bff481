"""The weights an HTTP engine serves: hashed from the directory it was started from, and confirmed
by the engine itself.

For an embedded engine the worker hashes the file it loads. An HTTP engine (vLLM, SGLang,
llama.cpp's server) loads its own weights, so the worker is told the directory
(``[worker.engine] model_path``), hashes it with the same Merkle hash (:func:`model_hash`, with a
progress bar), and asks the engine which path it was started from: vLLM and SGLang report it as the
model card's ``root`` in ``GET /v1/models``, SGLang also as ``model_path`` in ``GET /get_model_info``,
llama.cpp as ``model_path`` in ``GET /props``. A worker whose engine names another path, or none,
refuses to start: the hash it would announce would not be the weights it serves. In a TDX image the
directory is a dm-verity volume mounted read-only (README), so what was hashed cannot change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from cocoon.errors import ServiceError
from cocoon.inference import model_hash
from cocoon.inference.model_hash import model_files

__all__ = [
    "engine_model_paths",
    "hash_weights",
    "paths_from_answers",
    "same_path",
    "verify_engine_weights",
    "watch_engine_weights",
]

_PROBES = ("/v1/models", "/get_model_info", "/props")
MAX_ANSWER = 1 << 20
_LOG_EVERY = 0.1  # without a terminal: a log line per 10 %
WEIGHTS_CHECK_S = 60.0  # how often a running worker asks its engine again


def paths_from_answers(answers: Mapping[str, Any], model_name: str) -> list[str]:
    """The model paths an engine reported, from its answers to :data:`_PROBES` (sans-IO)."""
    found: list[str] = []
    models = answers.get("/v1/models")
    if isinstance(models, Mapping) and isinstance(models.get("data"), list):
        for card in models["data"]:
            if (
                isinstance(card, Mapping)
                and card.get("id") == model_name
                and isinstance(card.get("root"), str)
            ):
                found.append(card["root"])
    for probe in ("/get_model_info", "/props"):
        body = answers.get(probe)
        if isinstance(body, Mapping) and isinstance(body.get("model_path"), str):
            found.append(body["model_path"])
    return found


def same_path(reported: str, weights: Path) -> bool:
    """Whether the engine's path is the directory (or file) the worker hashed, links resolved."""
    if not os.path.isabs(reported):
        return False  # a hub id or a relative path: not provably these weights
    return os.path.realpath(reported) == os.path.realpath(weights)


async def engine_model_paths(
    url: str, model_name: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> list[str]:
    """Ask the engine at ``url`` which model path it serves ``model_name`` from."""
    answers: dict[str, Any] = {}
    async with httpx.AsyncClient(
        base_url=url.rstrip("/").removesuffix("/v1"), timeout=10.0, transport=transport
    ) as http:
        for probe in _PROBES:
            try:
                response = await http.get(probe)
                if response.status_code == 200 and len(response.content) <= MAX_ANSWER:
                    answers[probe] = response.json()
            except (httpx.HTTPError, ValueError):
                continue  # this engine has no such endpoint
    return paths_from_answers(answers, model_name)


async def verify_engine_weights(
    url: str, model_name: str, weights: Path, *, transport: httpx.AsyncBaseTransport | None = None
) -> str:
    """The engine's path for its model when it is ``weights``; raises :class:`ServiceError` otherwise."""
    reported = await engine_model_paths(url, model_name, transport=transport)
    if not reported:
        raise ServiceError(
            f"the engine at {url} does not report the path of {model_name!r} (no root in /v1/models, "
            f"no model_path in /get_model_info or /props), so {weights} cannot be shown to be what it serves"
        )
    wrong = [path for path in reported if not same_path(path, weights)]
    if wrong:
        raise ServiceError(
            f"the engine at {url} serves {model_name!r} from {wrong[0]}, not from {weights} (the weights "
            "this worker hashed and would announce); start the engine from that directory"
        )
    return reported[0]


def hash_weights(
    path: Path,
    *,
    log: logging.Logger,
    interactive: bool | None = None,
    console: Console | None = None,
) -> bytes:
    """:func:`model_hash` of ``path`` with a progress bar over bytes on a terminal (stderr, or
    ``console``), log lines otherwise. The worker at start and `cocoon worker model-hash` both call
    this, so the hash an owner allows is the one the worker announces."""
    files = model_files(path)
    total = files.size
    interactive = sys.stderr.isatty() if interactive is None else interactive
    log.info("hashing the weights in %s (%.1f GiB)", path, total / 2**30)
    if files.skipped:
        log.info("left out of the hash (not weights): %s", ", ".join(files.skipped))
    if interactive:
        columns = (
            "{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True, console=console or Console(stderr=True)) as bar:
            task = bar.add_task(f"hashing {path.name}", total=total)
            digest = model_hash(path, workers=4, progress=lambda n: bar.advance(task, n))
    else:
        done = [0, 0.0]  # bytes so far, fraction last logged
        lock = threading.Lock()

        def advance(n: int) -> None:
            with lock:
                done[0] += n
                fraction = done[0] / total if total else 1.0
                if fraction - done[1] >= _LOG_EVERY:
                    done[1] = fraction
                    log.info("hashing %s: %d%%", path.name, int(fraction * 100))

        digest = model_hash(path, workers=4, progress=advance)
    log.info("model hash of %s: %s", path, digest.hex())
    return digest


async def watch_engine_weights(
    url: str,
    model_name: str,
    weights: Path,
    *,
    on_mismatch: Callable[[str], None],
    interval_s: float = WEIGHTS_CHECK_S,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Ask the engine again every ``interval_s``: an engine restarted from other weights while the
    worker runs would serve them under the announced hash. ``on_mismatch`` is called once (the
    worker then stops taking requests); rounds in which the engine answers nothing are skipped."""
    while True:
        await asyncio.sleep(interval_s)
        reported = await engine_model_paths(url, model_name, transport=transport)
        wrong = [path for path in reported if not same_path(path, weights)]
        if wrong:
            on_mismatch(f"the engine at {url} now serves {model_name!r} from {wrong[0]}, not from {weights}")
            return
