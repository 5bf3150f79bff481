"""In production the bill is audited with the served model's tokenizer, not only the byte estimate.

A worker serving the bundled SmolLM2 that claims about twice the honest completion stays under the
byte estimate (≈ 2.4× on real text) but not under the tokenizer bound (+5 % +16): the bill named with
the model is capped, the same bill without it is not.
"""

from __future__ import annotations

import pytest

from cocoon.core.native import bundled_model
from cocoon.proxy.bill import Terms, bill_complete
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.pricing import PriceParams, TokenCounts, reservation

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)
TEXT = (
    "The sky looks blue because air molecules scatter short wavelengths of sunlight far more than long "
    "ones, so blue light reaches our eyes from every direction of the sky while the sun itself looks "
    "yellowish. At sunset the light crosses much more air, the blue is scattered away, and reds remain."
)

pytestmark = pytest.mark.skipif(bundled_model() is None, reason="the bundled SmolLM2 model is not installed")


def _tally() -> RelayTally:
    tally = RelayTally()
    for i in range(0, len(TEXT), 12):
        tally.add_chunk({"choices": [{"index": 0, "delta": {"content": TEXT[i : i + 12]}}]})
    return tally


def _terms(model: str) -> Terms:
    return Terms(
        max_tokens=1000,
        request_bytes=200,
        reserved_nano=reservation(1000, 200, 1000, PARAMS),
        coefficient=1000,
        params=PARAMS,
        model=model,
    )


def test_the_served_models_tokenizer_caps_a_doubled_claim() -> None:
    audit = UsageAudit()
    model = bundled_model().name.split(".", 1)[0]  # type: ignore[union-attr]
    tokenizer = audit.tokenizers.get(model)
    assert tokenizer is not None
    claim = TokenCounts(prompt=20, completion=2 * tokenizer.count(TEXT))

    by_bytes = bill_complete(claim, _tally(), _terms(""), audit)
    by_tokens = bill_complete(claim, _tally(), _terms(model), audit)

    assert by_tokens.usage.completion < claim.completion and by_tokens.capped
    assert by_tokens.usage.completion < by_bytes.usage.completion
