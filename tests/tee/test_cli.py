"""``cocoon tee`` commands."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cocoon.cli.tee_cmd import app

runner = CliRunner()
PHALA_NOW = "1750329600"


def test_verify_quote_fixture(fixtures_dir: Path) -> None:
    quote, col = fixtures_dir / "phala_tdx_quote", fixtures_dir / "phala_tdx_quote_collateral.json"
    ok = runner.invoke(
        app, ["verify-quote", str(quote), "--collateral", str(col), "--now", PHALA_NOW, "--json"]
    )
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    assert doc["valid"] and doc["status"] == "UpToDate"
    assert doc["quote"]["image_hash"] == "b260fa9168ca9f28e7f15f128a45ac31c419705b31a60feac30b322ee06bc752"
    late = runner.invoke(app, ["verify-quote", str(quote), "--collateral", str(col), "--now", "1790000000"])
    assert late.exit_code == 1 and "invalid" in late.output
    human = runner.invoke(app, ["verify-quote", str(quote), "--collateral", str(col), "--now", PHALA_NOW])
    assert human.exit_code == 0 and "UpToDate" in human.output


def test_verify_quote_needs_collateral(fixtures_dir: Path) -> None:
    result = runner.invoke(app, ["verify-quote", str(fixtures_dir / "cocoon_quote.dat"), "--json"])
    assert result.exit_code == 1 and "--collateral" in result.output


def test_verify_garbage(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 100)
    assert runner.invoke(app, ["verify-quote", str(junk), "--sim-home", str(tmp_path)]).exit_code == 1
    assert runner.invoke(app, ["image-hash", str(junk)]).exit_code == 1


def test_image_hash(fixtures_dir: Path) -> None:
    result = runner.invoke(app, ["image-hash", str(fixtures_dir / "cocoon_quote.dat")])
    assert result.exit_code == 0
    assert result.output.strip() == "04b3afd931d28680af91a15b09d672c40ad6b141f7f9089a8d67d595220f7436"


def test_gen_and_inspect_sim_cert(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "node"
    made = runner.invoke(
        app, ["gen-cert", "--backend", "sim", "--home", str(home), "--image", "worker", "--out", str(out)]
    )
    assert made.exit_code == 0, made.output
    cert = Path(f"{out}.cert.pem")
    assert cert.exists() and Path(f"{out}.key.pem").stat().st_mode & 0o077 == 0
    inspected = runner.invoke(app, ["inspect-cert", str(cert), "--sim-home", str(home), "--json"])
    assert inspected.exit_code == 0, inspected.output
    doc = json.loads(inspected.output)
    assert (
        doc["valid"]
        and doc["attestation"]["backend"] == "sim"
        and doc["attestation"]["tcb_status"] == "UpToDate"
    )
    image = runner.invoke(app, ["image-hash", str(cert)])
    assert image.output.strip() == doc["attestation"]["image_hash"]
    verified = runner.invoke(app, ["verify-quote", str(cert), "--sim-home", str(home), "--json"])
    assert verified.exit_code == 0 and json.loads(verified.output)["status"] == "UpToDate"
    # Under another platform's root the same certificate is refused.
    other = runner.invoke(app, ["inspect-cert", str(cert), "--sim-home", str(tmp_path / "other")])
    assert other.exit_code == 1


def test_gen_none_cert(tmp_path: Path) -> None:
    out = tmp_path / "plain"
    assert runner.invoke(app, ["gen-cert", "--backend", "none", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["inspect-cert", f"{out}.cert.pem", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["attestation"]["backend"] == "none"
    assert runner.invoke(app, ["image-hash", f"{out}.cert.pem"]).exit_code == 1


def test_gen_cert_rejects_bad_input(tmp_path: Path) -> None:
    assert (
        runner.invoke(app, ["gen-cert", "--backend", "quantum", "--out", str(tmp_path / "x")]).exit_code == 1
    )
    bad = ["gen-cert", "--home", str(tmp_path), "--measurement", "mr_td=zz", "--out", str(tmp_path / "y")]
    assert runner.invoke(app, bad).exit_code == 1


def test_bench_runs(tmp_path: Path) -> None:
    """Only that it runs and reports; timings are measured by hand, never asserted."""
    result = runner.invoke(app, ["bench", "--home", str(tmp_path), "--n", "3", "--json"])
    assert result.exit_code == 0, result.output
    names = [r["name"] for r in json.loads(result.output)]
    assert any("cold" in n for n in names) and any("cached collateral" in n for n in names)


GPU = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
GPU_NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
RIM_NOW = "1717200000"  # 2024-06-01: NVIDIA's sample RIM signers are valid then


def test_verify_gpu_on_nvidias_sample(tmp_path: Path) -> None:
    args = [
        "verify-gpu",
        str(GPU / "hopperAttestationReport.txt"),
        "--certs",
        str(GPU / "hopperCertChain.txt"),
    ]
    ok = runner.invoke(app, ["--json", *args, "--nonce", GPU_NONCE])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["driver"] == "550.90.07"
    replayed = runner.invoke(app, [*args, "--nonce", "00" * 32])
    assert replayed.exit_code == 1 and "another nonce" in replayed.output
    rims = tmp_path / "rims"
    rims.mkdir()
    (rims / "NV_GPU_DRIVER_GH100_550.90.07.swidtag").write_bytes(
        (GPU / "Driver_RIM_test_no_gpu.swidtag").read_bytes()
    )
    (rims / "NV_GPU_VBIOS_1010_0200_882_96009F0001.swidtag").write_bytes(
        (GPU / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes()
    )
    measured = runner.invoke(app, [*args, "--nonce", GPU_NONCE, "--rims", str(rims), "--now", RIM_NOW])
    assert measured.exit_code == 1 and "differ from the golden values" in measured.output  # as NVIDIA finds
