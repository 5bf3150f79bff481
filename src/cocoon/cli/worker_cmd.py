"""``cocoon worker``: run a worker node (or ``--check`` its config against the proxies), write a
config (``init``), or compute a model hash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cocoon.cli.console import lazy_console, make_text
from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, global_options, record
from cocoon.cli.runner import default_home, fail

if TYPE_CHECKING:
    from collections.abc import Callable

    from cocoon.worker import WorkerConfig
    from cocoon.worker.controls import Reloadable
    from cocoon.worker.init_config import EngineChoice

__all__ = ["app"]

console = lazy_console(soft_wrap=True)
app = cli_app(help="Run a worker node (--config FILE), check or write its config, or hash a model's weights.")


@app.callback(invoke_without_command=True)
def run_worker(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config ([worker] section).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address the health endpoint listens on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the health endpoint (0 = any free port).")] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Start as configured, wait for every proxy to admit it, stop; serve nothing."
        ),
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """With no subcommand: run a worker node (flags override the config file and COCOON_WORKER__*)."""
    options = record(ctx, home, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from cocoon.cli.runner import cli_errors, run_async, serve_node
    from cocoon.core.settings import load_config
    from cocoon.core.statedir import private_dir
    from cocoon.worker import Worker, WorkerConfig

    overrides = {"home": options.home, "health_host": host, "health_port": port}
    with cli_errors():
        node_config = load_config(WorkerConfig, config, section="worker", overrides=overrides)
        private_dir(node_config.home)  # keys and ledgers: readable by the owner only
        if check:
            raise _check(node_config, options.json)
        worker = Worker(node_config)

    def summary() -> dict[str, str]:
        return {
            "health": worker.health_url,
            "dashboard": f"{worker.health_url}/dashboard/ (operator token: {worker.config.home / 'operator.token'})",
            "proxies": ", ".join(worker.config.proxies) or "-",
            "home": str(worker.config.home),
        }

    async def serve() -> None:
        if config is not None:  # SIGHUP: read the file again, apply what can change live
            load = lambda: load_config(WorkerConfig, config, section="worker", overrides=overrides)  # noqa: E731
            reload_on_sighup(worker, load)
        # A worker every proxy refuses for good (owner, model) exits with EXIT_REFUSED instead of retrying.
        await serve_node(worker, "worker", summary, refused=worker.refusals.wait)

    run_async(serve())


def reload_on_sighup(worker: Reloadable, load: Callable[[], WorkerConfig]) -> Callable[[], None]:
    """From now on SIGHUP reloads the config into ``worker`` (live fields only, see
    :mod:`cocoon.worker.controls`); returns the undo. Needs a running event loop."""
    import asyncio
    import signal

    from cocoon.worker.controls import reload_live

    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        task = loop.create_task(reload_live(worker, load))
        running.add(task)
        task.add_done_callback(running.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)

    def undo() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return undo


def _worker_address(home: Path, config: Path | None) -> tuple[str, Path]:
    """(health URL, home) of the worker whose config is ``config``, else ``<home>/worker.toml``
    (what `cocoon worker init` writes), else the defaults."""
    import tomllib

    path = config or home / "worker.toml"
    section: dict[str, object] = {}
    if path.exists():
        try:
            section = dict(tomllib.loads(path.read_text()).get("worker", {}))
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read {path}: {exc}") from None
    elif config is not None:
        raise fail(f"no config file {config}")
    host, port = section.get("health_host", "127.0.0.1"), section.get("health_port", 12000)
    return f"http://{host}:{port}", Path(str(section.get("home", home))).expanduser()


def _operator_action(
    ctx: typer.Context,
    url: str | None,
    config: Path | None,
    token_file: Path | None,
    action: str,
    target: str = "",
) -> None:
    """Run one of the worker dashboard's operator actions on a running worker."""
    import httpx

    options = global_options(ctx)
    found_url, home = _worker_address(options.home or default_home() / "worker", config)
    url = url or found_url
    path = token_file or home / "operator.token"
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise fail(f"no operator token in {path} (the worker writes it at start; pass --token-file)")
    try:
        with httpx.Client(timeout=10) as http:
            answer = http.post(
                f"{url.rstrip('/')}/dashboard/api/actions/{action}",
                json={"target": target},
                headers={"authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the worker at {url}: {exc}") from None
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200:
        message = body.get("error", {}).get("message", answer.text) if isinstance(body, dict) else answer.text
        raise fail(f"the worker refused: {message}")
    if options.json:
        typer.echo(json.dumps({"ok": True, "action": action, "message": body.get("message", "")}))
    else:
        console.print(make_text(str(body.get("message", "done"))))


UrlOpt = Annotated[
    str | None,
    typer.Option(
        help="The worker's health endpoint (default: from its config, else http://127.0.0.1:12000)."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="The worker's TOML config (default: <home>/worker.toml if there)."),
]
TokenFileOpt = Annotated[
    Path | None, typer.Option(help="The worker's operator.token (default: <its home>/operator.token).")
]


@app.command("set-price")
def set_price_cmd(
    ctx: typer.Context,
    coefficient: Annotated[int, typer.Argument(min=0, help="Price coefficient, per mille (1000 = 1x).")],
    url: UrlOpt = None,
    config: ConfigOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Change a running worker's price coefficient now; its proxies price the next requests with it."""
    _operator_action(ctx, url, config, token_file, "set-price", str(coefficient))


@app.command("drain")
def drain_cmd(
    ctx: typer.Context, url: UrlOpt = None, config: ConfigOpt = None, token_file: TokenFileOpt = None
) -> None:
    """Pause a running worker: proxies stop sending it requests, running ones finish."""
    _operator_action(ctx, url, config, token_file, "drain")


@app.command("resume")
def resume_cmd(
    ctx: typer.Context, url: UrlOpt = None, config: ConfigOpt = None, token_file: TokenFileOpt = None
) -> None:
    """Let a paused worker take requests again."""
    _operator_action(ctx, url, config, token_file, "resume")


def _check(config: WorkerConfig, as_json: bool) -> typer.Exit:
    from cocoon.cli.runner import run_async
    from cocoon.worker.check import check_worker

    lines = run_async(check_worker(config))
    ok = all(line.ok for line in lines)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "checks": [dataclasses.asdict(line) for line in lines]}))
    else:
        for line in lines:
            mark = "[green]ok[/]  " if line.ok else "[red]FAIL[/]"
            console.print(f"{mark} {line.what}: ", make_text(line.detail), sep="", soft_wrap=True)
        console.print("[green]ready to serve[/]" if ok else "[red]this worker would not serve[/]")
    return typer.Exit(0 if ok else 1)


