"""The market's terms on chain from the CLI: the root's service classes and collateral rules, its
governed code upgrade, and a worker owner's stake.

``cocoon chain root market|set-class|remove-class|set-collateral|upgrade-code`` reuse the root
commands' wallet store, chain and refusal sentences (:mod:`cocoon.cli.chain_cmd`); every argument is
checked against the root's current state before anything is sent. ``cocoon worker stake`` sends the
stake from the worker owner's wallet to the worker contract of one proxy.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from cocoon.cli import chain_cmd as cc
from cocoon.cli.options import global_options

__all__ = [
    "root_market",
    "root_remove_class",
    "root_set_class",
    "root_set_collateral",
    "root_upgrade_code",
    "worker_stake",
    "worker_unstake",
]


def _class_rows(cfg: Any) -> dict[str, Any]:
    rows: dict[str, Any] = {
        "service_classes": "on chain" if cfg.service_classes_held else "defaults (the root holds none)",
    }
    for name, sc in sorted(cfg.service_classes.items()):
        rows[f"class {name}"] = (
            f"price ×{sc.price_multiplier / 1000:g}, TTFT ≤ {sc.target_ttft_ms} ms, ≥ {sc.min_tokens_per_s} tokens/s, "
            f"{sc.max_retries} retries, success ≥ {sc.min_success_rate_permille} ‰"
        )
    col = cfg.collateral
    rows["collateral"] = "on chain" if cfg.collateral_held else "defaults (the root holds none)"
    rows["min_worker_stake_nano"] = col.min_worker_stake
    rows["dispute_window_s"] = col.dispute_window_s
    rows["max_slash_permille"] = col.max_slash_permille
    return rows


def root_market(ctx: typer.Context, root: cc.RootOpt = None) -> None:
    """The service classes and collateral rules the root holds (or the defaults standing in)."""
    c: cc.Ctx = ctx.obj
    from cocoon.chain import fetch_root_config

    raddr = cc._root_address(c, root)

    async def go() -> Any:
        async with cc._open_chain(c) as chain:
            return await fetch_root_config(chain, raddr)

    cfg = cc._run(go())
    if c.json:
        typer.echo(
            json.dumps(
                {
                    "service_classes_held": cfg.service_classes_held,
                    "service_classes": {n: _class_dict(sc) for n, sc in sorted(cfg.service_classes.items())},
                    "collateral_held": cfg.collateral_held,
                    "min_worker_stake_nano": cfg.collateral.min_worker_stake,
                    "dispute_window_s": cfg.collateral.dispute_window_s,
                    "max_slash_permille": cfg.collateral.max_slash_permille,
                }
            )
        )
        return
    cc._emit(c, "market", _class_rows(cfg))


def _class_dict(sc: Any) -> dict[str, Any]:
    return {
        "price_multiplier": sc.price_multiplier,
        "target_ttft_ms": sc.target_ttft_ms,
        "min_tokens_per_s": sc.min_tokens_per_s,
        "max_retries": sc.max_retries,
        "min_success_rate_permille": sc.min_success_rate_permille,
    }


def root_set_class(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Class name: [a-z][a-z0-9_-]{0,15}.")],
    price_multiplier: Annotated[
        int, typer.Option(help="Price per mille of the base price (1000 = 1×).")
    ] = 1000,
    ttft_ms: Annotated[int, typer.Option(help="Target time to first token, ms (0: none).")] = 0,
    min_tokens_per_s: Annotated[int, typer.Option(help="Minimum decode speed (0: none).")] = 0,
    max_retries: Annotated[int, typer.Option(help="Attempts on other workers after a failure (0..16).")] = 2,
    min_success_permille: Annotated[int, typer.Option(help="Success rate a worker needs, ‰ (0..1000).")] = 0,
    wallet: cc.WalletOpt = "owner",
    root: cc.RootOpt = None,
) -> None:
    """Add or replace a service class on the root."""
    from cocoon.chain import ServiceClass

    try:
        sc = ServiceClass(
            name=name,
            price_multiplier=price_multiplier,
            target_ttft_ms=ttft_ms,
            min_tokens_per_s=min_tokens_per_s,
            max_retries=max_retries,
            min_success_rate_permille=min_success_permille,
        )
    except ValueError as exc:
        raise cc._fail(str(exc)) from None

    def check(cfg: Any) -> None:
        if cfg.service_classes_held and cfg.service_classes.get(name) == sc:
            raise cc._fail(f"the root holds class {name!r} with these terms already: nothing to change")

    cc._root_op(
        ctx.obj, wallet, root, "SET_SERVICE_CLASS", f"set service class {name}", check, service_class=sc
    )


def root_remove_class(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A class the root holds.")],
    wallet: cc.WalletOpt = "owner",
    root: cc.RootOpt = None,
) -> None:
    """Remove a service class (when the root holds none, the defaults apply again)."""

    def check(cfg: Any) -> None:
        if not cfg.service_classes_held or name not in cfg.service_classes:
            held = sorted(cfg.service_classes) if cfg.service_classes_held else []
            raise cc._fail(f"the root holds no class {name!r} (it holds {held or 'none'}): nothing to remove")

    cc._root_op(
        ctx.obj, wallet, root, "REMOVE_SERVICE_CLASS", f"remove service class {name}", check, name=name
    )


def root_set_collateral(
    ctx: typer.Context,
    min_stake: Annotated[str, typer.Option(help="TON a worker must stake before it may serve.")] = "0",
    dispute_window: Annotated[int, typer.Option(help="Seconds a slash claim waits for a dispute.")] = 3600,
    max_slash_permille: Annotated[int, typer.Option(help="The most of the stake one slash takes, ‰.")] = 1000,
    wallet: cc.WalletOpt = "owner",
    root: cc.RootOpt = None,
) -> None:
    """Set the worker collateral rules."""
    from cocoon.chain import Collateral

    try:
        col = Collateral(
            min_worker_stake=cc._ton(min_stake),
            dispute_window_s=dispute_window,
            max_slash_permille=max_slash_permille,
        )
    except ValueError as exc:
        raise cc._fail(str(exc)) from None

    def check(cfg: Any) -> None:
        if cfg.collateral_held and cfg.collateral == col:
            raise cc._fail("the root holds these collateral rules already: nothing to change")

    cc._root_op(ctx.obj, wallet, root, "SET_COLLATERAL", "set the collateral rules", check, collateral=col)


def _read_cell(path: Path, what: str) -> Any:
    """A cell from a file: a BOC, or a build JSON of ``make contracts`` (``codeBoc64``)."""
    from cocoon.chain._ton import Cell

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise cc._fail(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        if raw.lstrip().startswith(b"{"):
            raw = base64.b64decode(json.loads(raw)["codeBoc64"])
        return Cell.one_from_boc(raw)
    except Exception:  # pytoniq-core raises many unrelated types on a bad BOC
        raise cc._fail(f"{what} {path} is neither a BOC nor a build JSON with codeBoc64") from None


def root_upgrade_code(
    ctx: typer.Context,
    code: Annotated[Path, typer.Argument(help="New code: a BOC file or a build/<name>.json.")],
    migration: Annotated[
        Path | None, typer.Option(help="BOC of the whole new data (starts owner, version + 1).")
    ] = None,
    wallet: cc.WalletOpt = "owner",
    root: cc.RootOpt = None,
) -> None:
    """Replace the root's code (owner only), optionally with migrated data; bumps the version."""
    from cocoon.chain import MessageError, parse_root_state
    from cocoon.chain.governance import check_root_migration

    c: cc.Ctx = ctx.obj
    new_code = _read_cell(code, "code")
    new_data = None if migration is None else _read_cell(migration, "migration")
    raddr = cc._root_address(c, root)

    async def current() -> Any:
        async with cc._open_chain(c) as chain:
            return await chain.get_account(raddr)

    acc = cc._run(current())
    if not acc.active or acc.data is None:
        raise cc._fail(f"root contract {raddr.to_str()} is not deployed")
    state = parse_root_state(acc.data)
    signer = cc._load_wallet(c, wallet).address
    if signer != state.owner:
        raise cc._fail(
            f"wallet {wallet!r} is not the root owner ({cc._s(state.owner)}): only the owner upgrades"
        )
    if new_data is not None:
        try:
            check_root_migration(state, new_data)
        except MessageError as exc:
            raise cc._fail(str(exc)) from None
    same = acc.code is not None and acc.code.hash == new_code.hash
    change = "re-install the code it runs" if same else f"upgrade the code to {new_code.hash.hex()}"
    change += " with migrated data" if new_data is not None else " keeping its data"
    cc._root_op(c, wallet, root, "UPGRADE_CODE", change, code=new_code, migration=new_data)


