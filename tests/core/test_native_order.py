"""llama.cpp and tonpy in one process: the embedded model still loads after the chain is imported.

Runs in a fresh interpreter because the failure depends on which native library initialises first.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import asyncio
import cocoon.chain  # primes llama.cpp, then brings tonpy in
import tonpy  # noqa: F401
from cocoon.inference import EmbeddedEngine

async def main():
    engine = EmbeddedEngine(n_ctx=256)
    await engine.start()
    print("loaded", engine.model_name)
    await engine.aclose()

asyncio.run(main())
"""


@pytest.mark.slow
def test_model_loads_after_the_chain_in_one_process() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded SmolLM2" in done.stdout