@app.command("model-hash")
def model_hash_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A model file or directory.", exists=True)],
) -> None:
    """Print the model hash (SHA-256 Merkle over the weight files) to allow on chain.

    The worker computes the same at start (one function). Left out of a directory: __pycache__,
    .git and other VCS/editor folders, .cache, and OS/editor junk files (see the README); a
    progress bar over the bytes shows on a terminal (stderr).
    """
    import logging

    from cocoon.cli.runner import cli_errors
    from cocoon.inference.model_hash import model_files
    from cocoon.worker.weights import hash_weights

    log = logging.getLogger("cocoon.cli.model_hash")
    with cli_errors():
        files = model_files(path)
        digest = hash_weights(path, log=log).hex()
    if global_options(ctx).json:
        doc = {
            "path": str(path),
            "model_hash": digest,
            "files": len(files.files),
            "bytes": files.size,
            "skipped": files.skipped,
        }
        typer.echo(json.dumps(doc))
        return
    typer.echo(digest)
    if files.skipped:
        err = lazy_console(stderr=True, soft_wrap=True)
        err.print(make_text(f"left out (not weights): {', '.join(files.skipped)}"), style="dim")


def _wallet_address(key_file: Path) -> str:
    """The address of the wallet whose key is (or is now made) in ``key_file``."""
    from cocoon.chain import KeyPair, Wallet
    from cocoon.core.keyfile import load_or_create_seed

    return str(Wallet(KeyPair.from_seed(load_or_create_seed(key_file))).address.to_str())  # type: ignore[no-untyped-call]


def _proxy_image_hash(network_home: Path) -> str:
    from cocoon import tee
    from cocoon.node.trust import ROLE_MEASUREMENTS

    return tee.sim_platform(network_home).backend(ROLE_MEASUREMENTS["proxy"]).image_hash().hex()


def _write_config(text: str, out: Path, force: bool) -> None:
    """Write ``text`` to ``out`` only if it loads as a worker config (and ``out`` is new, or ``force``)."""
    import tomllib

    from cocoon.core.settings import load_config
    from cocoon.worker import WorkerConfig

    if out.exists() and not force:
        raise fail(f"{out} exists; pass --force to replace it")
    section = tomllib.loads(text)["worker"]
    WorkerConfig.model_validate(section)  # the same checks `cocoon worker --config` runs
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    load_config(WorkerConfig, tmp, section="worker", environ={})
    tmp.replace(out)


