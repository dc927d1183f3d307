"""Decoding of every custom error (and Error(string)) into a ContractError carrying its name
and arguments, from revert data or from whatever exception web3 raised."""

from __future__ import annotations

import ast
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from hearth.chain import artifacts
from hearth.chain.types import STATES
from hearth.errors import ContractError

_HINTS = {
    "InsufficientBalance": "deposit tokens first: hearth account deposit AMOUNT",
    "ProviderNotActive": "register first: hearth provider register --stake AMOUNT",
    "InvalidClaimDeadline": "the claim deadline must be in the future",
    "DeadlineNotPassed": "wait until the deadline has passed",
    "UnknownJob": "check the job id (hearth job list)",
}


def _error_table() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for name in ("JobMarket", "HearthToken", "SimpleArbiter"):
        for item in artifacts.load(name)["abi"]:
            if item["type"] != "error":
                continue
            types = [i["type"] if i["type"] != "tuple" else _tuple_type(i) for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            table[keccak(text=sig)[:4]] = (item["name"], [i["name"] for i in item["inputs"]], types)
    return table


def _tuple_type(item: dict[str, Any]) -> str:
    return "(" + ",".join(_tuple_type(c) if c["type"] == "tuple" else c["type"] for c in item["components"]) + ")"


_ERRORS: dict[bytes, tuple[str, list[str], list[str]]] | None = None


def decode_revert(data: str | bytes) -> ContractError | None:
    """Decode revert data into a ContractError (custom error or Error(string)), or None."""
    global _ERRORS
    if _ERRORS is None:
        _ERRORS = _error_table()
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    if len(raw) < 4:
        return None
    sel, body = raw[:4], raw[4:]
    if sel == keccak(text="Error(string)")[:4]:
        return ContractError("Error", {"message": abi_decode(["string"], body)[0]})
    if sel in _ERRORS:
        name, names, types = _ERRORS[sel]
        values = [to_checksum_address(v) if t == "address" else v for t, v in zip(types, abi_decode(types, body), strict=True)]
        args = {n: (STATES[int(v)] if name == "InvalidState" and n == "state" else v)
                for n, v in zip(names, values, strict=True)}
        return ContractError(name, args, _HINTS.get(name))
    return ContractError("UnknownError", {"data": "0x" + raw.hex()})


def _revert_data(exc: BaseException) -> str | None:
    for cand in (getattr(exc, "data", None), *getattr(exc, "args", ())):
        if isinstance(cand, bytes) and len(cand) >= 4:
            return "0x" + cand.hex()
        if isinstance(cand, str) and cand.startswith("0x") and len(cand) >= 10:
            return cand
        if isinstance(cand, dict) and isinstance(cand.get("data"), str):
            return cast(str, cand["data"])
        if isinstance(cand, str) and cand.startswith("execution reverted: b"):
            # eth-tester renders revert data as a Python bytes literal
            try:
                raw = ast.literal_eval(cand.removeprefix("execution reverted: "))
            except (ValueError, SyntaxError):
                continue
            if isinstance(raw, bytes) and len(raw) >= 4:
                return "0x" + raw.hex()
    cause = exc.__cause__ or exc.__context__
    return _revert_data(cause) if cause is not None and cause is not exc else None


def as_contract_error(exc: BaseException) -> ContractError | None:
    """The ContractError hidden in a web3 exception, if the exception is a revert."""
    data = _revert_data(exc)
    return decode_revert(data) if data else None
