"""``cocoon chain``: the embedded LocalChain, the root contract, wallets and client contracts.

State lives in ``<home>/chain/``: ``local.sqlite`` (the LocalChain), ``wallets/<name>.json`` (keys,
mode 0600) and ``state.json`` (root address, client contracts opened from here); the directories are
mode 0700. Amounts are typed in TON ("1.5") and shown in TON in tables; ``--json`` prints
machine-readable output instead, every amount an integer of nanoTON under a key ending in ``_nano``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cocoon.cli.chain_serve import serve, served_bench
from cocoon.cli.console import assemble_text, lazy_console, make_table, make_text
from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, record
from cocoon.cli.runner import cli_errors, default_home, fail
from cocoon.core.amounts import format_ton, parse_ton
from cocoon.core.statedir import private_dir

__all__ = ["app"]

T = TypeVar("T")

app = cli_app(
    help="TON: local chain, root contract, wallets, client contracts.",
    no_args_is_help=True,
)
local_app = cli_app(hoist=False, help="The embedded LocalChain.", no_args_is_help=True)
root_app = cli_app(hoist=False, help="The root contract (registry and prices).", no_args_is_help=True)
wallet_app = cli_app(hoist=False, help="Wallets (keys in <home>/chain/wallets).", no_args_is_help=True)
client_app = cli_app(hoist=False, help="Client contracts (prepaid funds with a proxy).", no_args_is_help=True)
app.add_typer(local_app, name="local")
app.add_typer(root_app, name="root")
app.add_typer(wallet_app, name="wallet")
app.add_typer(client_app, name="client")
app.command("serve")(serve)

out = lazy_console()


@dataclass
class Ctx:
    home: Path
    json: bool
    lite_config: Path | None = None
    dev_chain: bool = False

    @property
    def dir(self) -> Path:
        return self.home / "chain"

    @property
    def db(self) -> Path:
        return self.dir / "local.sqlite"

    def state(self) -> dict[str, Any]:
        p = self.dir / "state.json"
        if not p.exists():
            return {}
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            raise _fail(f"{p} is damaged (not readable JSON)") from None
        return data if isinstance(data, dict) else {}

    def save_state(self, st: dict[str, Any]) -> None:
        private_dir(self.dir)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(st, indent=2, sort_keys=True))
        tmp.replace(self.dir / "state.json")


@app.callback()
def _chain(
    ctx: typer.Context,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    lite_config: Annotated[
        Path | None,
        typer.Option(
            "--lite-config",
            help="TON global config (testnet/mainnet): use liteservers instead of the local chain. "
            "`local` commands and the faucet stay local.",
        ),
    ] = None,
    dev_chain: Annotated[
        bool,
        typer.Option(
            "--dev-chain", help="--lite-config names `cocoon chain serve` servers (development only)."
        ),
    ] = False,
) -> None:
    options = record(ctx, home, as_json)
    ctx.obj = Ctx(options.home or _default_chain_home(), options.json, lite_config, dev_chain)


def _default_chain_home() -> Path:
    """The default home, or the `cocoon up` network's (``<home>/local``) when only that one has a
    local chain: its root and owner wallet are there (a note says so on stderr)."""
    home = default_home()
    up_home = home / "local"
    if not (home / "chain" / "local.sqlite").exists() and (up_home / "chain" / "local.sqlite").exists():
        from cocoon.cli.runner import console

        console.print(f"[dim]using the chain of the `cocoon up` network in {up_home}[/]")
        return up_home
    return home


# ---------------------------------------------------------------- helpers


_fail = fail


def _run(coro: Awaitable[T]) -> T:
    import asyncio

    with cli_errors():
        return asyncio.run(coro)  # type: ignore[arg-type]


def _ton(amount: str) -> int:
    try:
        return parse_ton(amount)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _s(address: Any) -> str:
    return str(address.to_str())


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_LOOKS_LIKE_HASH = re.compile(r"(0x)?[0-9a-fA-F]{32,}")


def _cell(key: str, value: Any) -> tuple[str, str]:
    """A table row: ``*_nano`` amounts in TON under the key without the suffix, lists joined."""
    if key.endswith("_nano") and isinstance(value, int):
        return key.removesuffix("_nano"), format_ton(value)
    return key, ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _emit(c: Ctx, title: str, rows: dict[str, Any]) -> None:
    if c.json:
        out.print_json(json.dumps(rows, default=str))
        return
    t = make_table(title=title, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in rows.items():
        t.add_row(*_cell(k, v))
    out.print(t)


@contextlib.contextmanager
def _local(c: Ctx, *, create: bool = False) -> Iterator[Any]:
    from cocoon.chain import LocalChain

    if not create and not c.db.exists():
        raise _fail(f"no local chain in {c.dir} (run `cocoon chain local start`)")
    private_dir(c.dir)
    # A `cocoon up` chain follows the wall clock; opened without it, time would go back (refused).
    wall = c.db.exists() and c.state().get("clock") == "wall"
    chain = LocalChain(c.db, clock=time.time if wall else None)
    try:
        yield chain
    finally:
        chain.close()


@contextlib.asynccontextmanager
async def _open_chain(c: Ctx) -> AsyncIterator[Any]:
    """The chain the command talks to: LiteChain with --lite-config, else the local chain."""
    if c.lite_config is not None:
        from cocoon.chain import LiteChain

        lite = LiteChain.from_config(c.lite_config, dev_chain=c.dev_chain)
        try:
            yield lite
        finally:
            await lite.aclose()
    else:
        with _local(c) as chain:
            yield chain


def _wallet_path(c: Ctx, name: str) -> Path:
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
        raise _fail(f"bad wallet name {name!r}")
    return c.dir / "wallets" / f"{name}.json"


def _load_wallet(c: Ctx, name: str) -> Any:
    from cocoon.chain import KeyPair, Wallet
    from cocoon.core.keyfile import warn_if_loose  # loads cryptography: not for --help

    p = _wallet_path(c, name)
    if not p.exists():
        raise _fail(f"no wallet {name!r} (run `cocoon chain wallet new {name}`)")
    warn_if_loose(p)
    try:
        doc = json.loads(p.read_text())
        return Wallet(KeyPair.from_seed(bytes.fromhex(doc["seed"])), subwallet=int(doc["subwallet"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise _fail(f"wallet file {p} is damaged (expected JSON with a hex seed and a subwallet)") from None


def _new_wallet(c: Ctx, name: str, words: list[str] | None = None) -> Any:
    from cocoon.chain import KeyPair, Wallet

    p = _wallet_path(c, name)
    if p.exists():
        raise _fail(f"wallet {name!r} exists already")
    key = KeyPair.from_mnemonic(words) if words else KeyPair.generate()
    w = Wallet(key)
    private_dir(p.parent)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"seed": key.seed.hex(), "public": key.public.hex(), "subwallet": w.subwallet}, f)
    return w


def _addr(value: str) -> Any:
    from cocoon.chain import AddressError, parse_address

    try:
        return parse_address(value)
    except AddressError as exc:
        raise _fail(str(exc)) from None


def _root_address(c: Ctx, root: str | None) -> Any:
    value = root or c.state().get("root")
    if not value:
        raise _fail(
            f"no root contract in {c.dir} (run `cocoon chain root init` or `root deploy`, pass --root, "
            "or --home the `cocoon up` home, by default ~/.cocoon/local)"
        )
    return _addr(value)


# ---------------------------------------------------------------- local


@local_app.command("start")
def local_start(
    ctx: typer.Context,
    fund: Annotated[str, typer.Option(help="TON the faucet gives the owner wallet.")] = "1000",
) -> None:
    """Create (or reopen) the local chain and a funded `owner` wallet."""
    c: Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        from cocoon.chain import WalletClient

        with _local(c, create=True) as chain:
            w = _owner_wallet(c)
            wc = WalletClient(chain, w)
            if await wc.balance() == 0:
                await chain.faucet(w.address, _ton(fund))
            return {
                "chain": str(c.db),
                "owner": w.address.to_str(),
                "owner_balance_nano": await wc.balance(),
            }

    _emit(c, "local chain", _run(go()))


@local_app.command("status")
def local_status(ctx: typer.Context) -> None:
    """Time, transactions, accounts, minted and fees of the local chain."""
    c: Ctx = ctx.obj
    with _local(c) as chain:
        rows = {
            "chain": str(c.db),
            "now": chain.now_sync(),
            "transactions": chain.transaction_count(),
            "accounts": len(chain.addresses()),
            "minted_nano": chain.minted,
            "fees_nano": chain.total_fees(),
            "root": c.state().get("root", "-"),
        }
    _emit(c, "local chain", rows)


@local_app.command("advance")
def local_advance(ctx: typer.Context, seconds: int) -> None:
    """Move the local chain's clock forward (close delays)."""
    c: Ctx = ctx.obj
    with _local(c) as chain:
        now = chain.advance(seconds)
    _emit(c, "local chain", {"now": now})


