"""Fees from the chain, the operator's ceiling, and replacement of transactions a base-fee spike
left behind, on a real anvil mining a block a second."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hearth.chain.sender import BUMP, URGENT_BUMP, Prepared, Sender
from hearth.dev.devnet import dev_account
from hearth.errors import ChainError
from web3 import Web3

from tests.chain.conftest import Chain, rpc


class BaseFeeSpike:
    """Holds the next block's base fee at `value` (anvil_setNextBlockBaseFeePerGas before every
    block) from `start()` until `stop()`: a spike that lasts, as on a busy public chain."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, value: int) -> None:
        self.value = value
        rpc(self.w3, "anvil_setNextBlockBaseFeePerGas", hex(value))  # before the caller goes on
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            rpc(self.w3, "anvil_setNextBlockBaseFeePerGas", hex(self.value))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


@pytest.fixture
def interval_mining(chain: Chain) -> Iterator[None]:
    """A block a second for one test; automine again afterwards, with the base fee back to 1 gwei."""
    rpc(chain.w3, "evm_setIntervalMining", 1)
    yield
    rpc(chain.w3, "evm_setIntervalMining", 0)
    rpc(chain.w3, "evm_setAutomine", True)
    rpc(chain.w3, "anvil_setNextBlockBaseFeePerGas", hex(10**9))
    rpc(chain.w3, "evm_mine")


def _spiked_send(chain: Chain, sender: Sender, deadline: float | None) -> tuple[list[Prepared], str, int]:
    """Send an approve whose first version is signed just before the base fee is multiplied by
    20; returns every version reported to on_signed, the mined hash and the spiked base fee."""
    market = chain.market()
    versions: list[Prepared] = []
    spike = BaseFeeSpike(chain.w3)

    def on_signed(v: Prepared) -> None:
        versions.append(v)
        if len(versions) == 1:
            spike.start(20 * sender.fee_quote()[0])

    try:
        receipt = sender.send(market.token.functions.approve(market.address, 77), deadline, on_signed)
    finally:
        spike.stop()
    assert market.token.functions.allowance(sender.address, market.address).call() == 77
    assert int(receipt["effectiveGasPrice"]) >= spike.value
    return versions, Web3.to_hex(receipt["transactionHash"]), spike.value


def test_stuck_transaction_is_replaced_and_every_version_reported(chain: Chain, interval_mining: None) -> None:
    sender = Sender(chain.w3, dev_account(5), wait_blocks=2, block_time=1.0)
    versions, mined, spiked = _spiked_send(chain, sender, deadline=None)
    assert len(versions) >= 2
    assert versions[0].max_fee < spiked  # the first version could not be mined during the spike
    assert {v.nonce for v in versions} == {versions[0].nonce}
    assert mined in [v.tx_hash for v in versions[1:]]
    for old, new in zip(versions, versions[1:], strict=False):
        assert new.max_fee >= old.max_fee * BUMP and new.tip >= old.tip * BUMP
    assert versions[1].tip < versions[0].tip * URGENT_BUMP  # no deadline: the ordinary bump
    # the sender's nonce stays in step: the next transaction is mined too
    sender.transact(chain.market().token.functions.approve(chain.market().address, 78))


def test_near_deadline_bumps_harder(chain: Chain, interval_mining: None) -> None:
    sender = Sender(chain.w3, dev_account(6), wait_blocks=3, block_time=1.0)
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    versions, mined, _ = _spiked_send(chain, sender, deadline=now + 4)  # fewer blocks left than urgent_blocks
    assert len(versions) >= 2 and mined in [v.tx_hash for v in versions[1:]]
    assert versions[1].tip >= versions[0].tip * URGENT_BUMP


def test_urgency_follows_the_deadline(chain: Chain) -> None:
    s = Sender(chain.w3, dev_account(7), wait_blocks=3, urgent_blocks=5, block_time=12.0)
    assert s.urgency(None, 1000) == (BUMP, 3)
    assert s.urgency(1000 + 12 * 10, 1000) == (BUMP, 3)
    assert s.urgency(1000 + 12 * 2, 1000) == (URGENT_BUMP, 1)
    assert s.urgency(999, 1000) is None  # past it: no more bumps


def test_ceiling_refuses_to_sign_above_it(chain: Chain) -> None:
    acct = dev_account(8)
    market = chain.market()
    fn = market.token.functions.approve(market.address, 1)
    probe = Sender(chain.w3, acct)
    base, tip = probe.fee_quote()
    s = Sender(chain.w3, acct, max_fee_per_gas=base // 2)
    with pytest.raises(ChainError, match="ceiling"):
        s.prepare(fn)
    # the refusal took no nonce, and a ceiling between base + tip and 2 x base + tip caps maxFee
    ceiling = base + tip + 1
    s.max_fee_per_gas = ceiling
    p = s.prepare(fn)
    assert p.nonce == chain.w3.eth.get_transaction_count(acct.address, "pending")
    assert p.max_fee == ceiling and p.tip <= ceiling - base
    with pytest.raises(ChainError, match="ceiling"):
        s.bump(p)  # no room left for a 12.5% higher replacement
    s.send(p)
    assert market.token.functions.allowance(acct.address, market.address).call() == 1


def test_restart_recognises_an_earlier_version(chain: Chain) -> None:
    """After a crash the journal holds every version; the one that was mined is recognised even
    when the version re-sent is another (its broadcast answers 'nonce too low')."""
    acct = dev_account(9)
    market = chain.market()
    before = Sender(chain.w3, acct)
    first = before.prepare(market.token.functions.approve(market.address, 5))
    before.broadcast(first)  # mined at once (automine); the process then "crashes"
    journaled = Prepared(first.tx_hash, bytes.fromhex(first.raw.hex()), first.nonce)
    second = before.bump(journaled)
    assert second.nonce == first.nonce and second.tx_hash != first.tx_hash
    assert {k: v for k, v in second.unsigned().items() if "Fee" not in k} == \
        {k: v for k, v in first.unsigned().items() if "Fee" not in k}
    after = Sender(chain.w3, acct)
    receipt = after.send(second, previous=[journaled])
    assert Web3.to_hex(receipt["transactionHash"]) == first.tx_hash


def test_idle_chain_still_gets_the_replacement(chain: Chain) -> None:
    """An automining devnet mines no block while nothing is mined: the replacement comes after
    the time the blocks would have taken."""
    acct = dev_account(7)
    market = chain.market()
    sender = Sender(chain.w3, acct, wait_blocks=1, block_time=1.0)
    p = sender.prepare(market.token.functions.approve(market.address, 9))
    rpc(chain.w3, "anvil_setNextBlockBaseFeePerGas", hex(20 * sender.fee_quote()[0]))
    bumped: list[Prepared] = []
    receipt = sender.send(p, on_signed=bumped.append)  # p itself is refused: below the base fee
    assert len(bumped) >= 1 and Web3.to_hex(receipt["transactionHash"]) == bumped[-1].tx_hash
    assert all(v.nonce == p.nonce for v in bumped)


def test_nonce_taken_by_another_transaction_fails_fast(chain: Chain) -> None:
    acct = dev_account(6)
    market = chain.market()
    mine, other = Sender(chain.w3, acct), Sender(chain.w3, acct)
    p = mine.prepare(market.token.functions.approve(market.address, 10))
    other.transact(market.token.functions.approve(market.address, 11))  # same nonce, mined first
    with pytest.raises(ChainError, match="already used"):
        mine.send(p)
    mine.transact(market.token.functions.approve(market.address, 12))  # resynced: the next one works
    assert market.token.functions.allowance(acct.address, market.address).call() == 12
