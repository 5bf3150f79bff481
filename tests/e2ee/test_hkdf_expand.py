"""HKDF-Expand through hmac.digest gives cryptography's HKDFExpand bytes for every length."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.e2ee.suites import hkdf_expand


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80), st.binary(max_size=100), st.integers(min_value=1, max_value=255 * 32))
def test_same_bytes_as_cryptography(secret: bytes, info: bytes, length: int) -> None:
    expected = HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(secret)
    assert hkdf_expand(secret, info, length) == expected


@pytest.mark.parametrize("length", [0, -1, 255 * 32 + 1])
def test_refuses_what_hkdf_refuses(length: int) -> None:
    with pytest.raises(ValueError):
        hkdf_expand(b"k" * 32, b"", length)