ProxyScOpt = Annotated[str, typer.Option("--proxy-sc", help="The proxy contract the worker serves through.")]
ProxyKeyOpt = Annotated[str, typer.Option("--proxy-key", help="That proxy's public key, 64 hex digits.")]
WalletKeyOpt = Annotated[
    Path | None,
    typer.Option("--wallet-key", help="Seed of the owner's wallet (default <home>/wallet.key)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="The worker's TOML config.")]


def _worker_node(
    ctx: typer.Context, config: Path | None, proxy_sc: str, proxy_key: str
) -> tuple[Any, Any, bytes]:
    """The worker's config (with a chain and an owner), the proxy contract and the proxy key, checked."""
    from cocoon.cli.runner import cli_errors, fail
    from cocoon.core.settings import load_config
    from cocoon.worker import WorkerConfig

    with cli_errors():
        node = load_config(
            WorkerConfig, config, section="worker", overrides={"home": global_options(ctx).home}
        )
    if node.root is None or not node.owner_address:
        raise fail(
            "the worker contract needs [worker.root] (the chain) and owner_address (whose stake it is)"
        )
    try:
        key = bytes.fromhex(proxy_key)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise fail("--proxy-key is 64 hex digits")
    return node, cc._addr(proxy_sc), key


def _owner_wallet(node: Any, key_file: Path) -> Any:
    from cocoon.chain import KeyPair, Wallet, parse_address
    from cocoon.cli.runner import cli_errors, fail
    from cocoon.core.keyfile import load_seed

    with cli_errors():
        wallet = Wallet(KeyPair.from_seed(load_seed(key_file)))
    owner = parse_address(node.owner_address)
    if wallet.address != owner:
        raise fail(
            f"the wallet in {key_file} is {cc._s(wallet.address)}, not the worker owner {cc._s(owner)}"
        )
    return wallet


def _show(ctx: typer.Context, title: str, rows: dict[str, Any]) -> None:
    if global_options(ctx).json:
        typer.echo(json.dumps(rows))
    else:
        cc._emit(cc.Ctx(Path("."), False), title, rows)


def worker_stake(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="TON to add to the stake.")],
    proxy_sc: ProxyScOpt,
    proxy_key: ProxyKeyOpt,
    config: ConfigOpt = None,
    wallet_key: WalletKeyOpt = None,
) -> None:
    """Stake TON in the worker contract of one proxy, from the owner's wallet (deploys it if needed)."""
    from cocoon.cli.runner import fail, run_async

    node, psc, key = _worker_node(ctx, config, proxy_sc, proxy_key)
    nano = cc._ton(amount)
    if nano <= 0:
        raise fail("the stake to add must be more than 0 TON")
    wallet = _owner_wallet(node, wallet_key or node.home / "wallet.key")
    _show(ctx, "worker stake", run_async(_stake(node, psc, key, nano, wallet)))


