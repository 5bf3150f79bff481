"""``cocoon tee``: verify quotes, compute image hashes, make and inspect RA-TLS certificates."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cocoon.cli.console import escape, lazy_console, make_table
from cocoon.cli.options import HomeOpt, JsonOpt, cli_app, global_options, record
from cocoon.cli.runner import default_home, fail

if TYPE_CHECKING:  # the TEE stack (cryptography, dcap-qvl) loads only when a command runs
    from rich.table import Table

    from cocoon.tee.collateral import CollateralSource


__all__ = ["app"]

app = cli_app(
    help="Attestation tools: quotes, image hashes, RA-TLS certificates.",
    no_args_is_help=True,
)
console = lazy_console()
# cocoon.tee.verify.TCB_STATUSES, best first (tests check the two agree); here so --help stays fast.
TCB_STATUS_NAMES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
)


@app.callback()
def _tee(ctx: typer.Context, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    record(ctx, home, as_json)


def _home(ctx: typer.Context) -> Path:
    return global_options(ctx).home or default_home()


_QUOTE_FIELDS = (
    "version",
    "tee_type",
    "body",
    "fmspc",
    "td_attributes",
    "xfam",
    "mr_td",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "rtmrs",
    "report_data",
    "mr_enclave",
    "mr_signer",
    "debug",
)


def _read_quote_or_cert(path: Path) -> tuple[bytes, bytes | None]:
    """(quote, certificate DER or None): FILE may hold a raw quote or an RA-TLS certificate (PEM/DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from cocoon.tee import AttestationError, parse_certificate

    data = path.read_bytes()
    der: bytes | None = None
    if data.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
        der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    elif data[:1] == b"\x30":
        try:
            der = x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        except ValueError:
            der = None
    if der is None:
        return data, None
    cert = parse_certificate(der)
    if cert.quote is None:
        raise AttestationError("the certificate carries no quote (backend none)")
    return cert.quote, der


def _table(title: str, rows: dict[str, Any]) -> Table:
    table = make_table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows.items():
        if isinstance(value, list):
            value = "\n".join(str(v) for v in value) or "-"
        table.add_row(key, str(value))
    return table


def _fail(message: str, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        typer.echo(json.dumps({"valid": False, "error": message, **(extra or {})}, indent=2))
    else:
        console.print(f"[red]invalid:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


@app.command("verify-quote")
def verify_quote_cmd(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A quote or an RA-TLS certificate.")
    ],
    collateral: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Collateral JSON (dcap-qvl format).")
    ] = None,
    now: Annotated[int | None, typer.Option(help="Verification time, unix seconds (default: now).")] = None,
    sim_home: Annotated[
        Path | None, typer.Option(help="Verify under the simulated platform in this home (not Intel's root).")
    ] = None,
    pccs: Annotated[str | None, typer.Option(help="Fetch collateral from this PCCS URL.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Collateral cache for --pccs.")] = None,
    min_tcb: Annotated[
        str, typer.Option(help=f"Worst accepted TCB status: {', '.join(TCB_STATUS_NAMES)}.")
    ] = "UpToDate",
    allow_debug: Annotated[bool, typer.Option(help="Accept debug TDs.")] = False,
) -> None:
    """Verify a quote's signature chain and TCB status; exit 0 only if it is valid under the policy."""
    from cocoon.tee import AttestationError, PccsCollateral, StaticCollateral, parse_quote, sim_platform
    from cocoon.tee.verify import TCB_STATUSES, verify_quote

    as_json = global_options(ctx).json
    at = int(time.time()) if now is None else now
    try:
        quote, _ = _read_quote_or_cert(file)
        parsed = parse_quote(quote)
    except (AttestationError, ValueError) as exc:
        _fail(str(exc), as_json)
        return
    root: bytes | None = None
    source: CollateralSource
    if sim_home is not None:
        platform = sim_platform(sim_home)
        root, source = platform.root_ca_der, platform
    if collateral is not None:
        source = StaticCollateral.from_file(collateral)
    elif pccs is not None:
        source = PccsCollateral(pccs, cache_dir)
    elif sim_home is None:
        _fail("give --collateral FILE, --pccs URL or --sim-home DIR", as_json, {"quote": parsed.to_json()})
        return
    try:
        verdict = verify_quote(quote, source.collateral(quote, now=at), now=at, root_ca_der=root)
    except AttestationError as exc:
        _fail(str(exc), as_json, {"quote": parsed.to_json()})
        return
    allowed = TCB_STATUSES[: TCB_STATUSES.index(min_tcb) + 1] if min_tcb in TCB_STATUSES else ("UpToDate",)
    problems = []
    if verdict.status not in allowed:
        problems.append(f"TCB status {verdict.status} is worse than {min_tcb}")
    if parsed.debug and not allow_debug:
        problems.append("debug TD")
    result = {"valid": not problems, "problems": problems, "now": at, **verdict.to_json()}
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        rows = {k: v for k, v in parsed.to_json().items() if k in _QUOTE_FIELDS}
        rows = {
            "status": verdict.status,
            "advisories": list(verdict.advisory_ids),
            "root key id": verdict.root_key_id.hex(),
            "image hash": parsed.image_hash.hex(),
            **rows,
        }
        console.print(_table(str(file), rows))
        if problems:
            console.print(f"[red]refused:[/] {escape('; '.join(problems))}", soft_wrap=True)
        else:
            console.print("[green]valid[/]")
    if problems:
        raise typer.Exit(1)


@app.command("image-hash")
def image_hash_cmd(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A quote or an RA-TLS certificate.")
    ],
) -> None:
    """Print COCOON's image hash of a quote: SHA-256(mr_td ‖ mr_config_id ‖ mr_owner ‖ mr_owner_config ‖ rtmr0..3 ‖ 0^64)."""
    from cocoon.tee import AttestationError, parse_quote

    try:
        quote, _ = _read_quote_or_cert(file)
        digest = parse_quote(quote).image_hash.hex()
    except (AttestationError, ValueError) as exc:
        raise fail(str(exc)) from None
    if global_options(ctx).json:
        typer.echo(json.dumps({"file": str(file), "image_hash": digest}))
    else:
        typer.echo(digest)


