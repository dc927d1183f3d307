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
    """Constructor parameters of JobMarket (its Config, in order). The defaults: no result is
    paid before it could be audited (a one-hour window), 10% of jobs audited at random, and a
    collateral of 15x the payment, all of it lost on proven fraud: at an audit rate p = 0.1 and
    a colluding share of auditors r = 0.2 a fraud is caught with q = p(1 - r) = 0.08, so cheating
    loses money when the penalty exceeds (1 - q)/q = 11.5 payments (README, "Audits")."""

    collateral_bps: int = 150_000
    min_collateral: int = TOKEN // 100
    dispute_window: int = 3_600
    dispute_bond: int = TOKEN // 10
    arbitration_timeout: int = 86_400
    max_completion_window: int = 86_400
    unbonding_delay: int = 3_600
    min_stake: int = 10 * TOKEN
    audit_bps: int = 1000
    audit_fee_bps: int = 1000
    audit_timeout: int = 3_600

    def as_config(self) -> tuple[int, ...]:
        """ABI form of JobMarket's Config."""
        return (self.collateral_bps, self.min_collateral, self.dispute_window, self.dispute_bond,
                self.arbitration_timeout, self.max_completion_window, self.unbonding_delay, self.min_stake,
                self.audit_bps, self.audit_fee_bps, self.audit_timeout)


# The devnet shortens the windows (nodes settle a few seconds after completing, and audits move
# in seconds) but keeps every rule: nothing is paid before it could be audited.
DEVNET_PARAMS = MarketParams(dispute_window=3, audit_timeout=60, arbitration_timeout=120, unbonding_delay=60)


def deploy_contract(w3: Web3, sender: Sender, contract: str | dict[str, Any], *args: Any, gas: int | None = None) -> TxReceipt:
    """Deploy one contract (by artifact name, or an artifact itself for test-only contracts). A
    contract that calls a linked library (JobMarket: JobAudits) gets its own copy of the library,
    deployed first by the same sender: the library holds no state, so nothing is shared."""
    art = artifacts.load(contract) if isinstance(contract, str) else contract
    bytecode = link(art, {lib: str(deploy_contract(w3, sender, lib, gas=gas)["contractAddress"])
                          for lib in libraries_of(art)})
    ctor = w3.eth.contract(abi=art["abi"], bytecode=bytecode).constructor(*args)
    return sender.transact(cast(Any, ctor), gas=gas)


def libraries_of(art: dict[str, Any]) -> list[str]:
    """Names of the libraries an artifact's bytecode must be linked with."""
    return sorted({name for refs in art.get("linkReferences", {}).values() for name in refs})


def link(art: dict[str, Any], addresses: dict[str, str]) -> str:
    """The artifact's creation bytecode with each library's address written where solc left its
    40-character placeholder (linkReferences give byte offsets)."""
    text = str(art["bytecode"]).removeprefix("0x")
    for refs in art.get("linkReferences", {}).values():
        for name, places in refs.items():
            addr = addresses[name].removeprefix("0x").lower()
            for place in places:
                start = place["start"] * 2
                text = text[:start] + addr + text[start + 40:]
    return "0x" + text
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
        artifacts_sha256={n: artifacts.sha256_of(n) for n in ("HearthToken", "SimpleArbiter", "JobAudits", "JobMarket")},
        params=asdict(params),
        deployer=me,
    )


def fund(sender: Sender, market: Market, accounts: list[LocalAccount], amount: int) -> None:
    """Give each account `amount` tokens in its wallet and ETH-free internal balance of zero."""
    for acct in accounts:
        if acct.address != sender.address:
            sender.transact(market.token.functions.transfer(acct.address, amount))