@local_app.command("bench")
def local_bench(
    ctx: typer.Context,
    transfers: Annotated[int, typer.Option(help="Wallet transfers to time.")] = 200,
    charges: Annotated[int, typer.Option(help="Signed client charges to time.")] = 200,
    memory: Annotated[
        bool, typer.Option(help="Keep the bench chain in memory instead of SQLite on disk.")
    ] = False,
    served: Annotated[
        bool,
        typer.Option(
            help="Instead: the signed charges in-process and through `cocoon chain serve`, same run."
        ),
    ] = False,
) -> None:
    """Measure LocalChain transactions per second and gas per Cocoon operation (a fresh chain)."""
    c: Ctx = ctx.obj
    if served:
        served_bench(c.dir, c.json, charges)
        return
    from cocoon.chain.bench import GROUP, TARGET_TX_PER_S, Rate, run_bench

    private_dir(c.dir)
    path = None if memory else c.dir / "bench.sqlite"
    if path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    r = _run(run_bench(path, transfers=transfers, charges=charges))
    rates = {
        "transfer": r.transfer,
        "charge": r.charge,
        "grouped_transfer": r.grouped,
        "grouped_charge": r.grouped_charge,
    }
    if c.json:
        out.print_json(
            json.dumps(
                {
                    "store": "memory" if memory else "sqlite",
                    "target_tx_per_s": TARGET_TX_PER_S,
                    **{f"{k}_tx_per_s": round(v.tx_per_s, 1) for k, v in rates.items()},
                    **{f"{k}_of_target": round(v.of_target, 3) for k, v in rates.items()},
                    **{f"{k}_tx_per_cpu_s": round(v.tx_per_cpu_s, 1) for k, v in rates.items()},
                    "ops": [
                        {
                            "op": o.op,
                            "gas": o.gas,
                            "fee_nano": o.contract_fee,
                            "txs": o.trace_txs,
                            "trace_fees_nano": o.trace_fees,
                        }
                        for o in r.ops
                    ],
                }
            )
        )
        return

    def line(what: str, rate: Rate) -> str:
        return (
            f"{what} ({rate.txs} tx) in {rate.seconds:.2f} s = [bold]{rate.tx_per_s:.0f} tx/s[/],"
            f" [bold]{rate.of_target:.2f}×[/] target ({rate.tx_per_cpu_s:.0f} tx/CPU-s)"
        )

    store = "in memory" if memory else "on SQLite, every commit synced to disk"
    out.print(f"LocalChain {store}; target {TARGET_TX_PER_S:,} tx/s:")
    out.print(line(f"wallet transfers: {r.transfers}", r.transfer))
    out.print(line(f"signed charges:   {r.charges}", r.charge))
    out.print(line(f"wallet transfers: {r.transfers}, {GROUP} senders a group commit", r.grouped))
    out.print(line(f"signed charges:   {r.charges}, {GROUP} a group commit", r.grouped_charge))
    t = make_table(title="gas per operation")
    for col in ("operation", "gas", "fee", "txs in trace", "trace fees"):
        t.add_column(col, justify="left" if col == "operation" else "right")
    for o in r.ops:
        t.add_row(o.op, str(o.gas), format_ton(o.contract_fee), str(o.trace_txs), format_ton(o.trace_fees))
    out.print(t)


