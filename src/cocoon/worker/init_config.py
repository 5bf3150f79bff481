"""``cocoon worker init``: the TOML of a worker config, for a local network or a real one.

Pure text from values the CLI gathered (the owner's wallet address, the proxy's image hash); the
CLI validates the result with :class:`~cocoon.worker.config.WorkerConfig` before writing it, so a
written config always loads. Comments say what each value is for, since owners edit the file next.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EngineChoice", "LocalWorkerPlan", "RealWorkerPlan", "local_worker_toml", "real_worker_toml"]


def _q(value: str | Path) -> str:
    """A TOML basic string (JSON's escapes are TOML's for these characters)."""
    return json.dumps(str(value), ensure_ascii=False)


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


@dataclass(frozen=True, slots=True)
class EngineChoice:
    url: str | None = None  # an OpenAI-compatible upstream (vLLM, SGLang, llama.cpp server, Ollama)
    model_path: Path | None = None  # a GGUF for the embedded engine; None: the bundled SmolLM2
    model_name: str | None = None

    def toml(self) -> str:
        lines = ["[worker.engine]"]
        if self.url:
            lines += ['kind = "http"', f"url = {_q(self.url)}"]
        else:
            lines.append('kind = "embedded"                  # llama.cpp in this process')
            if self.model_path:
                lines.append(f"model_path = {_q(self.model_path)}")
            else:
                lines.append(
                    "# model_path = ...                 # default: the bundled SmolLM2-135M-Instruct"
                )
        if self.model_name:
            lines.append(f"model_name = {_q(self.model_name)}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class LocalWorkerPlan:
    """A worker joining ``cocoon up`` on this machine (sim attestation, the network's sim platform)."""

    home: Path
    network_home: Path  # the `cocoon up` home: its simulated TEE platform is shared
    owner_address: str  # a wallet on the embedded chain (payouts go to its worker contract)
    proxy_image_hash: str  # hex: the only proxy image this worker accepts
    proxies: Sequence[str] = ("127.0.0.1:11001",)
    health_port: int = 12100
    engine: EngineChoice = field(default_factory=EngineChoice)


def local_worker_toml(plan: LocalWorkerPlan) -> str:
    return f"""# A worker for the local network of `cocoon up` (written by `cocoon worker init --network local`).
# Check it, then serve:  cocoon worker --config THIS_FILE --check  &&  cocoon worker --config THIS_FILE
[worker]
home = {_q(plan.home)}
proxies = {_list(plan.proxies)}          # the proxy's RA-TLS port for workers
owner_address = {_q(plan.owner_address)}  # paid here (wallet key: <home>/wallet.key)
coefficient = 1000                   # price multiplier, per mille (1000 = 1.0x)
max_active_requests = 8
health_port = {plan.health_port}                  # /health, /metrics and the dashboard (/dashboard/)

{plan.engine.toml()}

[worker.tee]
backend = "sim"                      # simulated TDX: development only
peer_policy = "sim"
sim_home = {_q(plan.network_home)}   # the network's simulated platform, so the proxy trusts our quotes
allowed_image_hashes = [{_q(plan.proxy_image_hash)}]  # the local proxy's image
"""


@dataclass(frozen=True, slots=True)
class RealWorkerPlan:
    """A worker on a real network: TDX, a root contract on TON read through liteservers."""

    home: Path
    owner_address: str
    root_address: str
    lite_config: Path
    engine: EngineChoice
    proxies: Sequence[str] = ()  # empty: dial every proxy the root contract registers
    gpu_class: str = "H100"
    region: str = "eu"
    pccs_url: str | None = None
    health_port: int = 12000


def real_worker_toml(plan: RealWorkerPlan) -> str:
    proxies = (
        f"proxies = {_list(plan.proxies)}\n"
        if plan.proxies
        else "# proxies: every proxy the root contract registers (see [worker.root])\n"
    )
    pccs = (
        f"pccs_url = {_q(plan.pccs_url)}"
        if plan.pccs_url
        else '# pccs_url = "https://pccs.example:8081"  # collateral for peers\' quotes'
    )
    return f"""# A worker on a real Cocoon network (written by `cocoon worker init --network real`).
# Run inside a TDX guest with the GPU in confidential-computing mode. Check it, then serve:
#   cocoon worker --config THIS_FILE --check  &&  cocoon worker --config THIS_FILE
[worker]
home = {_q(plan.home)}
owner_address = {_q(plan.owner_address)}  # your TON wallet: paid through your worker contract
{proxies}coefficient = 1000                   # price multiplier, per mille (1000 = 1.0x)
max_active_requests = 8
gpu_class = {_q(plan.gpu_class)}
region = {_q(plan.region)}
health_port = {plan.health_port}                  # loopback only: /health, /metrics, /dashboard/

{plan.engine.toml()}

[worker.tee]
backend = "tdx"                      # quotes from configfs-tsm
peer_policy = "tdx"                  # proxies must be real TDX guests of an image the root allows
{pccs}

[worker.root]                        # the root contract decides allowed models and the proxies
kind = "lite"
config_path = {_q(plan.lite_config)}  # TON global config (testnet or mainnet)
root_address = {_q(plan.root_address)}
proxies_from_root = {"false" if plan.proxies else "true"}
"""
