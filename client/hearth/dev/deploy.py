"""Deploy HearthToken, SimpleArbiter and JobMarket to any EVM chain and record the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from hearth.chain import artifacts
from hearth.chain.deployments import Deployment
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.formats.units import SUPPLY, TOKEN


@dataclass(frozen=True)
class MarketParams:
    """Constructor parameters of JobMarket (its Config, in order). The defaults are a market
    where no result is paid before the client could dispute it: a one-hour dispute window, a
    dispute bond, a floor under collateral and a cap on how long a claimer may hold a job."""

    collateral_bps: int = 1000
    min_collateral: int = TOKEN // 100
    dispute_window: int = 3_600
    dispute_bond: int = TOKEN // 10
    arbitration_timeout: int = 86_400
    max_completion_window: int = 86_400
    unbonding_delay: int = 3_600
    min_stake: int = 10 * TOKEN

    def as_config(self) -> tuple[int, ...]:
        """ABI form of JobMarket's Config."""
        return (self.collateral_bps, self.min_collateral, self.dispute_window, self.dispute_bond,
                self.arbitration_timeout, self.max_completion_window, self.unbonding_delay, self.min_stake)


# The devnet keeps paying at completion (dispute window 0) for now: the node, `hearth job submit`
# and the end-to-end tests expect a devnet job to be Settled as soon as it is completed.
DEVNET_PARAMS = MarketParams(dispute_window=0)


def deploy_contract(w3: Web3, sender: Sender, contract: str | dict[str, Any], *args: Any, gas: int | None = None) -> TxReceipt:
    """Deploy one contract (by artifact name, or an artifact itself for test-only contracts)."""
    art = artifacts.load(contract) if isinstance(contract, str) else contract
    ctor = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor(*args)
    return sender.transact(cast(Any, ctor), gas=gas)


def _deploy(w3: Web3, sender: Sender, name: str, *args: Any) -> tuple[str, str, int]:
    receipt = deploy_contract(w3, sender, name, *args)
    return str(receipt["contractAddress"]), "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"])


def deploy(w3: Web3, sender: Sender, network: str, params: MarketParams = MarketParams()) -> Deployment:
    """Deploy the three contracts with `sender` as deployer, arbiter owner and token holder."""
    me = sender.address
    token, token_tx, block = _deploy(w3, sender, "HearthToken", me, SUPPLY)
    arbiter, arbiter_tx, _ = _deploy(w3, sender, "SimpleArbiter", me)
    market, market_tx, _ = _deploy(w3, sender, "JobMarket", token, arbiter, params.as_config())
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


def fund(sender: Sender, market: Market, accounts: list[LocalAccount], amount: int) -> None:
    """Give each account `amount` tokens in its wallet and ETH-free internal balance of zero."""
    for acct in accounts:
        if acct.address != sender.address:
            sender.transact(market.token.functions.transfer(acct.address, amount))