# ---------------------------------------------------------------- wallet


@wallet_app.command("new")
def wallet_new(
    ctx: typer.Context,
    name: str,
    fund: Annotated[str, typer.Option(help="TON from the local faucet (local chain only).")] = "0",
    mnemonic: Annotated[str | None, typer.Option(help="Restore from these 24 words.")] = None,
) -> None:
    """Create a wallet key (optionally funded from the local faucet)."""
    c: Ctx = ctx.obj
    words = mnemonic.split() if mnemonic else None
    amount = _ton(fund)
    w = _new_wallet(c, name, words)
    rows: dict[str, Any] = {"name": name, "address": w.address.to_str(), "public_key": w.key.public.hex()}
    if amount:
        with _local(c) as chain:
            _run(chain.faucet(w.address, amount))
        rows["balance_nano"] = amount
    _emit(c, "wallet", rows)


@wallet_app.command("balance")
def wallet_balance(ctx: typer.Context, name: str) -> None:
    """Balance and state of a wallet."""
    c: Ctx = ctx.obj
    w = _load_wallet(c, name)

    async def go() -> Any:
        async with _open_chain(c) as chain:
            return await chain.get_account(w.address)

    acc = _run(go())
    _emit(
        c,
        "wallet",
        {"name": name, "address": w.address.to_str(), "balance_nano": acc.balance, "status": acc.status},
    )


@wallet_app.command("send")
def wallet_send(
    ctx: typer.Context,
    name: str,
    dest: str,
    amount: str,
    bounce: Annotated[bool, typer.Option(help="Bounce if the destination refuses.")] = False,
) -> None:
    """Send TON from a wallet."""
    c: Ctx = ctx.obj
    from cocoon.chain import WalletClient

    w = _load_wallet(c, name)
    to, nano = _addr(dest), _ton(amount)

    async def go() -> Any:
        async with _open_chain(c) as chain:
            return await WalletClient(chain, w).transfer(to, nano, bounce=bounce)

    trace = _run(go())
    rows = {"from": w.address.to_str(), "to": dest, "amount_nano": nano, "transactions": len(trace)}
    _emit(c, "sent", rows)


