"""``cocoon proxy``: run a proxy node, or show a running proxy's operator view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cocoon.cli.console import lazy_console, make_table
from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, global_options, record
from cocoon.cli.runner import fail
from cocoon.core.amounts import format_ton

if TYPE_CHECKING:
    from rich.table import Table


__all__ = ["app"]

app = cli_app(help="Run a proxy node (--config FILE), or show a running one's status.")
console = lazy_console()


@app.callback(invoke_without_command=True)
def run_proxy(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([proxy] section).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address the RA-TLS ports listen on.")] = None,
    worker_port: Annotated[
        int | None, typer.Option(help="RA-TLS port for workers (0 = any free port).")
    ] = None,
    client_port: Annotated[
        int | None, typer.Option(help="RA-TLS port for clients (0 = any free port).")
    ] = None,
    stats_host: Annotated[str | None, typer.Option(help="Address of the operator view.")] = None,
    stats_port: Annotated[
        int | None, typer.Option(help="Port of the operator view (0 = any free port).")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """With no subcommand: run a proxy node (flags override the config file and COCOON_PROXY__*)."""
    options = record(ctx, home, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from cocoon.cli.runner import cli_errors, run_async, serve_node
    from cocoon.core.settings import load_config
    from cocoon.core.statedir import private_dir
    from cocoon.proxy import Proxy, ProxyConfig

    overrides = {
        "home": options.home,
        "host": host,
        "worker_port": worker_port,
        "client_port": client_port,
        "stats_host": stats_host,
        "stats_port": stats_port,
    }
    with cli_errors():
        node_config = load_config(ProxyConfig, config, section="proxy", overrides=overrides)
        private_dir(node_config.home)  # keys and ledgers: readable by the owner only
        proxy = Proxy(node_config)

    def summary() -> dict[str, str]:
        cfg = proxy.config
        return {
            "workers connect to": f"{cfg.host}:{proxy.worker_port}",
            "clients connect to": f"{cfg.host}:{proxy.client_port}",
            "operator view": f"http://{cfg.stats_host}:{proxy.stats_port}/stats",
            "dashboard": f"http://{cfg.stats_host}:{proxy.stats_port}/dashboard/",
            "home": str(cfg.home),
        }

    run_async(serve_node(proxy, "proxy", summary))


def _fetch_stats(url: str) -> dict[str, Any]:
    import httpx

    try:
        with httpx.Client(timeout=10) as http:
            stats = http.get(url.rstrip("/") + "/stats").raise_for_status().json()
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the proxy at {url}: {exc}") from None
    except ValueError:
        raise fail(f"the proxy at {url} answered /stats with something that is not JSON") from None
    if not isinstance(stats, dict):
        raise fail(f"the proxy at {url} answered /stats with unexpected JSON")
    return stats


def _workers_table(workers: list[dict[str, Any]]) -> Table:
    """One row per connected worker: load, reputation, suspensions, attestation freshness; the
    worker ids, whole, follow the table (see :func:`_worker_ids`)."""
    import time

    from rich import box

    from cocoon.health.views import format_duration

    table = make_table(title="workers", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("#", justify="right")
    for column in ("state", "load", "TTFT", "fail", "ok/failed", "susp.", "×", "attested ago"):
        table.add_column(column, no_wrap=True)
    now = time.time()
    for index, w in enumerate(workers):
        state = "disabled" if not w.get("enabled", True) else "suspended" if w.get("suspended") else "serving"
        ttft = w.get("ttft_s")
        table.add_row(
            str(index),
            state,
            f"{w.get('running', 0)} / {w.get('capacity', 0)}",
            "—" if ttft is None else f"{ttft * 1000:.1f} ms",
            f"{w.get('failure_rate', 0.0):.3f}",
            f"{w.get('requests_ok', 0)} / {w.get('requests_failed', 0)}",
            str(w.get("suspensions", 0)),
            f"{int(w.get('coefficient', 1000)) / 1000:g}",
            format_duration(now - float(w.get("attested_at") or now)),
        )
    if not workers:
        table.add_row("", "no worker connected", "", "", "", "", "", "", "")
    return table


def _worker_ids(workers: list[dict[str, Any]]) -> Any:
    """``#i`` → the whole worker id and when it attested (ISO, with its age): copyable lines."""
    from cocoon.health.views import format_time, long_values

    return long_values(
        [
            (f"#{i}", f"{w.get('worker_id')}  attested {format_time(w.get('attested_at'))}")
            for i, w in enumerate(workers)
        ]
    )


@app.command()
def status(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="The proxy's stats address.")] = "http://127.0.0.1:11000",
) -> None:
    """Workers, load, latency, revenue (from GET /stats)."""
    stats = _fetch_stats(url)
    if global_options(ctx).json:
        typer.echo(json.dumps(stats, indent=2))
        return
    summary = make_table(title="proxy", show_header=False)
    summary.add_row("state", str(stats.get("state")))
    if stats.get("accepting_requests") is False:
        summary.add_row("accepting requests", "no (draining)")
    summary.add_row("clients connected", str(stats.get("clients_connected")))
    for key, value in stats.get("requests", {}).items():
        summary.add_row("requests" if key == "requests" else f"  {key}", str(value))
    billing = stats.get("billing", {})
    for key in ("revenue_nano", "worker_earnings_nano", "proxy_fees_nano", "reserved_nano"):
        if key in billing:
            summary.add_row(key.removesuffix("_nano").replace("_", " "), format_ton(int(billing[key])))
    workers = stats.get("workers", {})
    summary.add_row("workers", f"{workers.get('count', 0)} ({workers.get('suspended', 0)} suspended)")
    summary.add_row("running / capacity", f"{workers.get('running', 0)} / {workers.get('capacity', 0)}")
    ttft = workers.get("latency", {}).get("ttft_s", {})
    if ttft:
        summary.add_row(
            "TTFT p50 / p99", " / ".join(f"{ttft.get(q, 0) * 1000:.1f} ms" for q in ("p50", "p99"))
        )
    console.print(summary)
    if stats.get("image_hash"):
        from cocoon.health.views import long_values

        console.print(long_values([("image hash", stats["image_hash"])]), crop=False)
    listed = stats.get("workers", {}).get("list", [])
    console.print(_workers_table(listed))
    if listed:
        console.print(_worker_ids(listed), crop=False)  # whole ids: never folded or cut
    models = make_table(title="models")
    for column in ("model", "workers", "coefficients", "completion price / 1M tokens"):
        models.add_column(column)
    for model in stats.get("models", []):
        models.add_row(
            model["id"],
            str(model["workers"]),
            ", ".join(str(c) for c in model["coefficients"]),
            format_ton(int(model["price_per_1m"]["completion"])),
        )
    console.print(models)
