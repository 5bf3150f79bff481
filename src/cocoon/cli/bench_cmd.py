"""``cocoon bench``: measured ratios, ours vs. direct, in one run (Rich table + JSON file)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cocoon.cli.console import lazy_console, make_table
from cocoon.cli.options import cli_app

__all__ = ["app"]

app = cli_app(hoist=False, help="Benchmarks: the network against the same work done directly.")
console = lazy_console()
OutOpt = Annotated[Path, typer.Option(help="Where to write the JSON results.")]
T = TypeVar("T")
Progress = Callable[[str], Any]


def _in_scratch_home(
    bench: Callable[[Path, Progress], Coroutine[Any, Any, T]], *, label: str = "benchmark"
) -> T:
    """Run one benchmark in a throw-away home, its progress on a Rich status line."""
    import asyncio
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"cocoon-{label}-") as home, console.status(label) as status:
        return asyncio.run(bench(Path(home), status.update))


def _levels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: concurrency levels are comma-separated integers") from None


def _write(out: Path, result: dict[str, Any], chart: Callable[[dict[str, Any], Path], Path | None]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(result, indent=2))
    png = chart(result, out.with_suffix(".png"))
    console.print(f"[dim]results written to {out}" + (f" and {png}" if png else "") + "[/]")


@app.command()
def gateway(
    requests: Annotated[int, typer.Option(min=10, max=100_000)] = 200,
    levels: Annotated[str, typer.Option(help="Comma-separated concurrency levels.")] = "1,8",
    runs: Annotated[
        int, typer.Option(min=0, max=50, help="Rounds of the nginx comparison (medians); 0 skips it.")
    ] = 3,
    run_requests: Annotated[
        int,
        typer.Option(min=1, max=100_000, help="Requests per path in each round (at least 4 per connection)."),
    ] = 100,
    nginx: Annotated[bool, typer.Option(help="Compare with nginx's 3-hop TLS chain when installed.")] = True,
    events: Annotated[
        int, typer.Option(min=1, max=100_000, help="SSE events of 128 B in each answer (e.g. 500 at c=128).")
    ] = 50,
    out: OutOpt = Path("bench/results/gateway.json"),
) -> None:
    """Proxy-hop overhead with a fast fake upstream (50 chunks x 128 B): requests/s, TTFB, memory."""
    from cocoon.localnet.bench.chart import gateway_chart
    from cocoon.localnet.bench.scenarios import bench_gateway

    concurrency = _levels(levels)
    result = _in_scratch_home(
        lambda home, progress: bench_gateway(
            home, levels=concurrency, requests=requests, events=events, progress=progress
        )
    )
    table = make_table(title="gateway: app → client → proxy → worker → upstream vs. app → upstream")
    for column in (
        "concurrency",
        "direct rps",
        "network rps",
        "ratio",
        "TTFB p50 direct/network ms",
        "TTFB p99 network ms",
        "CPU ms/req network",
    ):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        d, v = row["direct"], row["network"]
        table.add_row(
            str(row["concurrency"]),
            str(d["rps"]),
            str(v["rps"]),
            str(row["rps_ratio"]),
            f"{d['ttfb_p50_ms']} / {v['ttfb_p50_ms']}",
            str(v["ttfb_p99_ms"]),
            str(v["cpu_ms_per_request"]),
        )
    console.print(table)
    console.print(f"memory per open attested proxy connection: {result['memory_per_connection_kib']} KiB")
    if runs:
        result["vs_nginx"] = _gateway_vs_nginx(concurrency, run_requests, runs, nginx, events)
    _write(out, result, gateway_chart)


def _gateway_vs_nginx(
    levels: tuple[int, ...], requests: int, runs: int, nginx: bool, events: int
) -> dict[str, Any]:
    """Every tier in its own process, and all in one, against nginx on the same upstream."""
    from cocoon.localnet.bench.compare import bench_compare
    from cocoon.localnet.bench.report import COLUMNS, NOTE, TARGET_COLUMNS, comparison_rows, target_rows

    result = _in_scratch_home(
        lambda home, progress: bench_compare(
            home,
            levels=levels,
            requests=requests,
            runs=runs,
            with_nginx=nginx,
            events=events,
            progress=progress,
        )
    )
    table = make_table(
        title=f"gateway vs nginx (3-hop mutual TLS 1.3), medians of {runs} runs × {requests} requests"
        f" (≥ 4 a connection), {events} events an answer"
    )
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for row in comparison_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(result["nginx_skipped"] or f"[dim]nginx: {result['nginx']}; {NOTE}[/]")
    targets = make_table(title="issue 15 targets, measured in this run")
    for column in TARGET_COLUMNS:
        targets.add_column(column, justify="left" if column in ("issue 15 target", "where") else "right")
    for cells in target_rows(result):
        style = {"met": "green", "NOT met": "red"}.get(cells[-1], "dim")
        targets.add_row(*cells[:-1], f"[{style}]{cells[-1]}[/]")
    console.print(targets)
    return result


@app.command()
def model(
    runs: Annotated[int, typer.Option(min=1, max=100)] = 9,
    max_tokens: Annotated[int, typer.Option(min=8, max=512)] = 64,
    out: OutOpt = Path("bench/results/model.json"),
) -> None:
    """Embedded model through the network vs. the engine alone: time to first token and tokens/s."""
    from cocoon.localnet.bench.chart import model_chart
    from cocoon.localnet.bench.scenarios import bench_model

    result = _in_scratch_home(
        lambda home, progress: bench_model(home, runs=runs, max_tokens=max_tokens, progress=progress)
    )
    table = make_table(title="embedded model (SmolLM2-135M): network vs. engine alone")
    for column in (
        "path",
        "TTFT ms",
        "decode tokens/s",
        "answer end after last token ms",
        "TTFT / decode ratio",
    ):
        table.add_column(column, justify="right")
    ratios = {"network": result, "network_separate": result["separate"]}
    for path, title in (
        ("direct", "direct"),
        ("network", "network, one process"),
        ("network_separate", "network, process each"),
    ):
        row, versus = result[path], ratios.get(path)
        pair = f"{versus['ttft_ratio']} / {versus['tokens_per_s_ratio']}" if versus else ""
        table.add_row(
            title, str(row["ttft_ms"]), str(row["tokens_per_s"]), str(row["end_after_last_token_ms"]), pair
        )
    console.print(table)
    for title, versus in (("one process", result), ("process each", result["separate"])):
        for name, value, goal, met in (
            ("TTFT ÷ engine alone", versus["ttft_ratio"], "≤ 1.10", (versus["ttft_ratio"] or 99) <= 1.10),
            (
                "decode ÷ engine alone",
                versus["tokens_per_s_ratio"],
                "≥ 0.98",
                (versus["tokens_per_s_ratio"] or 0) >= 0.98,
            ),
        ):
            verdict = "[green]met[/]" if met else "[red]NOT met[/]"
            console.print(f"issue 15 target 6, {title}, {name}: {value} (goal {goal}) {verdict}")
    _write(out, result, model_chart)


@app.command()
def soak(
    minutes: Annotated[float, typer.Option(min=0.1, max=24 * 60, help="How long to run the load.")] = 5.0,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 4,
    sample_every: Annotated[float, typer.Option(min=0.5, max=600, help="Seconds between samples.")] = 5.0,
    warmup: Annotated[
        float | None, typer.Option(help="Seconds before the baseline (default: a fifth of the run, ≤ 60).")
    ] = None,
    rss_tolerance_mib: Annotated[float, typer.Option(min=0)] = 16.0,
    fd_tolerance: Annotated[int, typer.Option(min=0)] = 8,
    out: OutOpt = Path("bench/results/soak.json"),
) -> None:
    """Steady load on the local network for N minutes; fails if memory or open files keep growing."""
    from cocoon.localnet.bench.soak import MIB, SoakConfig, run_soak

    duration = minutes * 60
    config = SoakConfig(
        duration_s=duration,
        concurrency=concurrency,
        sample_every_s=sample_every,
        warmup_s=min(duration / 5, 60.0) if warmup is None else warmup,
        rss_tolerance_mib=rss_tolerance_mib,
        fd_tolerance=fd_tolerance,
    )
    result = _in_scratch_home(lambda home, progress: run_soak(home, config, progress=progress), label="soak")
    table = make_table(title=f"soak: {minutes:g} min, concurrency {concurrency}")
    for column in ("t (s)", "RSS (MiB)", "open fds", "requests", "errors"):
        table.add_column(column, justify="right")
    for s in result.samples:
        marker = "" if s.t >= config.warmup_s else " (warm-up)"
        table.add_row(
            f"{s.t:.0f}{marker}", f"{s.rss_bytes / MIB:.1f}", str(s.fds), str(s.requests), str(s.errors)
        )
    console.print(table)
    v = result.verdict
    console.print(
        f"{result.requests} requests ({result.requests / max(result.elapsed_s, 1e-9):.1f}/s), {result.errors} errors;"
        f" RSS {v.rss_baseline_bytes / MIB:.1f} → {v.rss_final_bytes / MIB:.1f} MiB,"
        f" fds {v.fd_baseline} → {v.fd_final} after warm-up"
    )
    _write(out, result.to_json(), lambda _result, _png: None)  # the table is the report; no chart
    if not v.ok:
        for reason in v.reasons:
            console.print(f"[red]FAIL:[/] {reason}")
        for example in result.error_examples:
            console.print(f"[dim]  error: {example}[/]")
        raise typer.Exit(1)
    console.print("[green]OK:[/] memory and file descriptors stayed flat")


@app.command()
def sealed(
    rounds: Annotated[
        int, typer.Option(min=1, max=50, help="Alternating sealed/plain rounds (medians).")
    ] = 5,
    requests: Annotated[int, typer.Option(min=5, max=10_000, help="Requests per mode in each round.")] = 40,
    levels: Annotated[str, typer.Option(help="Comma-separated concurrency levels.")] = "1,8",
    model: Annotated[
        bool, typer.Option(help="The embedded model answers (its first token), not a script.")
    ] = False,
    out: OutOpt = Path("bench/results/sealed.json"),
) -> None:
    """Sealed vs. plain answers through the network in one run: added time to first byte, CPU per request."""
    from cocoon.localnet.bench.sealed import bench_sealed

    concurrency = _levels(levels)
    result = _in_scratch_home(
        lambda home, progress: bench_sealed(
            home, levels=concurrency, rounds=rounds, requests=requests, model=model, progress=progress
        )
    )
    table = make_table(title=f"sealed end to end (ML-KEM-768 + X25519) vs. plain: {result['answer']}")
    for column in (
        "concurrency",
        "TTFB p50 plain/sealed ms",
        "added ms",
        "CPU ms/req plain/sealed",
        "CPU ratio",
    ):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        p, s = row["plain"], row["sealed"]
        table.add_row(
            str(row["concurrency"]),
            f"{p['ttfb_p50_ms']} / {s['ttfb_p50_ms']}",
            str(row["added_ttfb_p50_ms"]),
            f"{p['cpu_ms_per_request']} / {s['cpu_ms_per_request']}",
            str(row["cpu_ratio"]),
        )
    console.print(table)
    _write(out, result, lambda _result, _png: None)  # the table is the report; no chart