# ---------------------------------------------------------------- root


RootOpt = Annotated[
    str | None, typer.Option("--root", help="Root address (default: the one deployed from here).")
]
WalletOpt = Annotated[str, typer.Option("--wallet", help="Wallet that signs.")]


def _hex64(value: str, what: str) -> bytes:
    """Exactly 64 hex digits (a typo of one digit is an error, never silently hashed)."""
    v = value.strip()
    if not _HEX64.fullmatch(v):
        raise _fail(f"{what} is exactly 64 hex digits, got {len(v)} characters: {value!r}")
    return bytes.fromhex(v)


def _proxy_host_port(value: str) -> str:
    """``host:port`` as proxies listen (the root stores the text; a typo would be registered)."""
    host, sep, port = value.rpartition(":")
    ok = bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
    if not ok or any(ch.isspace() for ch in value) or len(value.encode()) > 127:
        raise _fail(f"a proxy address is HOST:PORT (port 1..65535, at most 127 bytes), got {value!r}")
    return value


RootCheck = Callable[[Any], None]


def _root_op(
    c: Ctx,
    wallet: str,
    root: str | None,
    op_name: str,
    change: str,
    check: RootCheck | None = None,
    **kw: Any,
) -> None:
    """Send one owner message to the root: ``check`` sees the current config first and refuses
    before anything is sent; a contract refusal is translated into a sentence."""
    from cocoon.chain import Op, TransactionFailed, WalletClient, fetch_root_config, send_root_op
    from cocoon.chain.exit_codes import explain_exit

    w = _load_wallet(c, wallet)
    raddr = _root_address(c, root)

    async def go() -> dict[str, Any]:
        async with _open_chain(c) as chain:
            if check is not None:
                check(await fetch_root_config(chain, raddr))
            try:
                trace = await send_root_op(WalletClient(chain, w), raddr, Op[op_name], **kw)
            except TransactionFailed as exc:
                raise _fail(f"the root refused to {change}: {explain_exit(exc.exit_code)}") from None
            version = (await fetch_root_config(chain, raddr)).version
        tx = next((t for t in trace if t.address == raddr), None)
        return {
            "op": op_name.lower(),
            "change": change,
            "transaction": tx.hash.hex() if tx is not None else "-",
            "version": version,
        }

    _emit(c, "root", _run(go()))


def _refuse_unless(present: bool, message: str) -> None:
    if not present:
        raise _fail(message)


@root_app.command("deploy")
def root_deploy(
    ctx: typer.Context,
    wallet: WalletOpt = "owner",
    price: Annotated[int, typer.Option(help="nanoTON per adjusted token.")] = 20,
    worker_fee: Annotated[int, typer.Option(help="nanoTON per adjusted token for workers.")] = 16,
    unique_id: Annotated[int, typer.Option(help="Distinguishes roots with equal content.")] = 13,
    test: Annotated[bool, typer.Option(help="Test network flag in params.")] = True,
) -> None:
    """Deploy a root contract owned by the wallet."""
    c: Ctx = ctx.obj
    from cocoon.chain import WalletClient, default_params, deploy_root

    if worker_fee > price:
        raise _fail("worker fee must not exceed the price")
    if c.lite_config is None and not c.db.exists():
        raise _fail(
            f"no local chain in {c.dir}: run `cocoon chain local start` (it makes the owner wallet), "
            "or `cocoon chain root init` for everything at once"
        )
    w = _load_wallet(c, wallet)
    params = default_params(
        price_per_token=price, worker_fee_per_token=worker_fee, unique_id=unique_id, is_test=test
    )

    async def go() -> Any:
        async with _open_chain(c) as chain:
            return await deploy_root(WalletClient(chain, w), params)

    addr = _run(go())
    st = c.state()
    st["root"] = _s(addr)
    c.save_state(st)
    _emit(c, "root", {"root": _s(addr), "owner": _s(w.address)})


