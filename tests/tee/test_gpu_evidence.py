"""Our NVIDIA GPU verifier on NVIDIA's own sample report, chain and RIMs (tests/fixtures/gpu)."""

from __future__ import annotations

import calendar
import dataclasses
import os
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cocoon.tee import AttestationError, CollateralUnavailable, KeyBindingError, QuoteInvalid, nvgpu
from cocoon.tee.nvgpu.chain import load_chain
from cocoon.tee.nvgpu.rim import GoldenMeasurement, Rim

GPU = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
SAMPLE_NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
RIM_TIME = calendar.timegm((2024, 6, 1, 0, 0, 0))  # the sample RIM signer certificates are valid then
NVIDIA_MISMATCHES = [
    "1",
    "2",
    "3",
    "7",
    "9",
    "11",
    "21",
    "22",
    "25",
    "26",
    "27",
    "29",
    "30",
    "31",
    "32",
    "34",
    "36",
    "37",
    "39",
    "40",
]


def sample() -> nvgpu.GpuEvidenceItem:
    report = bytes.fromhex((GPU / "hopperAttestationReport.txt").read_text().strip())
    certs = nvgpu.chain_der(load_chain((GPU / "hopperCertChain.txt").read_bytes()))
    return nvgpu.GpuEvidenceItem(report=report, certs=certs)


class SampleRims:
    """NVIDIA's test RIMs, served under whatever id the report asks for."""

    def rim(self, rim_id: str) -> bytes:
        name = "Driver_RIM_test_no_gpu" if "DRIVER" in rim_id else "1010_0200_882_96005E0001_test_no_gpu"
        return (GPU / f"{name}.swidtag").read_bytes()


def test_sample_report_parses_as_nvidia_reads_it() -> None:
    report = nvgpu.parse_gpu_report(sample().report)
    assert report.request_nonce == SAMPLE_NONCE
    assert report.driver_version == "550.90.07"
    assert report.vbios_version == "96.00.9f.00.01"  # what NVIDIA's test handle reports
    assert len(report.measurements) == 64 and all(len(v) == 48 for v in report.measurements.values())
    assert nvgpu.rim_ids(report) == ("NV_GPU_DRIVER_GH100_550.90.07", "NV_GPU_VBIOS_1010_0200_882_96009F0001")


def test_sample_verifies_with_its_fixed_nonce() -> None:
    verdict = nvgpu.verify_gpu_report(sample(), nonce=SAMPLE_NONCE, now=RIM_TIME)
    assert verdict.driver_version == "550.90.07" and not verdict.measurements_checked
    assert verdict.fwid.hex().startswith("f5c384ae")


def test_a_key_bound_nonce_is_refused_for_the_sample() -> None:
    """The sample answers NVIDIA's fixed nonce, not one bound to any node key: a replay."""
    with pytest.raises(KeyBindingError, match="another nonce"):
        nvgpu.verify_gpu_report(sample(), nonce=nvgpu.gpu_nonce(b"\x01" * 32), now=RIM_TIME)


def test_gpu_nonce_is_bound_to_the_key() -> None:
    assert nvgpu.gpu_nonce(b"\x01" * 32) != nvgpu.gpu_nonce(b"\x02" * 32)
    assert len(nvgpu.gpu_nonce(b"\x01" * 32)) == 32


@pytest.mark.parametrize("offset", [40, 200, 3000, 4117 - 96 - 10, 4117 - 5])
def test_any_changed_byte_breaks_the_signature(offset: int) -> None:
    item = sample()
    forged = bytearray(item.report)
    forged[offset] ^= 0x01
    with pytest.raises(QuoteInvalid):
        nvgpu.verify_gpu_report(
            dataclasses.replace(item, report=bytes(forged)), nonce=SAMPLE_NONCE, now=RIM_TIME
        )


