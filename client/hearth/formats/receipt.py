"""Signing and checking execution receipts (EIP-191 over the canonical result body)."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from hearth.formats.jobspec import Result, SpecError, canonical


def sign_result(account: LocalAccount, body: dict[str, Any]) -> Result:
    """Sign a result body with the provider's key."""
    sig = account.sign_message(encode_defunct(canonical(body))).signature
    return Result(body, "0x" + bytes(sig).hex().removeprefix("0x"))


def result_signer(result: Result) -> str:
    """The address that signed `result`; SpecError when the signature is well-formed text but no
    valid secp256k1 signature (r or s out of range, no recoverable key)."""
    try:
        return str(Account.recover_message(encode_defunct(canonical(result.body)), signature=result.signature))
    except Exception as e:  # eth_keys raises several types (BadSignature, ValueError); all mean the same here
        raise SpecError(f"result signature is invalid: {type(e).__name__}") from None