@root_app.command("init")
def root_init(
    ctx: typer.Context,
    fund: Annotated[str, typer.Option(help="TON the faucet gives the owner wallet.")] = "1000",
    model: Annotated[
        Path | None, typer.Option(help="GGUF (or model directory) to allow; default the bundled SmolLM2.")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Name it is served under; default the file name up to its first dot.")
    ] = None,
    network_home: Annotated[
        Path | None,
        typer.Option(help="The `cocoon up` home whose sim images to allow (default ~/.cocoon/local)."),
    ] = None,
) -> None:
    """Local case in one go: the local chain, a funded owner wallet, a root, the local images and model."""
    c: Ctx = ctx.obj
    if c.lite_config is not None:
        raise _fail("`root init` is for the local chain; on a real network use `root deploy` and `allow-*`")
    if c.state().get("root") and c.db.exists():
        raise _fail(f"a root exists already here ({c.state()['root']}): see `cocoon chain root show`")
    images = _local_images((network_home or default_home() / "local").expanduser())
    served = _local_model(model, model_name)
    _run(_init_local_root(c, _ton(fund), images, served))


def _local_images(network_home: Path) -> dict[str, bytes]:
    from cocoon import tee
    from cocoon.node.trust import ROLE_MEASUREMENTS

    platform = tee.sim_platform(network_home)
    return {role: platform.backend(ROLE_MEASUREMENTS[role]).image_hash() for role in ("proxy", "worker")}


def _local_model(path: Path | None, name: str | None) -> tuple[bytes, str] | None:
    from cocoon.core.native import bundled_model
    from cocoon.inference.model_hash import model_hash

    path = path or bundled_model()
    if path is None:
        return None
    if not path.exists():
        raise _fail(f"no model at {path}")
    return model_hash(path), name or path.name.split(".", 1)[0]


async def _init_local_root(
    c: Ctx, fund: int, images: dict[str, bytes], model: tuple[bytes, str] | None
) -> None:
    from cocoon.chain import Op, WalletClient, default_params, deploy_root, send_root_op

    with _local(c, create=True) as chain:
        wc = WalletClient(chain, _owner_wallet(c))
        if await wc.balance() == 0:
            await chain.faucet(wc.address, fund)
        raddr = await deploy_root(wc, default_params())
        st = c.state()
        st["root"] = _s(raddr)
        c.save_state(st)
        sends: list[tuple[str, Op, dict[str, Any]]] = [
            (
                f"allow {role} image {h.hex()}",
                Op.ADD_PROXY_TYPE if role == "proxy" else Op.ADD_WORKER_TYPE,
                {"hash": h},
            )
            for role, h in images.items()
        ]
        if model is not None:
            sends.append(
                (
                    f"allow model {model[0].hex()} as {model[1]!r}",
                    Op.ADD_MODEL_TYPE,
                    {"hash": model[0], "name": model[1]},
                )
            )
        changes = []
        for change, op, kw in sends:
            trace = await send_root_op(wc, raddr, op, **kw)
            tx = next(t for t in trace if t.address == raddr)
            changes.append({"change": change, "transaction": tx.hash.hex()})
    if c.json:
        out.print_json(
            json.dumps({"chain": str(c.db), "owner": _s(wc.address), "root": _s(raddr), "changes": changes})
        )
        return
    _emit(c, "root", {"chain": str(c.db), "owner": _s(wc.address), "root": _s(raddr)})
    t = make_table(title="changes")
    t.add_column("change")
    t.add_column("transaction", no_wrap=True)
    for row in changes:
        t.add_row(row["change"], row["transaction"])
    out.print(t)
    if model is None:
        out.print(
            "no bundled model installed: allow one with `cocoon chain root allow-model NAME --hash HEX`"
        )


def _owner_wallet(c: Ctx) -> Any:
    return _load_wallet(c, "owner") if _wallet_path(c, "owner").exists() else _new_wallet(c, "owner")


@root_app.command("show")
def root_show(ctx: typer.Context, root: RootOpt = None) -> None:
    """Everything the root contract holds."""
    c: Ctx = ctx.obj
    from cocoon.chain import fetch_root_config

    raddr = _root_address(c, root)

    async def go() -> Any:
        async with _open_chain(c) as chain:
            return await fetch_root_config(chain, raddr)

    cfg = _run(go())
    p = cfg.params
    _emit(
        c,
        "root",
        {
            "address": _s(cfg.address),
            "owner": _s(cfg.owner),
            "version": cfg.version,
            "params_version": cfg.params_version,
            "is_test": cfg.is_test,
            "price_per_token_nano": cfg.price_per_token,
            "worker_fee_per_token_nano": cfg.worker_fee_per_token,
            "multipliers": [
                p.prompt_multiplier,
                p.cached_multiplier,
                p.completion_multiplier,
                p.reasoning_multiplier,
            ],
            "proxy_delay_before_close": cfg.proxy_delay_before_close,
            "client_delay_before_close": cfg.client_delay_before_close,
            "min_proxy_stake_nano": cfg.min_proxy_stake,
            "min_client_stake_nano": cfg.min_client_stake,
            "proxy_image_hashes": sorted(h.hex() for h in cfg.proxy_image_hashes),
            "worker_image_hashes": sorted(h.hex() for h in cfg.worker_image_hashes),
            "model_hashes": sorted(h.hex() for h in cfg.model_hashes),
            "models": {h.hex(): name for h, name in sorted(cfg.models.items())},
            "registered_proxies": [f"{s}={a}" for s, a in cfg.registered_proxies],
        },
    )