def test_a_forged_nonce_in_the_request_is_caught_by_the_signature() -> None:
    item = sample()
    forged = bytearray(item.report)
    key_nonce = nvgpu.gpu_nonce(b"\x07" * 32)
    forged[4:36] = key_nonce
    with pytest.raises(QuoteInvalid, match="signature"):
        nvgpu.verify_gpu_report(
            dataclasses.replace(item, report=bytes(forged)), nonce=key_nonce, now=RIM_TIME
        )


def test_a_chain_that_does_not_reach_nvidias_root_is_refused() -> None:
    item = sample()
    with pytest.raises(QuoteInvalid, match="not signed by"):
        nvgpu.verify_gpu_report(
            dataclasses.replace(item, certs=item.certs[:1]), nonce=SAMPLE_NONCE, now=RIM_TIME
        )
    swapped = (item.certs[0], item.certs[2], item.certs[3], item.certs[4])
    with pytest.raises(QuoteInvalid, match="not signed by"):
        nvgpu.verify_gpu_report(dataclasses.replace(item, certs=swapped), nonce=SAMPLE_NONCE, now=RIM_TIME)


def test_a_report_signed_under_another_leaf_is_refused() -> None:
    """Another genuine certificate as leaf: its key did not sign the report (or it is a CA)."""
    item = sample()
    with pytest.raises(QuoteInvalid):
        nvgpu.verify_gpu_report(
            dataclasses.replace(item, certs=item.certs[1:]), nonce=SAMPLE_NONCE, now=RIM_TIME
        )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x11" * 37,
        bytes(200),
        bytes.fromhex("11e001ff") + bytes(33) + b"\x11\xe0\x00\x00\x40" + b"\xff" * 3,
    ],
)
def test_garbage_reports_are_malformed(raw: bytes) -> None:
    with pytest.raises(QuoteInvalid):
        nvgpu.parse_gpu_report(raw)


def test_truncated_sample_is_malformed() -> None:
    raw = sample().report
    for cut in (1, 96, 500, 4000):
        with pytest.raises(QuoteInvalid):
            nvgpu.parse_gpu_report(raw[:-cut])
    with pytest.raises(QuoteInvalid, match="after its signature"):
        nvgpu.parse_gpu_report(raw + b"\x00")


def test_sample_rims_verify_and_are_refused_when_altered() -> None:
    xml = SampleRims().rim("NV_GPU_DRIVER_GH100_x")
    rim = nvgpu.verify_rim(xml, kind="driver", root_ca=nvgpu.evidence.RIM_ROOT, now=RIM_TIME)
    assert rim.version == "545.00" and len(rim.active) == 21 and "HCC RIM L4 Signer" in rim.signer
    altered = xml.replace(b'index="7" active="True"', b'index="7" active="False"', 1)
    assert altered != xml
    with pytest.raises(QuoteInvalid, match="signed digest"):
        nvgpu.verify_rim(altered, kind="driver", root_ca=nvgpu.evidence.RIM_ROOT, now=RIM_TIME)
    with pytest.raises(QuoteInvalid, match="validity window"):  # the signer expired in 2025
        nvgpu.verify_rim(
            xml, kind="driver", root_ca=nvgpu.evidence.RIM_ROOT, now=calendar.timegm((2026, 1, 1, 0, 0, 0))
        )
    with pytest.raises(QuoteInvalid, match="not signed by"):  # under the device root instead
        nvgpu.verify_rim(xml, kind="driver", root_ca=nvgpu.evidence.DEVICE_ROOT, now=RIM_TIME)


def test_sample_measurements_differ_from_the_test_rims_exactly_where_nvidia_says() -> None:
    with pytest.raises(QuoteInvalid) as caught:
        nvgpu.verify_gpu_report(sample(), nonce=SAMPLE_NONCE, now=RIM_TIME, rims=SampleRims())
    found = [part.split(" ")[0] for part in str(caught.value).split(" at ", 1)[1].split(", ")]
    assert found == NVIDIA_MISMATCHES


