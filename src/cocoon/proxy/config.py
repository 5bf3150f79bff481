"""The proxy's configuration (TOML section ``[proxy]``, env ``COCOON_PROXY__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cocoon.chain import ChainSettings, check_address
from cocoon.node.trust import TeeSettings

__all__ = [
    "DEFAULT_CLIENT_PORT",
    "DEFAULT_STATS_PORT",
    "DEFAULT_WORKER_PORT",
    "IntegritySettings",
    "PricingSettings",
    "ProxyChainSettings",
    "ProxyConfig",
]

DEFAULT_STATS_PORT = 11000
DEFAULT_WORKER_PORT = 11001
DEFAULT_CLIENT_PORT = 11002


class PricingSettings(BaseModel):
    """Prices used until (and unless) the root contract provides them (nanoTON per adjusted token)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price_per_token: int = Field(2000, ge=0)
    worker_fee_per_token: int = Field(1000, ge=0)
    prompt_mult: int = Field(10000, ge=0)
    cached_mult: int = Field(10000, ge=0)
    completion_mult: int = Field(10000, ge=0)
    reasoning_mult: int = Field(10000, ge=0)


class ProxyChainSettings(ChainSettings):
    """The proxy on a TON chain (``cocoon.proxy.chain_sync``). Without it the proxy bills from test credit.

    The root contract then supplies prices and the allowed worker image / model hashes; client balances
    come from client contracts. Amounts are nanoTON. Keys are 32-byte Ed25519 seeds (hex) kept under the
    proxy's home unless given: the signing key signs IOUs and state commits (the proxy contract is bound
    to it; in a TEE derive it from the sealed key), the wallet key pays the fees of posting them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    root_address: str  # the connection fields (local_path or lite servers) are ChainSettings'
    signing_key_file: Path | None = None  # default <home>/chain-signing.key
    wallet_key_file: Path | None = None  # default <home>/chain-wallet.key
    sync_interval_s: float = Field(2.0, gt=0, le=3600)  # the settlement loop's period
    root_refresh_s: float = Field(30.0, gt=0, le=86400)  # how often the root config is re-read
    commit_interval_s: int = Field(30, ge=1)  # state commits at most this often while state moves
    fee_estimate_nano: int = Field(10_000_000, ge=0)
    min_client_charge_nano: int = Field(500_000_000, ge=0)  # below the default 1 TON client stake
    min_worker_payout_nano: int = Field(10_000_000_000, ge=0)
    min_idle_worker_payout_nano: int = Field(200_000_000, ge=0)
    max_fee_ratio: float = Field(0.05, gt=0, le=1)
    # Move the proxy contract's fees to the wallet once they reach this much (0 = never).
    withdraw_fees_above_nano: int = Field(10_000_000_000, ge=0)
    # A closing client with nothing running and everything charged is refunded at once (reference
    # §4.7) instead of waiting for its close delay.
    grant_refunds: bool = True
    # Deploy our proxy contract from the wallet (stake = the root's minimum) when it does not exist.
    open_contract: bool = True

    _root_is_an_address = field_validator("root_address")(check_address)


class IntegritySettings(BaseModel):
    """Spot checks, evidence and slashing, lasting reputation (``[proxy.integrity]``, proxy.integrity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spot_check_every_requests: int = Field(50, ge=0, le=1_000_000)  # mean requests per round; 0 = off
    spot_check_max_interval_s: float = Field(600.0, gt=0)  # a round at least this often per model hash
    spot_check_workers: int = Field(3, ge=1, le=16)  # workers of one model hash asked the same canary
    spot_check_max_tokens: int = Field(24, ge=1, le=4096)
    spot_check_trusted_workers: list[str] = Field(default_factory=list, max_length=1024)
    spot_check_prompts_file: Path | None = (
        None  # your own canary prompts, one a line (the built-in pool is public)
    )
    slash_permille: int = Field(100, ge=0, le=1000)  # of a worker's stake per proven misbehaviour
    save_interval_s: float = Field(5.0, gt=0, le=3600)  # reputation saved this often while it changes


class ProxyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Path("~/.cocoon/proxy").expanduser()
    host: str = "127.0.0.1"
    worker_port: int = Field(DEFAULT_WORKER_PORT, ge=0, le=65535)
    client_port: int = Field(DEFAULT_CLIENT_PORT, ge=0, le=65535)
    stats_host: str = "127.0.0.1"
    stats_port: int = Field(DEFAULT_STATS_PORT, ge=0, le=65535)
    # Host names the stats port (/stats, /metrics, /dashboard/) answers besides localhost and IP
    # literals (the DNS-rebinding guard), e.g. the name Prometheus scrapes it by.
    stats_allowed_hosts: list[str] = Field(default_factory=list, max_length=64)
    owner_address: str = ""
    pricing: PricingSettings = PricingSettings()
    # Local/test networks only: credit a newly seen client with this much (nanoTON) when no chain
    # funds it. 0 in production: no work without funds on chain.
    test_credit_nano: int = Field(0, ge=0)
    max_attempts: int = Field(3, ge=1, le=10)  # tries on different workers before the first byte
    first_byte_timeout_s: float = Field(30.0, gt=0, le=3600)
    # After an app hangs up mid-answer, read the worker's answer this long (not relaying it) for its
    # own usage, so the prompt it consumed is billed at its count rather than an estimate.
    cancel_drain_s: float = Field(1.0, ge=0, le=60)
    # A streaming answer's delivered tokens are recorded durably at most every N tokens or T seconds:
    # a crash of the proxy charges what was recorded (loses at most one interval).
    progress_every_tokens: int = Field(32, ge=1, le=1_000_000)
    progress_every_s: float = Field(1.0, gt=0, le=3600)
    # Finished requests are kept this many days after they were made, then pruned (0: forever). Money never reads them:
    # accounts keep running totals, and the operator view counters.
    request_history_days: float = Field(30.0, ge=0, le=36500)
    tee: TeeSettings = TeeSettings()  # own attestation, and the policy for workers
    # Clients may run on laptops without a TEE (the reference accepts them "@any"); their
    # certificates are still checked for self-signature, validity and key binding.
    client_peer_policy: Literal["sim", "tdx", "any"] = "any"
    chain: ProxyChainSettings | None = None  # None: no chain (test credit, `pricing` above)
    integrity: IntegritySettings = IntegritySettings()

    @model_validator(mode="after")
    def _owner_is_a_wallet_on_a_chain(self) -> Self:
        if self.chain is not None and self.owner_address:
            check_address(self.owner_address)
        return self