@root_app.command("history")
def root_history(
    ctx: typer.Context,
    root: RootOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Newest transactions to read.")] = 1000,
) -> None:
    """Every change to the root's allowlists and parameters (from its transactions), oldest first."""
    c: Ctx = ctx.obj
    from cocoon.cli.root_history import root_changes

    raddr = _root_address(c, root)

    async def go() -> Any:
        async with _open_chain(c) as chain:
            return await chain.get_transactions(raddr, limit)

    changes = root_changes(_run(go()))
    if c.json:
        out.print_json(json.dumps({"root": _s(raddr), "changes": [ch.to_json() for ch in changes]}))
        return
    _print_history(_s(raddr), changes)


_HISTORY_TABLE_WIDTH = 150  # time, change, a readable argument and a whole hash side by side


def _print_history(root: str, changes: list[Any]) -> None:
    """A table on a wide terminal; on a narrow one each change over two lines, so that the hash
    is never cut or folded (it stays one copyable word)."""
    title = f"changes to root {root}"
    if out.width < _HISTORY_TABLE_WIDTH:
        out.print(make_text(title, style="bold"))
        for ch in changes:
            out.print(assemble_text((ch.iso_time, "cyan"), "  ", (ch.op, "bold"), "  ", ch.argument))
            out.print(make_text(f"    tx {ch.transaction.hex()}", style="dim"), no_wrap=True, crop=False)
        if not changes:
            out.print("no change found")
        return
    t = make_table(title=title)
    t.add_column("time (UTC)", no_wrap=True)
    t.add_column("change", no_wrap=True)
    t.add_column("argument", overflow="fold")
    t.add_column("transaction", no_wrap=True, min_width=64)
    for ch in changes:
        t.add_row(ch.iso_time, ch.op, ch.argument, ch.transaction.hex())
    if not changes:
        t.add_row("—", "no change found", "", "")
    out.print(t)


@root_app.command("allow-image")
def root_allow_image(
    ctx: typer.Context,
    image_hash: str,
    kind: Annotated[str, typer.Option(help="proxy or worker")] = "worker",
    remove: Annotated[bool, typer.Option(help="Remove instead of add.")] = False,
    wallet: WalletOpt = "owner",
    root: RootOpt = None,
) -> None:
    """Allow (or remove) a TEE image hash for proxies or workers."""
    if kind not in ("proxy", "worker"):
        raise _fail("--kind is proxy or worker")
    h = _hex64(image_hash, "an image hash")

    def check(cfg: Any) -> None:
        allowed = cfg.proxy_image_hashes if kind == "proxy" else cfg.worker_image_hashes
        if remove:
            _refuse_unless(h in allowed, f"the root does not allow {kind} image {h.hex()}: nothing to remove")
        else:
            _refuse_unless(h not in allowed, f"the root allows {kind} image {h.hex()} already")

    op = f"{'DEL' if remove else 'ADD'}_{kind.upper()}_TYPE"
    change = f"{'remove' if remove else 'allow'} {kind} image {h.hex()}"
    _root_op(ctx.obj, wallet, root, op, change, check, hash=h)


@root_app.command("allow-model")
def root_allow_model(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model name workers serve it under (bound to the hash).")],
    model_hash: Annotated[
        str | None,
        typer.Option(
            "--hash", help="Model hash (64 hex, `cocoon worker model-hash`); default SHA-256 of NAME."
        ),
    ] = None,
    remove: Annotated[bool, typer.Option(help="Remove instead of add.")] = False,
    wallet: WalletOpt = "owner",
    root: RootOpt = None,
) -> None:
    """Allow (or remove) a model: its hash, bound to the one name workers may announce it under."""
    if model_hash is not None:
        h = _hex64(model_hash, "--hash")
    elif _LOOKS_LIKE_HASH.fullmatch(name.strip()):
        # A hash typed where the name goes (one digit short, say) would be hashed into a new model id.
        raise _fail(
            f"{name!r} looks like a hash, not a model name: pass it as --hash HEX with the served NAME"
        )
    else:
        h = hashlib.sha256(name.encode()).digest()

    def check(cfg: Any) -> None:
        if remove:
            _refuse_unless(
                h in cfg.model_hashes, f"the root does not allow model {h.hex()}: nothing to remove"
            )

    if remove:
        _root_op(ctx.obj, wallet, root, "DEL_MODEL_TYPE", f"remove model {h.hex()}", check, hash=h)
    else:
        _root_op(
            ctx.obj, wallet, root, "ADD_MODEL_TYPE", f"allow model {h.hex()} as {name!r}", hash=h, name=name
        )


