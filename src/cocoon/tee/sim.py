"""A simulated Intel platform: its own PKI, quotes in the real layout, and matching collateral.

The platform mirrors Intel's DCAP trust chain with keys of its own::

    Sim SGX Root CA ──┬── Sim SGX PCK Platform CA ── Sim SGX PCK Certificate (SGX extension: FMSPC, SVNs)
                      │                                   └─ signs the Quoting Enclave report
                      │                                        └─ which binds the attestation key
                      │                                             └─ which signs each quote
                      └── Sim SGX TCB Signing ── signs TCB info and QE identity

Quotes are built by :mod:`cocoon.tee.quotegen` and collateral is minted for the verification time,
so ``dcap-qvl``'s ``verify_with_root_ca`` checks them with exactly the production code path. A
production policy pins Intel's root and refuses this one.

Everything lives under ``home/"sim-tee"`` and is created once (under a file lock, since several
local nodes may start at once) and then reused, so all nodes of a local network share one platform.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cocoon.tee import _der
from cocoon.tee.errors import BackendError, CollateralUnavailable
from cocoon.tee.quote import image_hash, parse_quote
from cocoon.tee.quotegen import (
    EnclaveReportFields,
    QuoteSigner,
    TdBodyFields,
    build_quote,
    raw_ecdsa_sign,
)
from cocoon.tee.tdreport import tdx_report

__all__ = [
    "MEASUREMENT_FIELDS",
    "SimBackend",
    "SimPlatform",
    "measurements_from_config",
    "sim_platform",
]

MEASUREMENT_FIELDS = (
    "mr_td",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
)
_SGX_EXT = "1.2.840.113741.1.13.1"
_FMSPC = bytes.fromhex("00C0DE5C0C00")  # not an Intel FMSPC, so sim collateral can never be confused
_PCE_ID = bytes(2)
_PCE_SVN = 13
_CPU_SVN = bytes.fromhex("03030202040100050000000000000000")
_TEE_TCB_SVN = bytes.fromhex("03000400000000000000000000000000")  # [0]=module ISVSVN, [1]=module version 0
_TEE_TCB_SVN_OUTDATED = bytes.fromhex("03000200000000000000000000000000")
_QE_ISVSVN = 8
_QE_SVN = 8
_TD_ATTRIBUTES = bytes.fromhex("0000001000000000")  # SEPT_VE_DISABLE set, debug clear
_TD_ATTRIBUTES_DEBUG = bytes.fromhex("0100001000000000")
_COLLATERAL_WINDOW = 30 * 86400
_DAY = 86400
_CERT_NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
_CERT_NOT_AFTER = dt.datetime(2049, 12, 31, tzinfo=dt.UTC)
SIM_ADVISORY = "COCOON-SIM-SA-0001"


def _rfc3339(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cocoon Simulation (not Intel)"),
        ]
    )


def _ku(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sgx_extension(ppid: bytes) -> bytes:
    """Intel's SGX PCK extension (OID 1.2.840.113741.1.13.1) with the sim platform's TCB."""
    tcb = [
        _der.sequence(_der.oid(f"{_SGX_EXT}.2.{i + 1}"), _der.integer(svn)) for i, svn in enumerate(_CPU_SVN)
    ]
    tcb.append(_der.sequence(_der.oid(f"{_SGX_EXT}.2.17"), _der.integer(_PCE_SVN)))
    tcb.append(_der.sequence(_der.oid(f"{_SGX_EXT}.2.18"), _der.octets(_CPU_SVN)))
    return _der.sequence(
        _der.sequence(_der.oid(f"{_SGX_EXT}.1"), _der.octets(ppid)),
        _der.sequence(_der.oid(f"{_SGX_EXT}.2"), _der.sequence(*tcb)),
        _der.sequence(_der.oid(f"{_SGX_EXT}.3"), _der.octets(_PCE_ID)),
        _der.sequence(_der.oid(f"{_SGX_EXT}.4"), _der.octets(_FMSPC)),
        _der.sequence(_der.oid(f"{_SGX_EXT}.5"), _der.enumerated(0)),
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    extra: tuple[x509.ExtensionType, ...] = (),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_CERT_NOT_BEFORE)
        .not_valid_after(_CERT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(_ku(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def measurements_from_config(measurements: Mapping[str, str] | None) -> dict[str, bytes]:
    """48-byte measurement registers from a config.

    Each of ``mr_td, mr_config_id, mr_owner, mr_owner_config, rtmr0..rtmr3`` may be given as 96 hex
    digits; missing ones are derived from ``image`` (default ``"cocoon-sim"``) as
    SHA-384("cocoon-sim:<image>:<field>") so that different images get different image hashes.
    ``mr_config_id``, ``mr_owner`` and ``mr_owner_config`` default to zero, as on a COCOON TD.
    """
    cfg = dict(measurements or {})
    image = cfg.get("image", "cocoon-sim")
    unknown = set(cfg) - set(MEASUREMENT_FIELDS) - {"image", "debug", "tcb"}
    if unknown:
        raise BackendError(f"unknown measurement keys: {sorted(unknown)}")
    out: dict[str, bytes] = {}
    for name in MEASUREMENT_FIELDS:
        if name in cfg:
            try:
                value = bytes.fromhex(cfg[name])
            except ValueError as exc:
                raise BackendError(f"measurement {name} is not hex") from exc
            if len(value) != 48:
                raise BackendError(f"measurement {name} must be 48 bytes")
            out[name] = value
        elif name in ("mr_config_id", "mr_owner", "mr_owner_config"):
            out[name] = bytes(48)
        else:
            out[name] = hashlib.sha384(f"cocoon-sim:{image}:{name}".encode()).digest()
    return out


@dataclass(frozen=True, slots=True)
class _Keys:
    root: ec.EllipticCurvePrivateKey
    pck_ca: ec.EllipticCurvePrivateKey
    pck: ec.EllipticCurvePrivateKey
    tcb_signing: ec.EllipticCurvePrivateKey
    attestation: ec.EllipticCurvePrivateKey


class SimPlatform:
    """One simulated Intel machine: PKI, quoting enclave, collateral service, seal secret."""

    def __init__(
        self, directory: Path, keys: _Keys, certs: dict[str, x509.Certificate], secret: bytes
    ) -> None:
        self.directory = directory
        self._keys = keys
        self._certs = certs
        self._secret = secret  # models the CPU's fused secret: report MACs and sealing keys derive from it
        self.root_ca_der: bytes = _der_cert(certs["root"])
        self.pck_chain_pem: bytes = _pem(certs["pck"]) + _pem(certs["pck_ca"]) + _pem(certs["root"])
        self.fmspc: str = _FMSPC.hex().upper()
        self.qe_mr_signer: bytes = hashlib.sha256(b"cocoon-sim-qe-signer:" + self.root_ca_der).digest()
        # Minted collateral per (TEE kind, window start): a verifier asks for it on every new peer.
        self._minted: dict[tuple[bool, int], dcap_qvl.QuoteCollateralV3] = {}
        self._mint_lock = threading.Lock()

    # ---------------------------------------------------------------- quotes

    def signer(self, *, sgx: bool = False) -> QuoteSigner:
        return QuoteSigner(
            attestation_key=self._keys.attestation,
            pck_key=self._keys.pck,
            pck_chain_pem=self.pck_chain_pem,
            qe_mr_signer=self.qe_mr_signer,
            qe_isv_prod_id=1 if sgx else 2,
            qe_isv_svn=_QE_ISVSVN,
            qe_svn=_QE_SVN,
            pce_svn=_PCE_SVN,
            cpu_svn=_CPU_SVN,
        )

    def td_quote(
        self,
        report_data: bytes,
        measurements: Mapping[str, bytes],
        *,
        debug: bool = False,
        outdated: bool = False,
        version: int = 4,
        td15: bool = False,
    ) -> bytes:
        """A TDX quote in Intel's layout for a TD with these measurements."""
        if len(report_data) != 64:
            raise BackendError("report_data must be 64 bytes")
        body = TdBodyFields(
            mr_td=measurements["mr_td"],
            mr_config_id=measurements["mr_config_id"],
            mr_owner=measurements["mr_owner"],
            mr_owner_config=measurements["mr_owner_config"],
            rtmrs=(
                measurements["rtmr0"],
                measurements["rtmr1"],
                measurements["rtmr2"],
                measurements["rtmr3"],
            ),
            report_data=report_data,
            tee_tcb_svn=_TEE_TCB_SVN_OUTDATED if outdated else _TEE_TCB_SVN,
            tee_tcb_svn2=_TEE_TCB_SVN_OUTDATED if outdated else _TEE_TCB_SVN,
            mr_seam=hashlib.sha384(b"cocoon-sim-tdx-module").digest(),
            td_attributes=_TD_ATTRIBUTES_DEBUG if debug else _TD_ATTRIBUTES,
        )
        return build_quote(self.signer(), td=body, version=version, td15=td15)

    def sgx_quote(self, report_data: bytes, *, mr_enclave: bytes, mr_signer: bytes = bytes(32)) -> bytes:
        """An SGX v3 quote (the sealing enclave's evidence)."""
        report = EnclaveReportFields(
            mr_enclave=mr_enclave,
            mr_signer=mr_signer,
            report_data=report_data,
            cpu_svn=_CPU_SVN,
            attributes=bytes.fromhex("05000000000000000700000000000000"),
        )
        return build_quote(self.signer(sgx=True), sgx=report, version=3)

    def backend(self, measurements: Mapping[str, str] | None = None) -> SimBackend:
        return SimBackend(self, measurements)

    # ------------------------------------------------------------ collateral

    def _window(self, now: int) -> tuple[int, int]:
        """Collateral is reissued daily and valid 30 days, like Intel's; deterministic for a given day."""
        issue = (now // _DAY) * _DAY - _DAY
        return issue, issue + _COLLATERAL_WINDOW

    def _tcb_info(self, *, sgx: bool, issue: int, next_update: int) -> str:
        def level(cpu: bytes, tdx: bytes | None, status: str, date: str, adv: list[str]) -> dict[str, Any]:
            tcb: dict[str, Any] = {"sgxtcbcomponents": [{"svn": b} for b in cpu], "pcesvn": _PCE_SVN}
            if tdx is not None:
                tcb["tdxtcbcomponents"] = [{"svn": b} for b in tdx]
            out: dict[str, Any] = {"tcb": tcb, "tcbDate": date, "tcbStatus": status}
            if adv:
                out["advisoryIDs"] = adv
            return out

        tdx_up = None if sgx else _TEE_TCB_SVN
        tdx_old = None if sgx else _TEE_TCB_SVN_OUTDATED
        info: dict[str, Any] = {
            "id": "SGX" if sgx else "TDX",
            "version": 3,
            "issueDate": _rfc3339(issue),
            "nextUpdate": _rfc3339(next_update),
            "fmspc": self.fmspc,
            "pceId": _PCE_ID.hex().upper(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
        }
        if not sgx:
            info["tdxModule"] = {
                "mrsigner": "00" * 48,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            }
            info["tdxModuleIdentities"] = []
        info["tcbLevels"] = [
            level(_CPU_SVN, tdx_up, "UpToDate", "2025-01-01T00:00:00Z", []),
            level(_CPU_SVN, tdx_old, "OutOfDate", "2024-01-01T00:00:00Z", [SIM_ADVISORY]),
        ]
        if sgx:
            info["tcbLevels"] = info["tcbLevels"][:1]
        return json.dumps(info, separators=(",", ":"))

    def _qe_identity(self, *, sgx: bool, issue: int, next_update: int) -> str:
        ident = {
            "id": "QE" if sgx else "TD_QE",
            "version": 2,
            "issueDate": _rfc3339(issue),
            "nextUpdate": _rfc3339(next_update),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": self.qe_mr_signer.hex().upper(),
            "isvprodid": 1 if sgx else 2,
            "tcbLevels": [
                {"tcb": {"isvsvn": _QE_ISVSVN}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate"}
            ],
        }
        return json.dumps(ident, separators=(",", ":"))

    def _crl(self, issuer: str, key: ec.EllipticCurvePrivateKey, issue: int, next_update: int) -> bytes:
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._certs[issuer].subject)
            .last_update(dt.datetime.fromtimestamp(issue, dt.UTC))
            .next_update(dt.datetime.fromtimestamp(next_update, dt.UTC))
            .add_extension(x509.CRLNumber(1), critical=False)
            .sign(key, hashes.SHA256())
        )
        return crl.public_bytes(serialization.Encoding.DER)

    def collateral_parts(self, *, sgx: bool, now: int) -> dict[str, Any]:
        """The nine collateral items for the window containing ``now`` (raw, as a PCCS would serve them)."""
        issue, next_update = self._window(now)
        tcb_info = self._tcb_info(sgx=sgx, issue=issue, next_update=next_update)
        qe_identity = self._qe_identity(sgx=sgx, issue=issue, next_update=next_update)
        signing_chain = (_pem(self._certs["tcb_signing"]) + _pem(self._certs["root"])).decode()
        return {
            "pck_crl_issuer_chain": (_pem(self._certs["pck_ca"]) + _pem(self._certs["root"])).decode(),
            "root_ca_crl": self._crl("root", self._keys.root, issue, next_update),
            "pck_crl": self._crl("pck_ca", self._keys.pck_ca, issue, next_update),
            "tcb_info_issuer_chain": signing_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": raw_ecdsa_sign(self._keys.tcb_signing, tcb_info.encode()),
            "qe_identity_issuer_chain": signing_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": raw_ecdsa_sign(self._keys.tcb_signing, qe_identity.encode()),
        }

    def collateral_for(self, quote: bytes, *, now: int) -> dcap_qvl.QuoteCollateralV3:
        """Collateral matching ``quote`` (TDX or SGX) valid at ``now``."""
        parsed = parse_quote(quote)
        if parsed.fmspc != self.fmspc:
            raise CollateralUnavailable(f"quote FMSPC {parsed.fmspc} is not this simulated platform's")
        key = (not parsed.is_tdx, self._window(now)[0])
        with self._mint_lock:
            cached = self._minted.get(key)
            if cached is None:
                cached = self._minted[key] = self._mint(sgx=key[0], now=now)
                while len(self._minted) > 8:
                    self._minted.pop(next(iter(self._minted)))
            return cached

    def _mint(self, *, sgx: bool, now: int) -> dcap_qvl.QuoteCollateralV3:
        p = self.collateral_parts(sgx=sgx, now=now)
        return dcap_qvl.QuoteCollateralV3(
            p["pck_crl_issuer_chain"],
            p["root_ca_crl"],
            p["pck_crl"],
            p["tcb_info_issuer_chain"],
            p["tcb_info"],
            p["tcb_info_signature"],
            p["qe_identity_issuer_chain"],
            p["qe_identity"],
            p["qe_identity_signature"],
        )

    def collateral(self, quote: bytes, *, now: int) -> dcap_qvl.QuoteCollateralV3:
        """:class:`cocoon.tee.collateral.CollateralSource` interface."""
        return self.collateral_for(quote, now=now)

    def pccs_response(self, path_and_query: str, *, now: int) -> tuple[int, dict[str, str], bytes]:
        """Answer one Intel PCS v4 request (status, headers, body): lets tests and ``cocoon up`` run a PCCS."""
        url = urllib.parse.urlsplit(path_and_query)
        query = urllib.parse.parse_qs(url.query)
        parts = url.path.strip("/").split("/")
        if len(parts) < 4 or parts[1:3] != ["certification", "v4"] or parts[0] not in ("sgx", "tdx"):
            return 404, {}, b"not found"
        sgx = parts[0] == "sgx"
        endpoint = "/".join(parts[3:])
        p = self.collateral_parts(sgx=sgx, now=now)

        def quoted(pem: str) -> str:
            return urllib.parse.quote(pem, safe="")

        if endpoint == "pckcrl" and sgx:
            if query.get("ca", ["platform"])[0].lower() not in ("platform", "processor"):
                return 400, {}, b"bad ca"
            body = p["pck_crl"]
            if query.get("encoding", [""])[0] != "der":
                body = body.hex().encode()
            return 200, {"SGX-PCK-CRL-Issuer-Chain": quoted(p["pck_crl_issuer_chain"])}, body
        if endpoint == "rootcacrl" and sgx:
            return 200, {}, p["root_ca_crl"].hex().encode()
        if endpoint == "tcb":
            if query.get("fmspc", [""])[0].upper() != self.fmspc:
                return 404, {}, b"unknown fmspc"
            sig = p["tcb_info_signature"].hex()
            body = ('{"tcbInfo":' + p["tcb_info"] + ',"signature":"' + sig + '"}').encode()
            return 200, {"TCB-Info-Issuer-Chain": quoted(p["tcb_info_issuer_chain"])}, body
        if endpoint == "qe/identity":
            sig = p["qe_identity_signature"].hex()
            body = ('{"enclaveIdentity":' + p["qe_identity"] + ',"signature":"' + sig + '"}').encode()
            return 200, {"SGX-Enclave-Identity-Issuer-Chain": quoted(p["qe_identity_issuer_chain"])}, body
        return 404, {}, b"not found"

    # ------------------------------------------------------------------ seal

    def report_mac(self, report: bytes) -> bytes:
        """MAC over a TDX report, as the CPU does; only code holding this platform's secret can check it."""
        return hmac.new(self._secret, b"cocoon-sim-report-mac:" + report, hashlib.sha256).digest()

    def sealing_key(self, mr_enclave: bytes) -> bytes:
        """The sealing enclave's SGX sealing key (MRENCLAVE policy), 16 bytes."""
        return hmac.new(self._secret, b"cocoon-sim-seal:" + mr_enclave, hashlib.sha256).digest()[:16]


class SimBackend:
    """TEE backend of a simulated TD with configured measurements."""

    name = "sim"

    def __init__(self, platform: SimPlatform, measurements: Mapping[str, str] | None = None) -> None:
        cfg = dict(measurements or {})
        self.platform = platform
        self.measurements = measurements_from_config(cfg)
        self.debug = cfg.get("debug", "").lower() in ("1", "true", "yes")
        self.outdated = cfg.get("tcb", "").lower() == "outofdate"

    def quote(self, report_data: bytes) -> bytes:
        return self.platform.td_quote(
            report_data, self.measurements, debug=self.debug, outdated=self.outdated
        )

    def td_report(self, report_data: bytes) -> bytes:
        """A local 1024-byte TDREPORT MAC'd by this platform (input to the seal protocol)."""
        m = self.measurements
        attributes = _TD_ATTRIBUTES_DEBUG if self.debug else _TD_ATTRIBUTES
        tdinfo = (
            attributes
            + bytes.fromhex("e702060000000000")
            + b"".join(m[name] for name in MEASUREMENT_FIELDS)
            + bytes(48 + 64)  # servtd_hash, reserved
        )
        tee_tcb_info = (
            bytes.fromhex("ff01000000000000")  # VALID bits
            + (_TEE_TCB_SVN_OUTDATED if self.outdated else _TEE_TCB_SVN)
            + hashlib.sha384(b"cocoon-sim-tdx-module").digest()
            + bytes(48 + 8 + 111)
        )
        return tdx_report(report_data, tdinfo=tdinfo, tee_tcb_info=tee_tcb_info, mac=self.platform.report_mac)

    def image_hash(self) -> bytes:
        m = self.measurements
        return image_hash(
            m["mr_td"],
            m["mr_config_id"],
            m["mr_owner"],
            m["mr_owner_config"],
            (m["rtmr0"], m["rtmr1"], m["rtmr2"], m["rtmr3"]),
        )


# ----------------------------------------------------------------- persistence

_KEY_NAMES = ("root", "pck_ca", "pck", "tcb_signing", "attestation")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _create(directory: Path) -> None:
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in _KEY_NAMES}
    root = _issue("Cocoon Sim SGX Root CA", keys["root"], None, keys["root"], ca=True, path_length=1)
    pck_ca = _issue(
        "Cocoon Sim SGX PCK Platform CA", keys["pck_ca"], root, keys["root"], ca=True, path_length=0
    )
    ppid = hashlib.sha256(_der_cert(root)).digest()[:16]
    sgx_ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(_SGX_EXT), _sgx_extension(ppid))
    pck = _issue(
        "Cocoon Sim SGX PCK Certificate", keys["pck"], pck_ca, keys["pck_ca"], ca=False, extra=(sgx_ext,)
    )
    tcb = _issue("Cocoon Sim SGX TCB Signing", keys["tcb_signing"], root, keys["root"], ca=False)
    for name, key in keys.items():
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(directory / f"{name}.key.pem", pem)
    for name, cert in (("root", root), ("pck_ca", pck_ca), ("pck", pck), ("tcb_signing", tcb)):
        _write_private(directory / f"{name}.cert.pem", _pem(cert))
    _write_private(directory / "platform.secret", os.urandom(32))


def _load(directory: Path) -> SimPlatform:
    def key(name: str) -> ec.EllipticCurvePrivateKey:
        k = serialization.load_pem_private_key((directory / f"{name}.key.pem").read_bytes(), None)
        if not isinstance(k, ec.EllipticCurvePrivateKey):
            raise BackendError(f"simulated platform key {name} is not an EC key")
        return k

    keys = _Keys(*(key(n) for n in _KEY_NAMES))
    certs = {
        n: x509.load_pem_x509_certificate((directory / f"{n}.cert.pem").read_bytes())
        for n in ("root", "pck_ca", "pck", "tcb_signing")
    }
    return SimPlatform(directory, keys, certs, (directory / "platform.secret").read_bytes())


def sim_platform(home: Path) -> SimPlatform:
    """Create (first call) or load the simulated platform stored under ``home/"sim-tee"``."""
    directory = Path(home) / "sim-tee"
    with _locked(directory):
        if not (directory / "platform.secret").exists():
            _create(directory)
        try:
            return _load(directory)
        except (OSError, ValueError) as exc:
            raise BackendError(f"simulated platform in {directory} is unreadable: {exc}") from exc