@app.command("gen-cert")
def gen_cert_cmd(
    ctx: typer.Context,
    backend: Annotated[str, typer.Option(help="sim | tdx | none")] = "sim",
    image: Annotated[str | None, typer.Option(help="Simulated image name (sets its measurements).")] = None,
    measurement: Annotated[
        list[str] | None,
        typer.Option(help="Simulated measurement NAME=HEX (mr_td, rtmr0..3, …); repeatable."),
    ] = None,
    model_hash: Annotated[str | None, typer.Option(help="Model hash (hex) to put in the claims.")] = None,
    lifetime: Annotated[int, typer.Option(help="Validity in seconds (at most 86400).")] = 86400,
    out: Annotated[Path, typer.Option(help="Writes OUT.cert.pem and OUT.key.pem.")] = Path("node"),
) -> None:
    """Create an RA-TLS certificate and key with the chosen TEE backend (sim: the platform in --home)."""
    from cocoon.tee import AttestationError, NodeIdentity, make_backend

    measurements: dict[str, str] = {}
    if image:
        measurements["image"] = image
    for item in measurement or []:
        name, _, value = item.partition("=")
        measurements[name.strip()] = value.strip()
    try:
        tee = make_backend(backend, home=_home(ctx), measurements=measurements or None)
        identity = NodeIdentity.create(
            tee,
            now=int(time.time()),
            model_hash=bytes.fromhex(model_hash) if model_hash else None,
            lifetime_s=lifetime,
        )
    except (AttestationError, ValueError) as exc:
        raise fail(str(exc)) from None
    cert_path, key_path = Path(f"{out}.cert.pem"), Path(f"{out}.key.pem")
    try:
        cert_path.write_bytes(identity.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # an older key file with looser bits is tightened too
            f.write(identity.key_pem)
    except OSError as exc:
        raise fail(f"cannot write {exc.filename or out}: {exc.strerror}") from None
    rows: dict[str, Any] = {
        "backend": tee.name,
        "certificate": str(cert_path),
        "key": str(key_path),
        "public_key": identity.public_key.hex(),
        "image_hash": identity.image_hash.hex() if identity.image_hash else None,
        "not_after": identity.not_after,
    }
    if global_options(ctx).json:
        typer.echo(json.dumps(rows, indent=2))
        return
    console.print(
        _table("RA-TLS certificate", {k.replace("_", " "): "-" if v is None else v for k, v in rows.items()})
    )


@app.command("inspect-cert")
def inspect_cert_cmd(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="RA-TLS certificate (PEM or DER).")
    ],
    sim_home: Annotated[
        Path | None, typer.Option(help="Also verify the quote under the simulated platform in this home.")
    ] = None,
    now: Annotated[int | None, typer.Option(help="Verification time, unix seconds (default: now).")] = None,
) -> None:
    """Show an RA-TLS certificate's claims and quote, and check it (key binding; quote signature with --sim-home)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from cocoon.tee import AttestationError, AttestationPolicy, parse_certificate, parse_quote, sim_platform

    as_json = global_options(ctx).json
    at = int(time.time()) if now is None else now
    data = file.read_bytes()
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            data = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        cert = parse_certificate(data)
    except (AttestationError, ValueError) as exc:
        _fail(str(exc), as_json)
        return
    policy = AttestationPolicy.sim(sim_platform(sim_home)) if sim_home else AttestationPolicy.any()
    info: dict[str, Any] = {"certificate": cert.to_json()}
    if cert.quote is not None:
        info["quote"] = parse_quote(cert.quote).to_json()
    try:
        info["attestation"] = policy.verify_certificate(data, now=at).to_json()
        info["valid"] = True
    except AttestationError as exc:
        info["valid"], info["error"] = False, f"{type(exc).__name__}: {exc}"
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        _print_certificate(info, policy.kind)
    if not info["valid"]:
        raise typer.Exit(1)


def _print_certificate(info: dict[str, Any], policy_kind: str) -> None:
    console.print(
        _table("certificate", {**info["certificate"], "claims": json.dumps(info["certificate"]["claims"])})
    )
    if "quote" in info:
        q = info["quote"]
        console.print(_table("quote", {k: v for k, v in q.items() if k in (*_QUOTE_FIELDS, "image_hash")}))
    verdict = "[green]valid[/]" if info["valid"] else f"[red]invalid:[/] {escape(info['error'])}"
    console.print(f"{policy_kind} policy: {verdict}", soft_wrap=True)


@app.command("bench")
def bench_cmd(
    ctx: typer.Context,
    n: Annotated[int, typer.Option(min=1, help="Samples per measurement.")] = 200,
    quote: Annotated[Path | None, typer.Option(help="Also time this real quote…")] = None,
    collateral: Annotated[Path | None, typer.Option(help="…with this collateral…")] = None,
    now: Annotated[int | None, typer.Option(help="…at this time.")] = None,
) -> None:
    """Measure RA-TLS handshakes with and without attestation, and quote verification time (sim platform in --home)."""
    import asyncio

    from cocoon.tee import sim_platform
    from cocoon.tee.bench import bench_handshakes, bench_quote_verification

    platform = sim_platform(_home(ctx))
    fixture = (quote, collateral, now) if quote and collateral and now else None
    results = asyncio.run(bench_handshakes(platform, n=n)) + bench_quote_verification(
        platform, n=n, fixture=fixture
    )
    if global_options(ctx).json:
        typer.echo(json.dumps([r.to_json() for r in results], indent=2))
        return
    table = make_table(title=f"cocoon tee bench (n={n})")
    for col in ("measurement", "median ms", "p90 ms"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, f"{r.median_ms:.3f}", f"{r.p90_ms:.3f}")
    console.print(table)


@app.command("serve-pccs")
def serve_pccs_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
) -> None:
    """Serve the simulated platform's collateral (platform in --home) with Intel's PCS v4 API (development only)."""
    from cocoon.cli.runner import cli_errors
    from cocoon.tee import sim_platform
    from cocoon.tee.pccs_server import SimPccsServer

    platform = sim_platform(_home(ctx))
    with cli_errors(), SimPccsServer(platform, host, port) as server:
        console.print(f"sim PCCS at {server.url} (FMSPC {platform.fmspc}); Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@app.command("verify-gpu")
def verify_gpu_cmd(
    ctx: typer.Context,
    report: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="An NVIDIA attestation report (raw or hex).")
    ],
    certs: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="The GPU's certificate chain (PEM).")
    ],
    nonce: Annotated[str, typer.Option(help="The nonce the report must answer (64 hex digits).")],
    rims: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="RIM folder (<id>.swidtag): check measurements."),
    ] = None,
    ocsp: Annotated[bool, typer.Option(help="Check revocation with NVIDIA's OCSP service.")] = False,
    now: Annotated[int | None, typer.Option(help="Verification time, unix seconds (default: now).")] = None,
) -> None:
    """Verify one GPU attestation report with our own verifier: chain to NVIDIA's root, FWID,
    signature, nonce, and with --rims the golden measurements; exit 0 only if it passes."""
    from cocoon.tee import AttestationError, nvgpu
    from cocoon.tee.nvgpu.chain import load_chain

    as_json = global_options(ctx).json
    try:
        raw = report.read_bytes()
        text = raw.strip()  # NVIDIA's samples are hex text; NVML gives raw bytes
        data = (
            bytes.fromhex(text.decode())
            if text and all(c in b"0123456789abcdefABCDEF" for c in text)
            else raw
        )
        item = nvgpu.GpuEvidenceItem(report=data, certs=nvgpu.chain_der(load_chain(certs.read_bytes())))
        verdict = nvgpu.verify_gpu_report(
            item,
            nonce=bytes.fromhex(nonce),
            now=int(time.time()) if now is None else now,
            rims=nvgpu.RimDirectory(rims) if rims is not None else None,
            revocation=nvgpu.OcspCache() if ocsp else None,
        )
    except (AttestationError, ValueError, UnicodeDecodeError) as exc:
        _fail(str(exc), as_json)
        return
    if as_json:
        typer.echo(json.dumps({"valid": True, **verdict.to_json()}, indent=2))
        return
    console.print(_table(str(report), verdict.to_json()))
    console.print(
        "[green]valid[/]" + ("" if verdict.measurements_checked else " (measurements not checked: no --rims)")
    )


@app.command("seal-server")
def seal_server_cmd(
    ctx: typer.Context,
    socket_path: Annotated[
        Path | None, typer.Option("--socket", help="Unix socket to listen on (default <home>/seal.sock).")
    ] = None,
) -> None:
    """Run the sealing enclave of the simulated platform in --home as its own process (development).

    Nodes with tee.seal_address = "unix:<socket>" get their sealed root from it; on real hardware the
    host runs an SGX seal server with the same protocol on vsock port 12345."""
    import asyncio
    import contextlib

    from cocoon.cli.runner import cli_errors
    from cocoon.tee import sim_platform
    from cocoon.tee.seal import SimSealService

    home = _home(ctx)
    path = socket_path or home / "seal.sock"

    async def serve() -> None:
        async with SimSealService(sim_platform(home), path):
            console.print(
                f"seal server (simulated enclave) at unix:{escape(str(path))}; Ctrl-C stops", soft_wrap=True
            )
            await asyncio.Event().wait()

    with cli_errors(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
