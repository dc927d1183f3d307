"""Where Hearth's files live: the repository's artifacts, npm tools and data directories."""

from __future__ import annotations

import os
from pathlib import Path

from client.errors import ToolchainError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO_ROOT / "contracts"
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
DEPLOYMENTS_DIR = REPO_ROOT / "deployments"
NODE_MODULES = REPO_ROOT / "node_modules"


def data_dir() -> Path:
    """Hearth's state directory (keystores, devnet chain, IPFS blocks, node journal)."""
    return Path(os.environ.get("HEARTH_HOME", str(REPO_ROOT / ".hearth"))).resolve()


def npm_binary(package: str, name: str) -> Path:
    """The real binary of a Foundry npm package (not the node wrapper, which leaves zombies)."""
    path = NODE_MODULES / "@foundry-rs" / f"{package}-linux-amd64" / "bin" / name
    if not path.exists():
        raise ToolchainError(f"{name} not found at {path}", hint="run scripts/setup (it runs npm ci)")
    return path