@root_app.command("add-proxy")
def root_add_proxy(
    ctx: typer.Context,
    address: Annotated[
        str, typer.Argument(help="host:port workers dial (and clients, without --client-address).")
    ],
    client_address: Annotated[
        str | None, typer.Option("--client-address", help="host:port clients dial, when not ADDRESS.")
    ] = None,
    wallet: WalletOpt = "owner",
    root: RootOpt = None,
) -> None:
    """Register a proxy: one address, or the workers' and the clients' addresses."""
    from cocoon.chain.messages import proxy_entry_text

    addr = _proxy_host_port(address)
    client = _proxy_host_port(client_address) if client_address is not None else addr
    entry = proxy_entry_text(addr, client)

    def check(cfg: Any) -> None:
        for known in cfg.proxy_entries:
            taken = {addr, client} & {known.worker_address, known.client_address}
            _refuse_unless(not taken, f"proxy {sorted(taken)[0]} is registered already (seqno {known.seqno})")

    _root_op(ctx.obj, wallet, root, "REGISTER_PROXY", f"register proxy {entry}", check, address=entry)


@root_app.command("remove-proxy")
def root_remove_proxy(
    ctx: typer.Context,
    address: Annotated[
        str, typer.Argument(help="host:port of a registered proxy (either of its addresses).")
    ],
    wallet: WalletOpt = "owner",
    root: RootOpt = None,
) -> None:
    """Unregister a proxy address."""
    c: Ctx = ctx.obj
    from cocoon.chain import fetch_root_config

    addr = _proxy_host_port(address)
    raddr = _root_address(c, root)

    async def registered() -> dict[str, int]:
        async with _open_chain(c) as chain:
            entries = (await fetch_root_config(chain, raddr)).proxy_entries
        return {a: e.seqno for e in entries for a in (e.worker_address, e.client_address)}

    seqno = _run(registered()).get(addr)
    if seqno is None:
        raise _fail(f"proxy {addr} is not registered in the root: nothing to remove")
    _root_op(c, wallet, root, "UNREGISTER_PROXY", f"unregister proxy {addr} (seqno {seqno})", seqno=seqno)


