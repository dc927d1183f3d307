"""Deploy HearthToken, SimpleArbiter and JobMarket to any EVM chain and record the result."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from web3 import Web3

from client import artifacts
from client.chain import Market, Sender
from client.errors import ConfigError
from client.paths import DEPLOYMENTS_DIR

TOKEN = 10**18
SUPPLY = 1_000_000_000 * TOKEN  # fixed; below 2**96 so every balance fits the market's uint96


@dataclass(frozen=True)
class MarketParams:
    """Constructor parameters of JobMarket."""

    collateral_bps: int = 1000
    dispute_window: int = 0
    arbitration_timeout: int = 86_400
    unbonding_delay: int = 3_600
    min_stake: int = 10 * TOKEN


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


def _deploy(w3: Web3, sender: Sender, name: str, *args: Any) -> tuple[str, str, int]:
    art = artifacts.load(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    ctor = factory.constructor(*args)
    receipt = sender.transact(cast(Any, ctor))
    return str(receipt["contractAddress"]), "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"])


def deploy(w3: Web3, sender: Sender, network: str, params: MarketParams = MarketParams()) -> Deployment:
    """Deploy the three contracts with `sender` as deployer, arbiter owner and token holder."""
    me = sender.address
    token, token_tx, block = _deploy(w3, sender, "HearthToken", me, SUPPLY)
    arbiter, arbiter_tx, _ = _deploy(w3, sender, "SimpleArbiter", me)
    market, market_tx, _ = _deploy(
        w3, sender, "JobMarket", token, arbiter, params.collateral_bps, params.dispute_window,
        params.arbitration_timeout, params.unbonding_delay, params.min_stake,
    )
    return Deployment(
        network=network,
        chain_id=int(w3.eth.chain_id),
        token=token,
        market=market,
        arbiter=arbiter,
        deploy_block=block,
        transactions={"HearthToken": token_tx, "SimpleArbiter": arbiter_tx, "JobMarket": market_tx},
        artifacts_sha256={n: artifacts.sha256_of(n) for n in ("HearthToken", "SimpleArbiter", "JobMarket")},
        params=asdict(params),
        deployer=me,
    )


def deployment_path(network: str) -> Path:
    """deployments/<network>.json (HEARTH_DEPLOYMENTS_DIR moves the folder, e.g. for tests)."""
    base = Path(os.environ["HEARTH_DEPLOYMENTS_DIR"]) if os.environ.get("HEARTH_DEPLOYMENTS_DIR") else DEPLOYMENTS_DIR
    return base / f"{network}.json"


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


def fund(sender: Sender, market: Market, accounts: list[LocalAccount], amount: int) -> None:
    """Give each account `amount` tokens in its wallet and ETH-free internal balance of zero."""
    for acct in accounts:
        if acct.address != sender.address:
            sender.transact(market.token.functions.transfer(acct.address, amount))
