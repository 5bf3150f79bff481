"""``cocoon worker init`` writes configs that load and serve; ``cocoon worker --check`` finds what
would keep a worker from serving, naming it, before it serves anything."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cocoon.cli.main import app
from cocoon.core.settings import load_config
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.worker import Worker, WorkerConfig
from cocoon.worker.check import check_worker

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


def _init(*args: str) -> object:
    return CliRunner().invoke(app, ["worker", "init", *args])


async def test_init_for_the_local_network_checks_and_serves(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path / "net", workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=2))) as net:
        assert net.proxy is not None
        home = tmp_path / "second"
        result = _init(
            "--home", str(home), "--network-home", str(tmp_path / "net"),
            "--proxy", f"127.0.0.1:{net.proxy.worker_port}", "--health-port", "0",
        )  # fmt: skip
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        worker_config = load_config(WorkerConfig, home / "worker.toml", section="worker", environ={})
        assert worker_config.tee.sim_home == (tmp_path / "net").resolve()

        lines = await check_worker(worker_config, engine=ScriptedEngine(Script(chunks=2)))
        assert all(line.ok for line in lines), lines
        assert lines[-1].what == f"proxy 127.0.0.1:{net.proxy.worker_port}"
        assert len(net.proxy.registry.records()) == 1  # the check left again

        second = Worker(worker_config, engine=ScriptedEngine(Script(chunks=2)))
        async with second:
            await second.wait_connected()
            async with httpx.AsyncClient(base_url=net.base_url, timeout=30) as http:
                for _ in range(6):
                    (await http.post("/chat/completions", json=CHAT)).raise_for_status()
            assert second.counters["served"] >= 1  # a newcomer gets its share at once


async def test_check_names_why_a_proxy_would_not_have_this_worker(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path / "net", workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=2))) as net:
        assert net.proxy is not None
        home = tmp_path / "second"
        result = _init(
            "--home",
            str(home),
            "--network-home",
            str(tmp_path / "net"),
            "--proxy",
            f"127.0.0.1:{net.proxy.worker_port}",
        )
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        good = load_config(WorkerConfig, home / "worker.toml", section="worker", environ={})
        # The worker accepts only another proxy image: this proxy is refused, and the check says so.
        picky = good.model_copy(
            update={"tee": good.tee.model_copy(update={"allowed_image_hashes": ["ab" * 32]})}
        )
        lines = await check_worker(picky, engine=ScriptedEngine(Script()), timeout_s=3)
        proxy_line = lines[-1]
        assert not proxy_line.ok and "image" in proxy_line.detail.lower(), lines
        # Nothing listens there.
        nowhere = good.model_copy(update={"proxies": ["127.0.0.1:1"]})
        lines = await check_worker(nowhere, engine=ScriptedEngine(Script()), timeout_s=2)
        assert not lines[-1].ok and lines[-1].what == "proxy 127.0.0.1:1"
        assert len(net.proxy.registry.records()) == 1


def test_check_of_a_worker_that_cannot_start_says_why(tmp_path: Path) -> None:
    import asyncio

    config = WorkerConfig(home=tmp_path / "w", allowed_model_hashes=["00" * 32], health_port=0)
    lines = asyncio.run(check_worker(config, engine=ScriptedEngine(Script())))
    assert [line.what for line in lines] == ["config", "start"]
    assert not lines[-1].ok and "not allowed" in lines[-1].detail


def test_cli_check_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text(
        f'[worker]\nhome = "{tmp_path / "w"}"\nproxies = ["127.0.0.1:1"]\n[worker.engine]\nkind = "http"\nurl = "http://127.0.0.1:1"\nmodel_name = "m"\n'
    )
    result = CliRunner().invoke(app, ["worker", "--config", str(cfg), "--check", "--json"])
    assert result.exit_code == 1, result.output


def test_init_for_a_real_network_needs_its_values_and_writes_a_loadable_config(tmp_path: Path) -> None:
    out = tmp_path / "real.toml"
    result = _init("--network", "real", "--out", str(out))
    assert result.exit_code == 1 and "--owner" in result.output and not out.exists()  # type: ignore[attr-defined]
    lite = tmp_path / "global.config.json"
    lite.write_text("{}")
    owner = "EQDVRPeQBRoAl8Rj-03T657DbYMcCxYU9tT0gEeRyuwO3ohg"
    args = [
        "--network",
        "real",
        "--out",
        str(out),
        "--owner",
        owner,
        "--root",
        owner,
        "--lite-config",
        str(lite),
    ]
    assert _init(*args, "--engine-url", "http://127.0.0.1:8000").exit_code == 0  # type: ignore[attr-defined]
    section = tomllib.loads(out.read_text())["worker"]
    config = WorkerConfig.model_validate(section)
    assert config.tee.backend == "tdx" and config.tee.peer_policy == "tdx"
    assert config.root is not None and config.root.kind == "lite" and config.root.proxies_from_root
    assert config.engine.kind == "http"
    again = _init(*args, "--engine-url", "http://127.0.0.1:8000")
    assert again.exit_code == 1 and "--force" in again.output  # type: ignore[attr-defined]
    bad = _init(*args, "--engine-url", "ftp://nope", "--force")
    assert bad.exit_code == 1 and "would not load" in bad.output  # type: ignore[attr-defined]
    assert tomllib.loads(out.read_text())["worker"]["engine"]["url"] == "http://127.0.0.1:8000"  # unchanged


@pytest.mark.parametrize("network", ["moon"])
def test_init_refuses_an_unknown_network(network: str, tmp_path: Path) -> None:
    assert _init("--network", network, "--out", str(tmp_path / "x.toml")).exit_code != 0  # type: ignore[attr-defined]