def worker_unstake(
    ctx: typer.Context,
    proxy_sc: ProxyScOpt,
    proxy_key: ProxyKeyOpt,
    config: ConfigOpt = None,
    wallet_key: WalletKeyOpt = None,
) -> None:
    """Close the worker contract of one proxy yourself: the first call gives notice, a call after it
    takes the stake back (what no pending slash holds)."""
    from cocoon.cli.runner import run_async

    node, psc, key = _worker_node(ctx, config, proxy_sc, proxy_key)
    wallet = _owner_wallet(node, wallet_key or node.home / "wallet.key")
    _show(ctx, "worker contract close", run_async(_unstake(node, psc, key, wallet)))


def _rows(contract: Any, st: Any, collateral: Any) -> dict[str, Any]:
    from cocoon.chain import stake_refusal

    refusal = stake_refusal(st, collateral)
    return {
        "contract": cc._s(contract.address),
        "state": {0: "active", 1: "closing", 2: "closed"}.get(st.state, str(st.state)),
        "stake_nano": st.stake,
        "min_worker_stake_nano": collateral.min_worker_stake,
        "pending_slash_nano": 0 if st.pending_slash is None else st.pending_slash.amount,
        "unlock_ts": st.unlock_ts,
        "may_serve": refusal is None,
        "refusal": refusal or "",
    }


