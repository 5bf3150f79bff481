"""``cocoon chain serve``: the home's embedded chain as a TON liteserver, with a global config.

The server's ADNL key lives in ``<home>/chain/liteserver.key`` (0600), so a restarted server keeps
its identity and configs handed out stay valid. Several servers may serve one chain file (one per
port); each merges itself into the same ``--config-out`` file, which then lists them all.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from cocoon.cli.runner import cli_errors, fail, print_summary, run_async, serve_node

__all__ = ["serve", "served_bench"]


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (IPv4).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port).", min=0, max=65535)] = 0,
    public_ip: Annotated[
        str | None,
        typer.Option("--public-ip", help="IPv4 address the config gives clients (default: --host)."),
    ] = None,
    config_out: Annotated[
        Path | None, typer.Option("--config-out", help="Write (or merge into) this TON global config.")
    ] = None,
) -> None:
    """Serve the embedded chain over the liteserver protocol (ADNL/TCP) until Ctrl-C; development only."""
    c = ctx.obj
    advertised = public_ip or host
    try:
        if ipaddress.IPv4Address(advertised).is_unspecified:
            raise fail("--public-ip is needed when listening on 0.0.0.0 (clients must dial an address)")
    except ipaddress.AddressValueError:
        raise fail(f"{advertised!r} is not an IPv4 address (a global config lists IPv4 only)") from None
    run_async(_serve(c.dir, c.json, host, port, advertised, config_out))


async def _serve(
    chain_dir: Path, as_json: bool, host: str, port: int, ip: str, config_out: Path | None
) -> None:
    import base64
    import json

    from cocoon.chain.liteserver import DevLiteServer, ServerKey
    from cocoon.chain.liteserver.globalconfig import liteserver_entry, write_global_config
    from cocoon.core.keyfile import load_or_create_seed

    with cli_errors():
        key = ServerKey(load_or_create_seed(chain_dir / "liteserver.key"))
    server = DevLiteServer(chain_dir / "local.sqlite", key, host=host, port=port)
    public_key = base64.b64encode(key.public).decode()

    def summary() -> dict[str, str]:
        if config_out is not None:
            write_global_config(config_out, liteserver_entry(ip, server.port, key.public))
        rows = {
            "listen": f"{host}:{server.port}",
            "public key": public_key,
            "chain": str(chain_dir / "local.sqlite"),
        }
        return rows | ({"config": str(config_out)} if config_out is not None else {})

    def line() -> str:
        if as_json:
            return json.dumps(
                {"host": ip, "port": server.port, "public_key": public_key, "config": str(config_out)}
            )
        return f"{ip}:{server.port} {public_key}"

    await serve_node(server, "liteserver", summary, line)


def served_bench(chain_dir: Path, as_json: bool, charges: int) -> None:
    """``cocoon chain local bench --served``: settlement tx/s in-process vs through the liteserver."""
    import json

    from cocoon.chain.liteserver.bench import run_served_bench
    from cocoon.core.statedir import private_dir

    home = private_dir(chain_dir / "served-bench")
    r = run_async(run_served_bench(charges, home))
    rows = {
        "embedded (in-process)": f"{r.embedded_txs} tx in {r.embedded_seconds:.2f} s = {r.embedded_tx_per_s:.0f} tx/s",
        "through `cocoon chain serve`": f"{r.served_txs} tx in {r.served_seconds:.2f} s = {r.served_tx_per_s:.0f} tx/s",
    }
    if as_json:
        payload = {"charges": charges, "embedded_tx_per_s": round(r.embedded_tx_per_s, 1)}
        typer.echo(json.dumps(payload | {"served_tx_per_s": round(r.served_tx_per_s, 1)}))
        return
    print_summary(f"{charges} signed client charges each way", rows)