def _local_toml(
    home: Path,
    network_home: Path | None,
    proxy: list[str] | None,
    health_port: int | None,
    engine: EngineChoice,
) -> str:
    """A worker beside `cocoon up`: the network's sim platform, its proxy's image, a wallet of its own."""
    from cocoon.worker.init_config import LocalWorkerPlan, local_worker_toml

    net_home = (network_home or default_home() / "local").expanduser().resolve()
    plan = LocalWorkerPlan(
        home=home,
        network_home=net_home,
        owner_address=_wallet_address(home / "wallet.key"),
        proxy_image_hash=_proxy_image_hash(net_home),
        proxies=tuple(proxy or ("127.0.0.1:11001",)),
        health_port=12100 if health_port is None else health_port,
        engine=engine,
    )
    return local_worker_toml(plan)


@app.command("init")
def init_cmd(
    ctx: typer.Context,
    network: Annotated[
        str, typer.Option(help="local: join `cocoon up` on this machine; real: TDX + TON.")
    ] = "local",
    out: Annotated[
        Path | None, typer.Option(help="Where to write the config (default: <home>/worker.toml).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    proxy: Annotated[
        list[str] | None, typer.Option(help="A proxy's workers address HOST:PORT (repeatable).")
    ] = None,
    engine_url: Annotated[str | None, typer.Option(help="Serve this OpenAI-compatible upstream.")] = None,
    model: Annotated[
        Path | None, typer.Option(help="GGUF for the embedded engine (local; default bundled).")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="The name the model is served under.")] = None,
    health_port: Annotated[int | None, typer.Option(min=0, max=65535, help="Health/dashboard port.")] = None,
    network_home: Annotated[
        Path | None, typer.Option(help="local: the `cocoon up` home (default ~/.cocoon/local).")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="real: your TON wallet address (paid here).")] = None,
    root: Annotated[str | None, typer.Option(help="real: the root contract's address.")] = None,
    lite_config: Annotated[Path | None, typer.Option(help="real: TON global config (liteservers).")] = None,
    gpu_class: Annotated[str, typer.Option(help="real: the GPU class you announce.")] = "H100",
    region: Annotated[str, typer.Option(help="real: the region you announce.")] = "eu",
    pccs_url: Annotated[str | None, typer.Option(help="real: PCCS for TDX collateral.")] = None,
) -> None:
    """Write a worker config that works: for the local network of `cocoon up`, or a real one."""
    from cocoon.cli.runner import cli_errors
    from cocoon.worker.init_config import EngineChoice, RealWorkerPlan, real_worker_toml

    options = global_options(ctx)
    if network not in ("local", "real"):
        raise typer.BadParameter("--network is local or real")
    engine = EngineChoice(url=engine_url, model_path=model, model_name=model_name)
    with cli_errors():
        if network == "local":
            home = (options.home or default_home() / "worker").expanduser().resolve()
            text = _local_toml(home, network_home, proxy, health_port, engine)
        else:
            missing = [name for name, v in (("--owner", owner), ("--root", root), ("--lite-config", lite_config), ("--engine-url", engine_url)) if not v]  # fmt: skip
            if missing:
                raise fail(f"--network real needs {', '.join(missing)}")
            assert owner and root and lite_config
            home = (options.home or Path("/var/lib/cocoon/worker")).expanduser()
            real = RealWorkerPlan(
                home=home,
                owner_address=owner,
                root_address=root,
                lite_config=lite_config.expanduser().resolve(),
                engine=engine,
                proxies=tuple(proxy or ()),
                gpu_class=gpu_class,
                region=region,
                pccs_url=pccs_url,
                health_port=12000 if health_port is None else health_port,
            )
            text = real_worker_toml(real)
        target = (out or home / "worker.toml").expanduser()
        try:
            _write_config(text, target, force)
        except ValueError as exc:  # pydantic's ValidationError included: a bad --owner, --proxy, ...
            raise fail(f"the config would not load: {exc}") from None
    if options.json:
        typer.echo(json.dumps({"config": str(target), "network": network, "home": str(home)}))
    else:
        console.print(f"wrote {target}")
        console.print(
            f"next: cocoon worker --config {target} --check   then   cocoon worker --config {target}"
        )