def _rim_of(report: nvgpu.GpuReport, indices: range, kind: str) -> Rim:
    golden = {
        i: GoldenMeasurement(
            index=i, values=(b"\x00" * 48, report.measurements[i + 1]), size=48, active=True, name=f"m{i}"
        )
        for i in indices
    }
    return Rim(kind=kind, version="x", measurements=MappingProxyType(golden), signer="test")


def test_measurements_matching_golden_values_pass_and_one_change_fails() -> None:
    report = nvgpu.parse_gpu_report(sample().report)
    driver, vbios = _rim_of(report, range(0, 30), "driver"), _rim_of(report, range(30, 63), "vbios")
    nvgpu.compare_measurements(report, driver, vbios)
    changed = dict(driver.measurements)
    changed[7] = dataclasses.replace(changed[7], values=(b"\x01" * 48,))
    with pytest.raises(QuoteInvalid, match=r"at 7 \(m7\)"):
        nvgpu.compare_measurements(
            report, dataclasses.replace(driver, measurements=MappingProxyType(changed)), vbios
        )
    with pytest.raises(QuoteInvalid, match="both claim"):
        nvgpu.compare_measurements(report, driver, _rim_of(report, range(29, 31), "vbios"))


def test_claims_round_trip_and_refuse_garbage() -> None:
    item = sample()
    assert nvgpu.evidence_from_claims({"evidence": [item.to_claims()]}) == [item]
    assert nvgpu.evidence_from_claims(None) == [] and nvgpu.evidence_from_claims({"kind": "none"}) == []
    for bad in (
        "x",
        {"evidence": "x"},
        {"evidence": [{"report": "%%", "certs": []}]},
        {"evidence": [item.to_claims()] * 5},
    ):
        with pytest.raises(QuoteInvalid):
            nvgpu.evidence_from_claims(bad)


def test_rim_cache_fetches_once_and_keeps_the_file(tmp_path: Path) -> None:
    import base64
    import json

    xml = SampleRims().rim("NV_GPU_DRIVER_GH100_x")
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return json.dumps({"id": "x", "rim": base64.b64encode(xml).decode()}).encode()

    cache = nvgpu.RimCache(tmp_path / "rims", fetch=fetch)
    assert cache.rim("NV_GPU_DRIVER_GH100_550.90.07") == xml
    assert nvgpu.RimCache(tmp_path / "rims", fetch=fetch).rim("NV_GPU_DRIVER_GH100_550.90.07") == xml
    assert calls == [nvgpu.NVIDIA_RIM_SERVICE + "NV_GPU_DRIVER_GH100_550.90.07"]
    with pytest.raises(CollateralUnavailable, match="not a valid id"):
        cache.rim("../../etc/passwd")
    with pytest.raises(CollateralUnavailable, match="could not be fetched"):
        nvgpu.RimCache(tmp_path / "other", fetch=lambda url: b"not json").rim("NV_GPU_VBIOS_1")


@settings(max_examples=int(os.environ.get("COCOON_GPU_FUZZ_EXAMPLES", "60")), deadline=None)
@given(st.data())
def test_mutated_evidence_is_refused_with_attestation_errors_only(data: st.DataObject) -> None:
    """Hostile evidence never crashes the verifier: every mutation is a clean AttestationError."""
    item = sample()
    report = bytearray(item.report)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(report) - 1))
        if kind == "flip":
            report[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del report[at : at + data.draw(st.integers(1, 64))]
        else:
            report[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    certs = list(item.certs)
    if data.draw(st.booleans()):  # not the root: the GPU's copy of it is replaced by the pinned one
        index = data.draw(st.integers(0, len(certs) - 2))
        der = bytearray(certs[index])
        der[data.draw(st.integers(0, len(der) - 1))] ^= 0xFF
        certs[index] = bytes(der)
    assume(bytes(report) != item.report or tuple(certs) != item.certs)  # flips can cancel out
    with pytest.raises(AttestationError):
        nvgpu.verify_gpu_report(
            nvgpu.GpuEvidenceItem(report=bytes(report), certs=tuple(certs)), nonce=SAMPLE_NONCE, now=RIM_TIME
        )
