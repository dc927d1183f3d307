"""Compiled contract artifacts committed under contracts/artifacts."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from hearth.errors import ToolchainError
from hearth.settings import ARTIFACTS_DIR


@cache
def load(name: str) -> dict[str, Any]:
    """The artifact of contract `name` (abi, bytecode, compiler settings)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.exists():
        raise ToolchainError(f"artifact {path} missing", hint="run scripts/compile")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def sha256_of(name: str) -> str:
    """sha256 of the committed artifact file, recorded in deployments."""
    return hashlib.sha256((ARTIFACTS_DIR / f"{name}.json").read_bytes()).hexdigest()
