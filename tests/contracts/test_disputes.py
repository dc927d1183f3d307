"""Disputes that reach the arbiter, on eth-tester and anvil: a client's requested audit with no
auditor to draw goes to the arbiter when `finalize` draws (audits with auditors: test_audits.py); the client's
bond, the arbiter's one cutoff, a silent arbiter (the result stands), and arbiters that misbehave
or are starved of gas. The balance invariant is checked after every operation."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak
from hearth.chain.revert import as_contract_error
from hearth.chain.sender import Sender
from hearth.errors import ChainError, ContractError
from hearth.formats.units import TOKEN
from web3 import Web3
from web3.logs import DISCARD

from tests.backends import Backend
from tests.contracts.harness import Harness, artifact, deploy_contract, make_harness

REENTRANT = keccak(text="ReentrancyGuardReentrantCall()")[:4]
ARBITER_GAS = 100_000
ARBITER_GAS_FLOOR = ARBITER_GAS * 64 // 63 + 10_000


@pytest.fixture
def hw(backend: Backend) -> Harness:
    """A market with a one-hour dispute window."""
    return make_harness(backend, dispute_window=3600)


def _completed(hw: Harness, payment: int = 10 * TOKEN, deposit: int = 500) -> tuple[Any, ...]:
    a = hw.b.accounts
    client, prov, other = a[1], a[2], a[3]
    hw.fund(client, 1000, deposit)
    hw.register(prov, 50)
    job = hw.post(client, payment=payment)
    hw.claim(prov, job)
    hw.complete(prov, job)
    return client, prov, other, job


def _arbiter(h: Harness, name: str = "SimpleArbiter") -> Any:
    return h.b.w3.eth.contract(address=Web3.to_checksum_address(h.arbiter_address), abi=artifact(name)["abi"])


def _decide(h: Harness, job: int, provider_wins: bool, name: str = "SimpleArbiter") -> None:
    h.s(h.owner).transact(_arbiter(h, name).functions.decide(h.market.address, *h.done(job), provider_wins))
    h.check_invariant()


def test_dispute_locks_bond_and_arbiter_refunds_client(hw: Harness) -> None:
    client, prov, other, job = _completed(hw)
    hw.expect_revert("NotClient", other, "dispute", *hw.done(job), jobId=job, caller=other.address)
    r, drawn = hw.dispute(client, job)
    assert hw.state(job) == "Disputed"
    assert hw.balance(client.address) == 490 * TOKEN - hw.bond
    events = hw.market.contract.events
    started = events.AuditStarted().process_receipt(r, errors=DISCARD)[0]["args"]
    assert (started["requester"], started["bond"]) == (client.address, hw.bond)
    assert events.AuditorAssigned().process_receipt(drawn, errors=DISCARD) == ()  # nobody else in the class
    r = drawn
    ev = events.JobDisputed().process_receipt(r, errors=DISCARD)[0]["args"]
    assert ev["bond"] == hw.bond and ev["arbitrationDeadline"] == hw.market.job(job).deadline
    au = hw.audit(job)
    assert (au.requester, au.bond, au.phase) == (client.address, hw.bond, "None")
    hw.expect_revert("NotArbiter", other, "resolve", *hw.done(job), False, caller=other.address)
    hw.expect_revert("InvalidState", client, "dispute", *hw.done(job), jobId=job, state="Disputed")
    _decide(hw, job, False)
    assert hw.state(job) == "Refunded"
    assert hw.balance(client.address) == 500 * TOKEN  # payment and bond back
    assert hw.stake(prov.address) == 49 * TOKEN  # the whole collateral is lost ...
    assert hw.pool() == TOKEN  # ... to the audit pool, with no auditor to reward
    assert hw.market.account(prov.address).open_jobs == 0
    slashed = hw.market.logs("Slashed", hw.market.deploy_block, "latest", jobId=job)
    assert [(e["args"]["account"], e["args"]["amount"]) for e in slashed] == [(prov.address, TOKEN)]
    refunded = hw.market.logs("JobRefunded", hw.market.deploy_block, "latest", jobId=job)
    assert [e["args"]["refund"] for e in refunded] == [10 * TOKEN + hw.bond]
    hw.expect_revert("InvalidState", other, "settle", *hw.done(job), jobId=job, state="Refunded")


def test_upheld_result_pays_provider_and_bond(hw: Harness) -> None:
    client, prov, _, job = _completed(hw)
    hw.dispute(client, job)
    before = hw.balance(prov.address)
    _decide(hw, job, True)
    assert hw.state(job) == "Settled"
    assert hw.balance(prov.address) == before + 10 * TOKEN + hw.bond
    assert hw.stake(prov.address) == 50 * TOKEN
    assert hw.balance(client.address) == 490 * TOKEN - hw.bond
    assert hw.pool() == 0


def test_dispute_needs_the_bond(hw: Harness) -> None:
    client, _, _, job = _completed(hw, payment=10 * TOKEN, deposit=10)
    hw.expect_revert("InsufficientBalance", client, "dispute", *hw.done(job), account=client.address,
                     balance=0, needed=hw.bond)
    assert hw.state(job) == "Completed"


def test_dispute_after_window_reverts(hw: Harness) -> None:
    client, _, _, job = _completed(hw)
    hw.b.advance(3601)
    hw.expect_revert("DeadlinePassed", client, "dispute", *hw.done(job), jobId=job)


def test_silent_arbiter_lets_the_result_stand(hw: Harness) -> None:
    client, prov, other, job = _completed(hw)
    hw.dispute(client, job)
    deadline = hw.market.job(job).deadline
    hw.expect_revert("DeadlineNotPassed", other, "finalize", *hw.done(job), jobId=job, deadline=deadline)
    hw.b.advance(86_401)
    # one cutoff: past the deadline the arbiter can no longer decide ...
    with pytest.raises(ContractError) as info:
        _decide(hw, job, False)
    assert info.value.name == "DeadlinePassed" and info.value.error_args["deadline"] == deadline
    hw.s(hw.owner).resync()
    # ... and anyone can end the dispute: the provider is paid, the client gets its bond back
    before = hw.balance(prov.address)
    r = hw.op(other, "finalize", *hw.done(job))
    assert hw.state(job) == "Settled"
    assert hw.balance(prov.address) == before + 10 * TOKEN
    assert hw.stake(prov.address) == 50 * TOKEN
    assert hw.balance(client.address) == 490 * TOKEN
    ended = hw.market.contract.events.AuditEnded().process_receipt(r, errors=DISCARD)[0]["args"]
    assert ended["upheld"] is True
    hw.expect_revert("InvalidState", other, "finalize", *hw.done(job), jobId=job, state="Settled")


# ------------------------------------------------------------------ misbehaving arbiters


def _evil(backend: Backend) -> tuple[Harness, Any]:
    owner = backend.accounts[0]
    evil = deploy_contract(backend, Sender(backend.w3, owner), "MaliciousArbiter")
    h = make_harness(backend, dispute_window=3600, arbiter=evil)
    return h, backend.w3.eth.contract(address=Web3.to_checksum_address(evil), abi=artifact("MaliciousArbiter")["abi"])


@pytest.mark.parametrize("mode", [0, 1, 2, 3], ids=["reverts", "reenters-resolve", "reenters-withdraw", "burns-gas"])
def test_malicious_arbiter_cannot_block_or_move_funds(backend: Backend, mode: int) -> None:
    h, arb = _evil(backend)
    client, prov, _, job = _completed(h)
    owner = h.owner
    if mode == 2:  # give the arbiter a balance, so that only the guard can stop a re-entrant withdraw
        h.s(owner).transact(h.market.token.functions.transfer(arb.address, 5 * TOKEN))
        h.s(owner).transact(arb.functions.fund(h.market.address, h.market.token.address, 5 * TOKEN))
        h.accounts.add(arb.address)
    h.s(owner).transact(arb.functions.configure(mode, h.terms(job), h.result(job)))
    paid = h.balance(prov.address)
    h.dispute(client, job)  # the arbiter's misbehaviour cannot block the draw that calls it
    assert h.state(job) == "Disputed"
    assert arb.functions.reentered().call() is False
    if mode in (1, 2):  # the attempt was made, and the reentrancy guard refused it
        assert arb.functions.lastError().call() == REENTRANT
    if mode == 2:
        assert h.balance(arb.address) == 5 * TOKEN
        h.s(owner).transact(arb.functions.withdrawFrom(h.market.address, 1))  # outside a dispute it works
        h.check_invariant()
        assert h.balance(arb.address) == 5 * TOKEN - 1
    assert h.balance(prov.address) == paid  # not paid by a re-entrant resolve
    # the arbiter can still decide once, through the front door
    _decide(h, job, True, "MaliciousArbiter")
    assert h.state(job) == "Settled"
    assert h.balance(prov.address) == paid + 10 * TOKEN + h.bond
    with pytest.raises(ContractError) as info:
        _decide(h, job, True, "MaliciousArbiter")
    assert info.value.name == "InvalidState" and info.value.error_args["state"] == "Settled"
    h.s(owner).resync()
    h.check_invariant()


def test_arbiter_cannot_be_silenced_by_a_tight_gas_limit(backend: Backend) -> None:
    h, arb = _evil(backend)
    client, _, _, job = _completed(h)
    h.s(h.owner).transact(arb.functions.configure(4, h.terms(job), h.result(job)))  # records the gas it gets
    h.op(client, "dispute", *h.done(job))
    h.b.advance(1)  # calls and estimates run in the latest block, where the draw's hash is not known yet
    fn = h.market.fn("finalize", *h.done(job))  # the draw, which finds no auditor: to the arbiter
    enough = int(fn.estimate_gas({"from": client.address}))
    short = enough - 15_000
    with pytest.raises(Exception) as info:  # noqa: B017  (decoded just below)
        fn.call({"from": client.address, "gas": short})
    err = as_contract_error(info.value)
    assert err is not None and err.name == "InsufficientGasForArbiter", info.value
    assert err.error_args["needed"] == ARBITER_GAS_FLOOR and err.error_args["gasLeft"] < ARBITER_GAS_FLOOR
    with pytest.raises(ChainError):  # a real transaction with that limit fails and moves nothing
        Sender(h.b.w3, client, fixed_gas=short).transact(fn)
    h.s(client).resync()
    h.check_invariant()
    assert h.state(job) == "Audited" and h.audit(job).phase == "Draw"
    # with the estimated limit the draw lands and the arbiter gets its whole allowance
    Sender(h.b.w3, client, fixed_gas=enough).transact(fn)
    h.s(client).resync()
    h.check_invariant()
    assert h.state(job) == "Disputed"
    assert ARBITER_GAS - 1_000 <= arb.functions.gasAtEntry().call() <= ARBITER_GAS


def test_arbiter_that_burns_its_gas_does_not_sink_a_tight_dispute(backend: Backend) -> None:
    h, arb = _evil(backend)
    client, _, _, job = _completed(h)
    h.s(h.owner).transact(arb.functions.configure(3, h.terms(job), h.result(job)))
    h.op(client, "dispute", *h.done(job))
    h.b.advance(1)  # calls and estimates run in the latest block, where the draw's hash is not known yet
    fn = h.market.fn("finalize", *h.done(job))
    r = Sender(h.b.w3, client, fixed_gas=int(fn.estimate_gas({"from": client.address}))).transact(fn)
    h.s(client).resync()
    h.check_invariant()
    assert h.state(job) == "Disputed"
    assert int(r["gasUsed"]) > ARBITER_GAS  # it did burn its allowance
    assert arb.functions.burned().call() == 0  # and all of its work was undone
