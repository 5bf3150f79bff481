"""cocoon.node: what the three services share above ``net``: a node's attested identity and peer
policy (:mod:`~cocoon.node.trust`), the service lifecycle, usage receipts, fresh attestation
evidence and wallet-ownership proofs. It sits between ``net``/``tee`` below and ``worker``/``proxy``/``client`` above.
"""

from cocoon.node.evidence import EvidenceError, answer_challenge, sign_evidence, verify_evidence
from cocoon.node.lifecycle import ServiceState, check_can_start
from cocoon.node.ownership import make_owner_proof, verify_owner_proof
from cocoon.node.receipt import (
    ReceiptError,
    client_record,
    countersign,
    sign_proxy_part,
    sign_worker_part,
    verify_receipt,
    verify_record,
)
from cocoon.node.rootwatch import apply_root_once, watch_root
from cocoon.node.service import Service
from cocoon.node.trust import (
    ROLE_MEASUREMENTS,
    NodeTrust,
    RootAllowlist,
    TeeSettings,
    make_policy,
    registered_proxy_addresses,
    root_allowlist,
    validate_host_ports,
)

__all__ = [
    "ROLE_MEASUREMENTS",
    "EvidenceError",
    "NodeTrust",
    "ReceiptError",
    "RootAllowlist",
    "Service",
    "ServiceState",
    "TeeSettings",
    "answer_challenge",
    "apply_root_once",
    "check_can_start",
    "client_record",
    "countersign",
    "make_owner_proof",
    "make_policy",
    "registered_proxy_addresses",
    "root_allowlist",
    "sign_evidence",
    "sign_proxy_part",
    "sign_worker_part",
    "validate_host_ports",
    "verify_evidence",
    "verify_owner_proof",
    "verify_receipt",
    "verify_record",
    "watch_root",
]
