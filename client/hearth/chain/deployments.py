"""deployments/<network>.json: where a market lives on a chain, and whether it is still there."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from web3 import Web3

from hearth.chain.market import Market
from hearth.errors import ConfigError
from hearth.settings import deployments_dir


@dataclass(frozen=True)
class Deployment:
    """What deployments/<network>.json records."""

    network: str
    chain_id: int
    token: str
    market: str
    arbiter: str
    deploy_block: int
    transactions: dict[str, str]
    artifacts_sha256: dict[str, str]
    params: dict[str, int]
    deployer: str

    def market_binding(self, w3: Web3) -> Market:
        """A Market bound to this deployment."""
        return Market(w3, self.market, self.token, self.deploy_block)


def deployment_path(network: str) -> Path:
    """deployments/<network>.json (HEARTH_DEPLOYMENTS_DIR moves the folder, e.g. for tests)."""
    return deployments_dir() / f"{network}.json"


def save(d: Deployment, path: Path | None = None) -> Path:
    """Write the deployment record."""
    path = path or deployment_path(d.network)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(d), indent=2, sort_keys=True) + "\n")
    return path


def load(network: str, path: Path | None = None) -> Deployment:
    """Read deployments/<network>.json."""
    path = path or deployment_path(network)
    if not path.exists():
        hint = "run: hearth devnet up" if network == "devnet" else f"run: hearth deploy --network {network} ..."
        raise ConfigError(f"no deployment recorded at {path}", hint=hint)
    return Deployment(**json.loads(path.read_text()))


def is_live(w3: Web3, d: Deployment) -> bool:
    """Whether the recorded contracts exist on the chain `w3` talks to."""
    if int(w3.eth.chain_id) != d.chain_id:
        return False
    return all(len(w3.eth.get_code(Web3.to_checksum_address(a))) > 0 for a in (d.token, d.market, d.arbiter))
