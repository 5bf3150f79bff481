"""Contract exit codes as sentences, for operators who read them in a terminal.

The 4xx codes are the ones the Cocoon contracts throw (``contracts/common.tolk``); the few TVM codes
listed are those a malformed message hits first. Anything else is shown as its number.
"""

from __future__ import annotations

__all__ = ["EXIT_SENTENCES", "explain_exit"]

EXIT_SENTENCES: dict[int, str] = {
    9: "the message body is malformed (cell underflow: a field is missing or cut short)",
    401: "the sender may not do this (for the root: only its owner may change it)",
    402: "the signature does not verify under the proxy key",
    403: "the signed message names another contract",
    404: "the inner operation or query id differs from the signed envelope",
    405: "the cumulative counter did not grow (a replay or a lower amount)",
    406: "the attached value does not cover the amount plus gas",
    407: "the withdrawal would leave less than the stake (or, for a slash claim, nothing is staked)",
    408: "the contract is closed or not in the state this operation needs (e.g. a slash is already pending, or its dispute window has passed)",
    409: "the close delay or the slash's dispute window has not passed yet",
    410: "the contract does not know this message",
    411: "the contract holds no such entry",
    412: "an argument is malformed (a zero hash, an empty or too long name or address, a bound out of range ...)",
    413: "the receipt is for another worker contract or another evidence hash than the pending slash",
}


def explain_exit(exit_code: int) -> str:
    """One sentence for ``exit_code``, ending in the code itself so it can still be looked up."""
    sentence = EXIT_SENTENCES.get(exit_code)
    if sentence is None:
        return f"the contract refused it with exit code {exit_code}"
    return f"{sentence} (exit code {exit_code})"