@root_app.command("set-params")
def root_set_params(
    ctx: typer.Context,
    price: Annotated[int | None, typer.Option(help="nanoTON per adjusted token.")] = None,
    worker_fee: Annotated[int | None, typer.Option(help="nanoTON per adjusted token for workers.")] = None,
    prompt_mult: Annotated[int | None, typer.Option(help="Per 10000.")] = None,
    cached_mult: Annotated[int | None, typer.Option(help="Per 10000.")] = None,
    completion_mult: Annotated[int | None, typer.Option(help="Per 10000.")] = None,
    reasoning_mult: Annotated[int | None, typer.Option(help="Per 10000.")] = None,
    proxy_delay: Annotated[int | None, typer.Option(help="Seconds.")] = None,
    client_delay: Annotated[int | None, typer.Option(help="Seconds.")] = None,
    min_proxy_stake: Annotated[str | None, typer.Option(help="TON.")] = None,
    min_client_stake: Annotated[str | None, typer.Option(help="TON.")] = None,
    wallet: WalletOpt = "owner",
    root: RootOpt = None,
) -> None:
    """Change root parameters (bumps params_version: proxies redeploy their contracts)."""
    c: Ctx = ctx.obj
    from cocoon.chain import ChainError, fetch_root_config

    raddr = _root_address(c, root)

    async def current() -> Any:
        async with _open_chain(c) as chain:
            return (await fetch_root_config(chain, raddr)).params

    cur = _run(current())
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "price_per_token": price,
            "worker_fee_per_token": worker_fee,
            "prompt_multiplier": prompt_mult,
            "cached_multiplier": cached_mult,
            "completion_multiplier": completion_mult,
            "reasoning_multiplier": reasoning_mult,
            "proxy_delay_before_close": proxy_delay,
            "client_delay_before_close": client_delay,
            "min_proxy_stake": _ton(min_proxy_stake) if min_proxy_stake is not None else None,
            "min_client_stake": _ton(min_client_stake) if min_client_stake is not None else None,
        }.items()
        if v is not None
    }
    if not changes:
        raise _fail("nothing to change")
    try:
        new = replace(cur, **changes)
    except (ChainError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _root_op(c, wallet, root, "CHANGE_PARAMS", "change the parameters", params=new)


# ---------------------------------------------------------------- client


ContractOpt = Annotated[
    str | None, typer.Option("--contract", help="Client contract (default: last one opened).")
]


def _client_contract(c: Ctx, wallet: str, contract: str | None) -> Any:
    value = contract or c.state().get("clients", {}).get(wallet)
    if not value:
        raise _fail("no client contract (open one with `client top-up --proxy-sc ... --proxy-key ...`)")
    return _addr(value)


def _client_rows(st: Any, addr: Any) -> dict[str, Any]:
    states = {0: "active", 1: "closing", 2: "closed"}
    return {
        "contract": addr.to_str(),
        "state": states.get(st.state, st.state),
        "balance_nano": st.balance,
        "stake_nano": st.stake,
        "tokens_used": st.tokens_used,
        "unlock_ts": st.unlock_ts,
        "owner": st.owner.to_str(),
        "proxy_sc": st.proxy_sc.to_str(),
    }


def _client_op(c: Ctx, wallet: str, contract: str | None, op_name: str, amount: int = 0) -> None:
    from cocoon.chain import Op, WalletClient, parse_client_state, send_client_op

    w = _load_wallet(c, wallet)
    addr = _client_contract(c, wallet, contract)

    async def go() -> Any:
        async with _open_chain(c) as chain:
            await send_client_op(WalletClient(chain, w), addr, Op[op_name], amount=amount)
            acc = await chain.get_account(addr)
            return parse_client_state(acc.data)

    _emit(c, "client contract", _client_rows(_run(go()), addr))


@client_app.command("top-up")
def client_top_up(
    ctx: typer.Context,
    amount: str,
    wallet: WalletOpt = "owner",
    contract: ContractOpt = None,
    proxy_sc: Annotated[
        str | None, typer.Option(help="Proxy contract (to open a new client contract).")
    ] = None,
    proxy_key: Annotated[str | None, typer.Option(help="Proxy public key, hex (to open a new one).")] = None,
    root: RootOpt = None,
) -> None:
    """Top up the client contract; with --proxy-sc/--proxy-key, open it first."""
    c: Ctx = ctx.obj
    nano = _ton(amount)
    if proxy_sc is None and proxy_key is None:
        _client_op(c, wallet, contract, "CLIENT_TOP_UP", nano)
        return
    if proxy_sc is None or proxy_key is None:
        raise _fail("--proxy-sc and --proxy-key go together")
    from cocoon.chain import WalletClient, fetch_root_config, open_client_contract, parse_client_state

    w = _load_wallet(c, wallet)
    raddr = _root_address(c, root)
    try:
        key = bytes.fromhex(proxy_key)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise _fail("--proxy-key is 64 hex digits")

    async def go() -> tuple[Any, Any]:
        async with _open_chain(c) as chain:
            params = (await fetch_root_config(chain, raddr)).params
            addr = await open_client_contract(
                WalletClient(chain, w), _addr(proxy_sc), key, params, amount=nano
            )
            return addr, parse_client_state((await chain.get_account(addr)).data)

    addr, st = _run(go())
    state = c.state()
    state.setdefault("clients", {})[wallet] = addr.to_str()
    c.save_state(state)
    _emit(c, "client contract", _client_rows(st, addr))


@client_app.command("stake")
def client_stake(
    ctx: typer.Context, amount: str, wallet: WalletOpt = "owner", contract: ContractOpt = None
) -> None:
    """Raise the stake (the part that cannot be withdrawn while open) to AMOUNT."""
    _client_op(ctx.obj, wallet, contract, "CLIENT_INCREASE_STAKE", _ton(amount))


@client_app.command("withdraw")
def client_withdraw(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="TON; 0 = everything above the stake.")] = "0",
    wallet: WalletOpt = "owner",
    contract: ContractOpt = None,
) -> None:
    """Withdraw funds above the stake."""
    _client_op(ctx.obj, wallet, contract, "CLIENT_WITHDRAW", _ton(amount))


@client_app.command("close")
def client_close(ctx: typer.Context, wallet: WalletOpt = "owner", contract: ContractOpt = None) -> None:
    """Start closing; run again after the close delay to get the rest back."""
    _client_op(ctx.obj, wallet, contract, "CLIENT_REQUEST_REFUND")


@client_app.command("show")
def client_show(ctx: typer.Context, wallet: WalletOpt = "owner", contract: ContractOpt = None) -> None:
    """State of the client contract."""
    c: Ctx = ctx.obj
    from cocoon.chain import parse_client_state

    addr = _client_contract(c, wallet, contract)

    async def go() -> Any:
        async with _open_chain(c) as chain:
            return await chain.get_account(addr)

    acc = _run(go())
    if not acc.active or acc.data is None:
        raise _fail(f"client contract {addr.to_str()} is not deployed ({acc.status})")
    _emit(c, "client contract", _client_rows(parse_client_state(acc.data), addr))