@asynccontextmanager
async def _worker_contract(
    node: Any, proxy_sc: Any, proxy_key: bytes, wallet: Any
) -> AsyncIterator[tuple[Any, Any, Any]]:
    """The worker's chain (closed after), the root's config and the owner's worker contract for one proxy."""
    from cocoon.chain import fetch_root_config, open_chain, parse_address, worker_contract

    chain = open_chain(node.root)
    try:
        cfg = await fetch_root_config(chain, parse_address(node.root.root_address))
        yield chain, cfg, worker_contract(wallet.address, proxy_sc, proxy_key, cfg.params)
    finally:
        await chain.aclose()


async def _stake(node: Any, proxy_sc: Any, proxy_key: bytes, nano: int, wallet: Any) -> dict[str, Any]:
    from cocoon.chain import TransactionFailed, WalletClient, read_worker_state, stake_worker
    from cocoon.chain.exit_codes import explain_exit
    from cocoon.chain.network import OP_VALUE
    from cocoon.cli.runner import fail

    async with _worker_contract(node, proxy_sc, proxy_key, wallet) as (chain, cfg, contract):
        if await WalletClient(chain, wallet).balance() < nano + OP_VALUE:
            raise fail(f"the owner's wallet holds less than {nano / 10**9:g} TON + 0.1 TON for gas")
        try:
            await stake_worker(WalletClient(chain, wallet), contract, nano)
        except TransactionFailed as exc:
            raise fail(f"the worker contract refused the stake: {explain_exit(exc.exit_code)}") from None
        return _rows(contract, await read_worker_state(chain, contract.address), cfg.collateral)


async def _unstake(node: Any, proxy_sc: Any, proxy_key: bytes, wallet: Any) -> dict[str, Any]:
    from cocoon.chain import (
        STATE_ACTIVE,
        STATE_CLOSED,
        AccountNotFound,
        WalletClient,
        complete_worker_close,
        read_worker_state,
        request_worker_close,
    )
    from cocoon.cli.runner import fail

    async with _worker_contract(node, proxy_sc, proxy_key, wallet) as (chain, cfg, contract):
        try:
            st = await read_worker_state(chain, contract.address)
        except AccountNotFound:
            raise fail(f"no worker contract {cc._s(contract.address)}: nothing staked there") from None
        if st.state == STATE_CLOSED:
            raise fail("the worker contract is closed already: nothing to take back")
        now = await chain.now()
        if st.state != STATE_ACTIVE and now < st.unlock_ts:
            raise fail(f"the notice runs {st.unlock_ts - now} s more (until unix time {st.unlock_ts})")
        owner = WalletClient(chain, wallet)
        step = request_worker_close if st.state == STATE_ACTIVE else complete_worker_close
        await step(owner, contract.address)
        return _rows(contract, await read_worker_state(chain, contract.address), cfg.collateral)
