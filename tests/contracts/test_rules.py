"""The market's parameters are checked at deploy, each job's terms are salted, and no timestamp
wraps in 2106; on eth-tester and anvil."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from hearth.chain.revert import as_contract_error
from hearth.chain.types import ZERO_ADDRESS, JobTerms
from hearth.dev.deploy import MarketParams, libraries_of, link
from hearth.errors import ContractError
from hearth.formats.units import TOKEN

from tests.backends import AnvilBackend, Backend, EthTesterBackend
from tests.contracts.harness import MODEL_V0, SPEC, TEST_PARAMS, Harness, artifact, make_harness

MAX_PERIOD = 30 * 86_400
U96 = 2**96


@pytest.fixture
def h(backend: Backend) -> Harness:
    return make_harness(backend)


def deploy_error(b: Backend, token: str, arbiter: str, params: MarketParams) -> ContractError:
    """The custom error a JobMarket deployment with these arguments reverts with."""
    art = artifact("JobMarket")
    # the constructor never calls the linked library: any address links it
    bytecode = link(art, {lib: ZERO_ADDRESS for lib in libraries_of(art)})
    ctor = b.w3.eth.contract(abi=art["abi"], bytecode=bytecode).constructor(token, arbiter, params.as_config())
    with pytest.raises(Exception) as info:  # noqa: B017  (decoded just below)
        b.w3.eth.call({"from": b.accounts[0].address, "data": ctor.data_in_transaction, "gas": 10_000_000})
    err = as_contract_error(info.value)
    assert err is not None, info.value
    return err


BAD = [
    ("collateral_bps", 1_000_001, "InvalidBps", {"bps": 1_000_001, "maxBps": 1_000_000}),
    ("audit_bps", 10_001, "InvalidBps", {"bps": 10_001, "maxBps": 10_000}),
    ("audit_fee_bps", 5_001, "InvalidBps", {"bps": 5_001, "maxBps": 5_000}),
    ("dispute_window", 0, "InvalidPeriod", {"period": 0, "minPeriod": 1, "maxPeriod": MAX_PERIOD}),
    ("dispute_window", MAX_PERIOD + 1, "InvalidPeriod", {"period": MAX_PERIOD + 1, "minPeriod": 1}),
    ("audit_timeout", 0, "InvalidPeriod", {"period": 0, "minPeriod": 1, "maxPeriod": MAX_PERIOD}),
    ("audit_timeout", MAX_PERIOD + 1, "InvalidPeriod", {"period": MAX_PERIOD + 1, "minPeriod": 1}),
    ("arbitration_timeout", 0, "InvalidPeriod", {"period": 0, "minPeriod": 1, "maxPeriod": MAX_PERIOD}),
    ("arbitration_timeout", MAX_PERIOD + 1, "InvalidPeriod", {"period": MAX_PERIOD + 1}),
    ("max_completion_window", 0, "InvalidPeriod", {"period": 0, "minPeriod": 1}),
    ("max_completion_window", MAX_PERIOD + 1, "InvalidPeriod", {"period": MAX_PERIOD + 1}),
    ("unbonding_delay", MAX_PERIOD + 1, "InvalidPeriod", {"period": MAX_PERIOD + 1, "minPeriod": 0}),
    ("min_collateral", U96, "SafeCastOverflowedUintDowncast", {"bits": 96, "value": U96}),
    ("dispute_bond", U96, "SafeCastOverflowedUintDowncast", {"bits": 96, "value": U96}),
    ("min_stake", U96, "SafeCastOverflowedUintDowncast", {"bits": 96, "value": U96}),
]


@pytest.mark.parametrize(("field", "value", "error", "args"), BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_constructor_rejects_bad_parameters(h: Harness, field: str, value: int, error: str, args: dict[str, int]) -> None:
    token = h.market.token.address
    err = deploy_error(h.b, token, h.arbiter_address, replace(TEST_PARAMS, **{field: value}))
    assert err.name == error, err
    for k, v in args.items():
        assert err.error_args[k] == v, (k, err.error_args)


def test_constructor_rejects_zero_addresses_and_takes_the_extremes(h: Harness) -> None:
    token = h.market.token.address
    assert deploy_error(h.b, ZERO_ADDRESS, h.arbiter_address, TEST_PARAMS).name == "ZeroAddress"
    assert deploy_error(h.b, token, ZERO_ADDRESS, TEST_PARAMS).name == "ZeroAddress"
    edge = MarketParams(collateral_bps=1_000_000, min_collateral=U96 - 1, dispute_window=MAX_PERIOD, dispute_bond=0,
                        arbitration_timeout=1, max_completion_window=MAX_PERIOD, unbonding_delay=0, min_stake=0,
                        audit_bps=10_000, audit_fee_bps=5_000, audit_timeout=MAX_PERIOD)
    m = make_harness(h.b, arbiter=h.arbiter_address, **asdict(edge)).market
    c = m.contract.functions
    assert (c.collateralBps().call(), c.minCollateral().call(), c.disputeWindow().call()) == (
        1_000_000, U96 - 1, MAX_PERIOD)
    assert (c.arbitrationTimeout().call(), c.maxCompletionWindow().call(), c.unbondingDelay().call()) == (1, MAX_PERIOD, 0)
    assert (c.auditBps().call(), c.auditFeeBps().call(), c.auditTimeout().call()) == (10_000, 5_000, MAX_PERIOD)
    low = make_harness(h.b, arbiter=h.arbiter_address, dispute_window=1, audit_timeout=1).market.contract.functions
    assert (low.disputeWindow().call(), low.auditTimeout().call()) == (1, 1)
    assert c.feeRecipient().call() == h.owner.address


TERMS_ABI = "(address,uint96,address,uint32,uint16,address,bytes32,uint64)"


def commitment_of(job_id: int, terms: JobTerms) -> int:
    """What the market stores for a posted job: the low 208 bits of keccak256(abi.encode(id, terms))."""
    return int.from_bytes(keccak(abi_encode(["uint256", TERMS_ABI], [job_id, terms.as_tuple()])), "big") % 2**208


def test_terms_are_salted_per_job(h: Harness) -> None:
    client = h.b.accounts[1]
    h.fund(client)
    a, b = h.post(client), h.post(client)  # same client, payment, model, window
    ta, tb = h.jobs[a], h.jobs[b]
    assert replace(ta, salt=0) == replace(tb, salt=0) and ta.salt != tb.salt
    ca, cb = h.market.job(a).commitment, h.market.job(b).commitment
    assert ca != cb
    assert ca == commitment_of(a, ta)
    h.expect_revert("UnknownJob", client, "cancel", b, ta.as_tuple(), jobId=b)  # a's terms do not open b
    h.expect_revert("UnknownJob", client, "cancel", a, replace(ta, salt=ta.salt ^ 1).as_tuple(), jobId=a)
    h.op(client, "cancel", a, ta.as_tuple())


def test_no_timestamp_wraps_in_2106(backend: Backend) -> None:
    fresh: Backend = EthTesterBackend() if backend.name == "eth-tester" else AnvilBackend()
    try:
        h = make_harness(fresh)
        client, prov = fresh.accounts[1], fresh.accounts[2]
        h.fund(client)
        h.register(prov)
        past_2106 = 2**32 + 1_000
        pp = h.market.post_params(MODEL_V0, SPEC, TOKEN, past_2106, 600)
        job = h.market.job_posted_id(h.s(client).transact(h.market.fn("postJob", pp)))
        h.jobs[job] = h.market.posted(job).terms
        assert h.market.job(job).deadline == past_2106 and h.market.posted(job).claim_deadline == past_2106
        fresh.advance(2**32 - fresh.now() + 10)  # the clock is now past 2**32 seconds
        assert fresh.now() > 2**32
        h.claim(prov, job)
        assert h.market.job(job).deadline > 2**32  # completion deadline, not wrapped
        h.complete(prov, job)
        h.settle(job)
        h.op(prov, "unbond")
        end = h.market.account(prov.address).unbonding_end
        assert end > 2**32
        h.expect_revert("UnbondingNotOver", prov, "withdrawStake", unbondingEnd=end)
        fresh.advance(3_601)
        h.op(prov, "withdrawStake")
    finally:
        fresh.close()
