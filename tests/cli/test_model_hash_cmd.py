"""`cocoon worker model-hash`: junk beside the weights (__pycache__, .git, editor and OS files) is
left out by the documented rule, the hash equals what a worker computes at start (one function),
`--json` says what was read and skipped, and a terminal gets a progress bar over the bytes."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from cocoon.cli.main import app
from cocoon.inference import Script, ScriptedEngine, model_hash
from cocoon.inference.model_hash import CHUNK_SIZE, model_files
from cocoon.worker import Worker, WorkerConfig
from cocoon.worker.weights import hash_weights

WEIGHTS = {
    "config.json": b'{"layers": 2}',
    "model.safetensors": b"\x01" * (CHUNK_SIZE + 7),
    "tokenizer/tokenizer.json": b"{}",
    ".gitattributes": b"*.safetensors filter=lfs",  # a tracked file of the model repo: hashed
}
JUNK = {
    "__pycache__/modeling.cpython-311.pyc": b"\x00junk",
    "tokenizer/__pycache__/x.pyc": b"junk",
    ".git/HEAD": b"ref: refs/heads/main",
    ".cache/huggingface/download/model.safetensors.metadata": b"etag",
    ".DS_Store": b"\x00\x00",
    "._model.safetensors": b"apple double",
    "config.json~": b"backup",
    ".config.json.swp": b"vim",
    "Thumbs.db": b"win",
    ".idea/workspace.xml": b"<x/>",
}


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


class _EngineWithWeights(ScriptedEngine):
    def __init__(self, path: Path) -> None:
        super().__init__(Script(chunks=1))
        self.model_path = path


def test_junk_is_left_out_and_the_worker_agrees(tmp_path: Path) -> None:
    clean, messy = tmp_path / "clean", tmp_path / "messy"
    _write(clean, WEIGHTS)
    _write(messy, {**WEIGHTS, **JUNK})
    expected = model_hash(clean)
    assert model_hash(messy) == expected
    assert model_hash(messy) != model_hash(clean / "config.json")  # not everything is skipped

    result = CliRunner().invoke(app, ["--json", "worker", "model-hash", str(messy)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model_hash"] == expected.hex()
    assert doc["files"] == len(WEIGHTS) and doc["bytes"] == sum(map(len, WEIGHTS.values()))
    assert set(doc["skipped"]) == {
        "__pycache__/",
        "tokenizer/__pycache__/",
        ".git/",
        ".cache/",
        ".idea/",
        ".DS_Store",
        "._model.safetensors",
        "config.json~",
        ".config.json.swp",
        "Thumbs.db",
    }
    plain = CliRunner().invoke(app, ["worker", "model-hash", str(messy)])
    assert plain.exit_code == 0 and plain.stdout.strip() == expected.hex()

    worker = Worker(WorkerConfig(home=tmp_path / "w"), engine=_EngineWithWeights(messy))
    assert worker._compute_model_hash() == expected  # what it would announce at start


def test_a_weight_file_changing_changes_the_hash(tmp_path: Path) -> None:
    _write(tmp_path, {**WEIGHTS, **JUNK})
    before = model_hash(tmp_path)
    (tmp_path / "__pycache__" / "new.pyc").write_bytes(b"more junk")
    assert model_hash(tmp_path) == before
    (tmp_path / "tokenizer" / "tokenizer.json").write_bytes(b"{ }")
    assert model_hash(tmp_path) != before


def test_progress_bar_counts_every_byte(tmp_path: Path) -> None:
    _write(tmp_path, {**WEIGHTS, **JUNK})
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    digest = hash_weights(tmp_path, log=logging.getLogger("t"), interactive=True, console=console)
    assert digest == model_hash(tmp_path)
    assert f"hashing {tmp_path.name}" in screen.getvalue()
    assert model_files(tmp_path).size == sum(map(len, WEIGHTS.values()))
