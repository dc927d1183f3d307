"""Exceptions of Hearth.

    HearthError                      root of everything Hearth raises on purpose
    ├── UserError                    bad input from a person: shown as one line, no traceback
    │   ├── InvalidCID (ValueError)
    │   └── ConfigError
    ├── ChainError                   RPC unreachable, transaction failed
    │   └── ContractError            a contract reverted with a custom error (name, args)
    ├── IPFSError                    daemon down, refused, timed out, not found
    │   └── VerificationError        bytes that do not hash to their CID or sha256
    └── ToolchainError               anvil, node or solc missing
"""

from __future__ import annotations

from typing import Any


class HearthError(Exception):
    """Root of every error Hearth raises on purpose. `hint` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


class UserError(HearthError):
    """Bad input from a person (flag, file, name): shown without a traceback."""


class InvalidCID(UserError, ValueError):
    """A string or bytes that is not a CID Hearth understands."""


class ConfigError(UserError):
    """A configuration that cannot work."""


class ChainError(HearthError):
    """The chain could not be reached or a transaction failed."""


class ContractError(ChainError):
    """A contract call reverted with a custom error; `name` and `args` say which."""

    def __init__(self, name: str, args: dict[str, Any], hint: str | None = None) -> None:
        self.name = name
        self.error_args = args
        rendered = ", ".join(f"{k}={v}" for k, v in args.items())
        super().__init__(f"contract reverted: {name}({rendered})", hint)


class IPFSError(HearthError):
    """An IPFS daemon or gateway failed, refused or timed out."""


class VerificationError(IPFSError):
    """Content that does not match its CID or its expected sha256: never used."""


class ToolchainError(HearthError):
    """A tool Hearth needs (anvil, node, solc) is missing."""
