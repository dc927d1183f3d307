"""Every JobMarket transition and revert outside disputes, with the exact custom error, on
eth-tester and anvil (disputes: test_disputes.py; parameters, fees, salts, time: test_rules.py).
The balance invariant is checked after every operation (Harness.op / expect_revert)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hearth.chain.types import ZERO_ADDRESS, result_commitment
from hearth.formats.units import TOKEN
from hearth.jobs import permit_signature

from tests.backends import Backend
from tests.contracts.harness import CLASS_A, CLASS_B, MODEL_V0, MODEL_V1, OUT, RESULT, SALT, SPEC, Harness, make_harness


@pytest.fixture
def h(backend: Backend) -> Harness:
    return make_harness(backend)


@pytest.fixture
def hw(backend: Backend) -> Harness:
    """A market with a one-hour dispute window."""
    return make_harness(backend, dispute_window=3600)


def actors(h: Harness) -> tuple[LocalAccount, LocalAccount, LocalAccount]:
    a = h.b.accounts
    return a[1], a[2], a[3]


# ------------------------------------------------------------------ balances


def test_deposit_and_withdraw(h: Harness) -> None:
    client, _, _ = actors(h)
    h.fund(client, 100, 40)
    assert h.balance(client.address) == 40 * TOKEN
    h.op(client, "withdraw", 15 * TOKEN)
    assert h.balance(client.address) == 25 * TOKEN
    assert h.market.token_balance(client.address) == 75 * TOKEN


def test_deposit_zero_reverts(h: Harness) -> None:
    client, _, _ = actors(h)
    h.fund(client, 10, 0)
    h.expect_revert("ZeroAmount", client, "deposit", 0)


def test_withdraw_more_than_balance_reverts(h: Harness) -> None:
    client, _, _ = actors(h)
    h.fund(client, 10, 5)
    h.expect_revert("InsufficientBalance", client, "withdraw", 6 * TOKEN, account=client.address,
                    balance=5 * TOKEN, needed=6 * TOKEN)


def test_deposit_with_permit(h: Harness) -> None:
    client, _, _ = actors(h)
    h.s(h.owner).transact(h.market.token.functions.transfer(client.address, 10 * TOKEN))
    v, r, s = permit_signature(client, h.market, 7 * TOKEN, h.b.now() + 600)
    h.op(client, "depositWithPermit", 7 * TOKEN, h.b.now() + 600, v, r, s)
    assert h.balance(client.address) == 7 * TOKEN


# ------------------------------------------------------------------ providers


def test_register_and_manage(h: Harness) -> None:
    _, prov, _ = actors(h)
    h.register(prov, 50, (MODEL_V0,))
    a = h.market.account(prov.address)
    assert (a.stake, a.status) == (50 * TOKEN, "Active")
    assert h.market.serves(prov.address, MODEL_V0) and not h.market.serves(prov.address, MODEL_V1)
    h.op(prov, "addModels", [MODEL_V1])
    assert h.market.serves(prov.address, MODEL_V1)
    h.op(prov, "removeModels", [MODEL_V0])
    assert not h.market.serves(prov.address, MODEL_V0)
    h.op(prov, "setPrice", 5)
    assert h.market.min_price(prov.address) == 5
    h.op(prov, "addStake", 10 * TOKEN)
    assert h.stake(prov.address) == 60 * TOKEN


def test_register_below_minimum_reverts(h: Harness) -> None:
    _, prov, _ = actors(h)
    h.fund(prov, 100, 50)
    h.expect_revert("StakeBelowMinimum", prov, "register", TOKEN, 0, CLASS_A, [MODEL_V0], stake=TOKEN,
                    minimum=10 * TOKEN)


def test_register_without_balance_reverts(h: Harness) -> None:
    _, prov, _ = actors(h)
    h.fund(prov, 100, 5)
    h.expect_revert("InsufficientBalance", prov, "register", 20 * TOKEN, 0, CLASS_A, [MODEL_V0],
                    account=prov.address, balance=5 * TOKEN, needed=20 * TOKEN)


def test_register_twice_reverts(h: Harness) -> None:
    _, prov, _ = actors(h)
    h.register(prov)
    h.expect_revert("ProviderAlreadyRegistered", prov, "register", 10 * TOKEN, 0, CLASS_A, [], provider=prov.address)


def test_register_empty_cid_reverts(h: Harness) -> None:
    _, prov, _ = actors(h)
    h.fund(prov, 100, 50)
    h.expect_revert("EmptyCid", prov, "register", 20 * TOKEN, 0, CLASS_A, [b""])


def test_register_zero_class_reverts(h: Harness) -> None:
    _, prov, _ = actors(h)
    h.fund(prov, 100, 50)
    h.expect_revert("InvalidReproClass", prov, "register", 20 * TOKEN, 0, b"\0" * 32, [MODEL_V0])


def members(h: Harness, cls: bytes) -> list[str]:
    return list(h.market.contract.functions.classMembers(cls).call())


def test_repro_class_membership(h: Harness) -> None:
    client, prov, other = actors(h)
    h.fund(client)
    h.register(prov, 50)
    h.register(other, 50)
    c = h.market.contract.functions
    assert c.reproClassOf(prov.address).call() == CLASS_A
    assert members(h, CLASS_A) == [prov.address, other.address] and members(h, CLASS_B) == []
    h.expect_revert("InvalidReproClass", prov, "setReproClass", b"\0" * 32)
    h.op(prov, "setReproClass", CLASS_B)
    assert members(h, CLASS_A) == [other.address] and members(h, CLASS_B) == [prov.address]
    assert c.reproClassOf(prov.address).call() == CLASS_B
    # a provider with an open job keeps its class: its audit needs auditors of that class
    job = h.post(client)
    h.claim(prov, job)
    h.expect_revert("ProviderHasOpenJobs", prov, "setReproClass", CLASS_A, provider=prov.address, openJobs=1)
    h.complete(prov, job)
    h.expect_revert("ProviderHasOpenJobs", prov, "setReproClass", CLASS_A, provider=prov.address, openJobs=1)
    h.settle(job)
    h.op(prov, "setReproClass", CLASS_A)
    assert sorted(members(h, CLASS_A)) == sorted([prov.address, other.address]) and members(h, CLASS_B) == []
    # withdrawing the stake leaves the class; unbonding alone does not
    h.op(other, "unbond")
    h.expect_revert("ProviderNotActive", other, "setReproClass", CLASS_B, provider=other.address)
    assert other.address in members(h, CLASS_A)
    h.b.advance(3601)
    h.op(other, "withdrawStake")
    assert members(h, CLASS_A) == [prov.address]
    assert c.reproClassOf(other.address).call() == b"\0" * 32
    h.op(other, "register", 10 * TOKEN, 0, CLASS_B, [MODEL_V0])
    assert members(h, CLASS_B) == [other.address]


def test_unregistered_provider_calls_revert(h: Harness) -> None:
    _, prov, _ = actors(h)
    h.fund(prov, 10, 5)
    h.expect_revert("ProviderNotActive", prov, "setPrice", 1, provider=prov.address)
    h.expect_revert("ProviderNotActive", prov, "addStake", TOKEN)
    h.expect_revert("ProviderNotActive", prov, "addModels", [MODEL_V0])
    h.expect_revert("ProviderNotActive", prov, "removeModels", [MODEL_V0], provider=prov.address)
    h.expect_revert("ProviderNotActive", prov, "unbond")
    h.expect_revert("ZeroAmount", prov, "addStake", 0)


def test_unbond_and_withdraw_stake(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.register(prov, 50)
    h.fund(client)
    job = h.post(client, window=7200)
    h.claim(prov, job)
    h.op(prov, "unbond")
    job2 = h.post(client)
    h.expect_revert("ProviderNotActive", prov, "claim", job2, h.terms(job2))
    h.expect_revert("UnbondingNotOver", prov, "withdrawStake")
    h.b.advance(3601)
    h.expect_revert("ProviderHasOpenJobs", prov, "withdrawStake", provider=prov.address, openJobs=1)
    h.complete(prov, job)
    # a completed job stays open until it is settled
    h.expect_revert("ProviderHasOpenJobs", prov, "withdrawStake", provider=prov.address, openJobs=1)
    h.settle(job)
    before = h.balance(prov.address)
    h.op(prov, "withdrawStake")
    assert h.balance(prov.address) == before + 50 * TOKEN
    assert h.market.account(prov.address).status == "None"
    h.expect_revert("ProviderNotUnbonding", prov, "withdrawStake", provider=prov.address)


def test_withdraw_stake_clears_models_and_price(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client)
    h.register(prov, 50, (MODEL_V0, MODEL_V1))
    h.op(prov, "setPrice", 7)
    h.op(prov, "unbond")
    h.expect_revert("ProviderNotActive", prov, "removeModels", [MODEL_V0], provider=prov.address)
    h.b.advance(3601)
    h.op(prov, "withdrawStake")
    assert not h.market.serves(prov.address, MODEL_V0) and not h.market.serves(prov.address, MODEL_V1)
    assert h.market.min_price(prov.address) == 0
    # registering again brings back neither the old models nor the old price
    h.op(prov, "register", 10 * TOKEN, 3, CLASS_A, [MODEL_V1])
    assert not h.market.serves(prov.address, MODEL_V0) and h.market.serves(prov.address, MODEL_V1)
    assert h.market.min_price(prov.address) == 3
    job = h.post(client)
    h.expect_revert("ModelNotServed", prov, "claim", job, h.terms(job), provider=prov.address,
                    modelKey=keccak(MODEL_V0))


# ------------------------------------------------------------------ post


@pytest.mark.parametrize("model", [MODEL_V0, MODEL_V1], ids=["cidv0", "cidv1"])
def test_post_locks_payment_and_event_round_trips_cid(h: Harness, model: bytes) -> None:
    client, _, _ = actors(h)
    h.fund(client)
    job = h.post(client, payment=3 * TOKEN, model=model)
    assert h.balance(client.address) == 497 * TOKEN
    posted = h.market.posted(job)
    assert (posted.model_cid.to_bytes(), posted.spec_cid.to_bytes(), posted.payment) == (model, SPEC, 3 * TOKEN)
    assert posted.model_key == keccak(model)
    assert h.state(job) == "Posted"


def test_post_with_permit_pulls_from_wallet(h: Harness) -> None:
    client, _, _ = actors(h)
    h.s(h.owner).transact(h.market.token.functions.transfer(client.address, 10 * TOKEN))
    deadline = h.b.now() + 600
    v, r, s = permit_signature(client, h.market, 2 * TOKEN, deadline)
    p = h.market.post_params(MODEL_V0, SPEC, 2 * TOKEN, h.b.now() + 3600, 600)
    receipt = h.s(client).transact(h.market.fn("postJobWithPermit", p, 2 * TOKEN, deadline, v, r, s))
    job = h.market.job_posted_id(receipt)
    h.jobs[job] = h.market.posted(job).terms
    h.check_invariant()
    assert h.market.token_balance(client.address) == 8 * TOKEN
    assert h.balance(client.address) == 0


def test_post_reverts(h: Harness) -> None:
    client, _, _ = actors(h)
    h.fund(client, 100, 5)
    now = h.b.now()
    pp = h.market.post_params
    h.expect_revert("ZeroAmount", client, "postJob", pp(MODEL_V0, SPEC, 0, now + 100, 60))
    h.expect_revert("EmptyCid", client, "postJob", pp(b"", SPEC, TOKEN, now + 100, 60))
    h.expect_revert("EmptyCid", client, "postJob", pp(MODEL_V0, b"", TOKEN, now + 100, 60))
    h.expect_revert("InvalidClaimDeadline", client, "postJob", pp(MODEL_V0, SPEC, TOKEN, now - 1, 60))
    cap = h.params.max_completion_window
    h.expect_revert("InvalidCompletionWindow", client, "postJob", pp(MODEL_V0, SPEC, TOKEN, now + 100, 0),
                    completionWindow=0, maxCompletionWindow=cap)
    h.expect_revert("InvalidCompletionWindow", client, "postJob", pp(MODEL_V0, SPEC, TOKEN, now + 100, cap + 1),
                    completionWindow=cap + 1, maxCompletionWindow=cap)
    h.expect_revert("InsufficientBalance", client, "postJob", pp(MODEL_V0, SPEC, 6 * TOKEN, now + 100, 60),
                    account=client.address, balance=5 * TOKEN, needed=6 * TOKEN)


# ------------------------------------------------------------------ claim


def test_claim_locks_collateral(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client)
    h.register(prov, 50)
    job = h.post(client, payment=10 * TOKEN)
    h.claim(prov, job)
    assert h.state(job) == "Claimed"
    assert h.stake(prov.address) == 49 * TOKEN
    assert h.market.account(prov.address).open_jobs == 1


def test_claim_reverts(h: Harness) -> None:
    client, prov, other = actors(h)
    h.fund(client)
    h.register(prov, 20)
    job = h.post(client, payment=10 * TOKEN)
    bad = h.jobs[job].with_provider(other.address).as_tuple()
    h.expect_revert("UnknownJob", prov, "claim", job, bad, jobId=job)
    h.expect_revert("UnknownJob", prov, "claim", 999, h.terms(job), jobId=999)
    h.expect_revert("ProviderNotActive", other, "claim", job, h.terms(job), provider=other.address)
    h.claim(prov, job)
    h.expect_revert("InvalidState", prov, "claim", job, h.terms(job), jobId=job, state="Claimed")
    h.expect_revert("UnknownJob", prov, "claim", job, h.market.posted(job).terms.as_tuple(), jobId=job)


def test_claim_locks_at_least_the_collateral_floor(h: Harness) -> None:
    client, prov, anyone = actors(h)
    h.fund(client)
    h.register(prov, 50)
    floor = h.params.min_collateral
    payment = floor  # 10% of it is below the floor
    job = h.post(client, payment=payment, window=h.params.max_completion_window)
    receipt = h.claim(prov, job)
    ev = h.market.contract.events.JobClaimed().process_receipt(receipt)[0]["args"]
    assert ev["collateral"] == floor and h.market.collateral_for(payment) == floor
    assert h.stake(prov.address) == 50 * TOKEN - floor
    # the longest hold a claimer can take is the market's cap, and it costs the floor
    assert ev["completionDeadline"] <= h.b.now() + h.params.max_completion_window
    h.b.advance(h.params.max_completion_window + 1)
    h.op(anyone, "expire", job, h.terms(job))
    assert h.balance(client.address) == 500 * TOKEN + floor


def test_claim_model_not_served_reverts(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client)
    h.register(prov, 20, (MODEL_V1,))
    job = h.post(client)
    h.expect_revert("ModelNotServed", prov, "claim", job, h.terms(job), provider=prov.address, modelKey=keccak(MODEL_V0))


def test_claim_insufficient_stake_reverts(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client, 2000, 1500)
    h.register(prov, 10)
    job = h.post(client, payment=200 * TOKEN)
    h.expect_revert("InsufficientStake", prov, "claim", job, h.terms(job), provider=prov.address,
                    freeStake=10 * TOKEN, needed=20 * TOKEN)


def test_claim_after_deadline_reverts(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client)
    h.register(prov)
    job = h.post(client, claim_in=100)
    h.b.advance(200)
    h.expect_revert("DeadlinePassed", prov, "claim", job, h.terms(job), jobId=job)


def test_claim_reserved_for_other_provider_reverts(h: Harness) -> None:
    client, prov, other = actors(h)
    h.fund(client)
    h.register(prov)
    h.register(other)
    job = h.post(client, provider=other.address)
    h.expect_revert("NotProvider", prov, "claim", job, h.terms(job), jobId=job, caller=prov.address)
    h.claim(other, job)


# ------------------------------------------------------------------ complete / settle


def test_complete_commits_and_settle_pays_after_the_window(hw: Harness) -> None:
    client, prov, anyone = actors(hw)
    hw.fund(client)
    hw.register(prov, 50)
    job = hw.post(client, payment=4 * TOKEN)
    hw.claim(prov, job)
    r = hw.complete(prov, job)
    assert hw.state(job) == "Completed"
    assert hw.stake(prov.address) == 50 * TOKEN - 4 * TOKEN // 10  # collateral still locked
    ev = hw.market.contract.events.JobCompleted().process_receipt(r)[0]["args"]
    commitment = result_commitment(job, prov.address, OUT, SALT)
    assert bytes(ev["resultCid"]) == RESULT and bytes(ev["commitment"]) == commitment
    assert ev["disputeDeadline"] == hw.market.job(job).deadline == hw.b.w3.eth.get_block(r["blockNumber"])[
        "timestamp"] + 3600
    assert hw.market.completion(job) == hw.results[job]
    # the slot now commits to the result too: the claim-time terms alone no longer open it
    hw.expect_revert("UnknownJob", prov, "complete", job, hw.terms(job), RESULT, commitment, jobId=job)
    hw.expect_revert("DeadlineNotPassed", anyone, "settle", *hw.done(job), jobId=job,
                     deadline=hw.market.job(job).deadline)
    # the result is part of the job's commitment: another one does not open it
    other_block = (commitment, hw.results[job].block + 1)
    other_commitment = (b"\x01" * 32, hw.results[job].block)
    hw.expect_revert("UnknownJob", anyone, "settle", job, hw.terms(job), other_block, jobId=job)
    hw.expect_revert("UnknownJob", anyone, "settle", job, hw.terms(job), other_commitment, jobId=job)
    hw.b.advance(3601)
    before = hw.balance(prov.address)
    r = hw.op(anyone, "settle", *hw.done(job))
    assert hw.state(job) == "Settled"
    assert hw.balance(prov.address) == before + 4 * TOKEN  # no fee, no audit fee on this market
    assert hw.stake(prov.address) == 50 * TOKEN
    assert hw.market.account(prov.address).open_jobs == 0
    ev = hw.market.contract.events.JobSettled().process_receipt(r)[0]["args"]
    assert (ev["providerAmount"], ev["fee"], ev["auditFee"]) == (4 * TOKEN, 0, 0)
    # a settled job is never paid twice
    hw.expect_revert("InvalidState", anyone, "settle", *hw.done(job), jobId=job, state="Settled")
    hw.expect_revert("InvalidState", prov, "complete", job, hw.terms(job), RESULT, commitment,
                     jobId=job, state="Settled")


def test_settle_pays_the_audit_fee_into_the_pool(backend: Backend) -> None:
    h = make_harness(backend, dispute_window=60, audit_fee_bps=500)
    client, prov, anyone = actors(h)
    h.fund(client)
    h.register(prov, 50)
    h.accounts.add(anyone.address)
    h.op(h.owner, "setFee", 100, anyone.address)
    job = h.post(client, payment=10 * TOKEN)
    h.claim(prov, job)
    h.complete(prov, job)
    assert h.market.contract.functions.auditSelected(*h.done(job)).call() is False  # auditBps 0
    before = h.balance(prov.address)
    r = h.settle(job)
    ev = h.market.contract.events.JobSettled().process_receipt(r)[0]["args"]
    assert (ev["providerAmount"], ev["fee"], ev["auditFee"]) == (10 * TOKEN - TOKEN // 10 - TOKEN // 2,
                                                                 TOKEN // 10, TOKEN // 2)
    assert h.balance(prov.address) == before + 10 * TOKEN - TOKEN // 10 - TOKEN // 2
    assert h.balance(anyone.address) == TOKEN // 10
    assert h.pool() == TOKEN // 2


def test_settle_many_pays_each_job_as_settle_would(backend: Backend) -> None:
    h = make_harness(backend, dispute_window=60, audit_fee_bps=500)
    client, prov, treasury = actors(h)
    other = h.b.accounts[4]
    h.fund(client)
    h.register(prov, 50)
    h.register(other, 50)
    h.accounts.add(treasury.address)
    h.op(h.owner, "setFee", 100, treasury.address)
    jobs = [h.post(client, payment=pay * TOKEN) for pay in (10, 2, 4)]
    for job, p in zip(jobs, (prov, other, prov), strict=True):
        h.claim(p, job)
        h.complete(p, job)
    balances = {a.address: h.balance(a.address) for a in (prov, other, treasury)}
    h.b.advance(61)
    r = h.op(client, "settleMany", jobs, [h.terms(j) for j in jobs], [h.result(j) for j in jobs])
    paid = [(e["args"]["jobId"], e["args"]["provider"], e["args"]["providerAmount"], e["args"]["fee"],
             e["args"]["auditFee"]) for e in h.market.contract.events.JobSettled().process_receipt(r)]
    # each job's fee 1%, audit fee 5%: in the order given, as three settles would
    assert paid == [(jobs[0], prov.address, 94 * TOKEN // 10, TOKEN // 10, TOKEN // 2),
                    (jobs[1], other.address, 188 * TOKEN // 100, TOKEN // 50, TOKEN // 10),
                    (jobs[2], prov.address, 376 * TOKEN // 100, TOKEN // 25, TOKEN // 5)]
    assert [h.state(j) for j in jobs] == ["Settled"] * 3
    assert h.balance(prov.address) == balances[prov.address] + 1316 * TOKEN // 100
    assert h.balance(other.address) == balances[other.address] + 188 * TOKEN // 100
    assert h.balance(treasury.address) == balances[treasury.address] + 16 * TOKEN // 100
    assert h.pool() == 16 * TOKEN // 20
    for p in (prov, other):
        assert h.stake(p.address) == 50 * TOKEN and h.market.account(p.address).open_jobs == 0


def test_settle_many_settles_all_or_none(backend: Backend) -> None:
    h = make_harness(backend, dispute_window=60)
    client, prov, anyone = actors(h)
    h.fund(client)
    h.register(prov, 50)
    ready, early = h.post(client), h.post(client, window=3600)
    for job in (ready, early):
        h.claim(prov, job)
    h.complete(prov, ready)
    h.b.advance(61)  # past ready's window; early's starts now
    h.complete(prov, early)
    before = (h.balance(prov.address), h.stake(prov.address))

    def settle_many(*jobs: int) -> tuple[list[int], list[tuple[object, ...]], list[tuple[bytes, int]]]:
        return list(jobs), [h.terms(j) for j in jobs], [h.result(j) for j in jobs]

    h.expect_revert("InvalidBatch", anyone, "settleMany", [], [], [], jobs=0, terms=0, results=0)
    ids, terms, results = settle_many(ready, early)
    h.expect_revert("InvalidBatch", anyone, "settleMany", ids, terms[:1], results, jobs=2, terms=1, results=2)
    h.expect_revert("InvalidBatch", anyone, "settleMany", ids, terms, results[:1], jobs=2, terms=2, results=1)
    # one job still inside its window: the batch reverts with its error and pays nobody
    h.expect_revert("DeadlineNotPassed", anyone, "settleMany", ids, terms, results, jobId=early,
                    deadline=h.market.job(early).deadline)
    # a job listed twice is paid once: the second time it is settled already
    h.expect_revert("InvalidState", anyone, "settleMany", *settle_many(ready, ready), jobId=ready, state="Settled")
    # wrong terms for one job: unknown, nothing paid
    h.expect_revert("UnknownJob", anyone, "settleMany", [ready], [h.terms(early)], [h.result(ready)], jobId=ready)
    assert (h.balance(prov.address), h.stake(prov.address)) == before
    assert (h.state(ready), h.state(early)) == ("Completed", "Completed")
    h.op(anyone, "settleMany", *settle_many(ready))
    assert h.state(ready) == "Settled" and h.balance(prov.address) == before[0] + TOKEN


def test_complete_reverts(h: Harness) -> None:
    client, prov, other = actors(h)
    h.fund(client)
    h.register(prov)
    job = h.post(client, window=100)
    h.expect_revert("InvalidState", prov, "complete", job, h.terms(job), RESULT, b"\0" * 32, state="Posted")
    h.claim(prov, job)
    h.expect_revert("NotProvider", other, "complete", job, h.terms(job), RESULT, b"\0" * 32, caller=other.address)
    h.expect_revert("EmptyCid", prov, "complete", job, h.terms(job), b"", b"\0" * 32)
    # a call for a completed job on a claimed one: its terms say which state it is in
    h.expect_revert("InvalidState", other, "settle", job, h.terms(job), (b"\0" * 32, 1), jobId=job, state="Claimed")
    h.b.advance(200)
    h.expect_revert("DeadlinePassed", prov, "complete", job, h.terms(job), RESULT, b"\0" * 32, jobId=job)


def test_fee_and_its_recipient_are_fixed_at_post(h: Harness) -> None:
    client, prov, other = actors(h)
    treasury = h.b.accounts[6]
    h.fund(client)
    h.register(prov)
    h.accounts |= {other.address, treasury.address}
    h.expect_revert("OwnableUnauthorizedAccount", client, "setFee", 100, client.address)
    h.expect_revert("FeeTooHigh", h.owner, "setFee", 1001, other.address, feeBps=1001, maxFeeBps=1000)
    h.expect_revert("InvalidFeeRecipient", h.owner, "setFee", 100, ZERO_ADDRESS, recipient=ZERO_ADDRESS)
    h.expect_revert("InvalidFeeRecipient", h.owner, "setFee", 100, h.market.address, recipient=h.market.address)
    free = h.post(client, payment=10 * TOKEN)
    h.op(h.owner, "setFee", 500, other.address)
    first = h.post(client, payment=10 * TOKEN)
    assert (h.jobs[first].fee_bps, h.jobs[first].fee_recipient) == (500, other.address)
    h.op(h.owner, "setFee", 200, treasury.address)  # changes neither fee nor recipient of `first`
    second = h.post(client, payment=10 * TOKEN)
    paid = h.balance(prov.address)
    for job in (free, first, second):
        h.claim(prov, job)
    # a recipient other than the one fixed at post does not match the job's commitment
    forged = replace(h.jobs[second], fee_recipient=other.address)
    h.expect_revert("UnknownJob", prov, "complete", second, forged.as_tuple(), RESULT, b"\0" * 32, jobId=second)
    for job in (free, first, second):
        h.complete(prov, job)
    for job in (free, first, second):
        h.settle(job)
    assert h.balance(other.address) == TOKEN // 2  # 5% of `first`
    assert h.balance(treasury.address) == TOKEN // 5  # 2% of `second`
    assert h.balance(prov.address) == paid + 30 * TOKEN - TOKEN // 2 - TOKEN // 5


# ------------------------------------------------------------------ cancel / expire


def test_cancel_refunds(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client)
    job = h.post(client, payment=3 * TOKEN)
    h.expect_revert("NotClient", prov, "cancel", job, h.terms(job), jobId=job, caller=prov.address)
    h.op(client, "cancel", job, h.terms(job))
    assert h.state(job) == "Cancelled"
    assert h.balance(client.address) == 500 * TOKEN
    h.expect_revert("InvalidState", client, "cancel", job, h.terms(job), state="Cancelled")


def test_cancel_after_claim_reverts(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client)
    h.register(prov)
    job = h.post(client)
    h.claim(prov, job)
    h.expect_revert("InvalidState", client, "cancel", job, h.terms(job), state="Claimed")


def test_expire_unclaimed_refunds_client(h: Harness) -> None:
    client, _, anyone = actors(h)
    h.fund(client)
    job = h.post(client, payment=3 * TOKEN, claim_in=100)
    h.expect_revert("DeadlineNotPassed", anyone, "expire", job, h.terms(job), jobId=job)
    h.b.advance(101)
    h.op(anyone, "expire", job, h.terms(job))
    assert h.state(job) == "Expired"
    assert h.balance(client.address) == 500 * TOKEN


def test_expire_claimed_slashes_collateral(h: Harness) -> None:
    client, prov, anyone = actors(h)
    h.fund(client)
    h.register(prov, 50)
    job = h.post(client, payment=10 * TOKEN, window=100)
    h.claim(prov, job)
    h.b.advance(101)
    h.op(anyone, "expire", job, h.terms(job))
    assert h.state(job) == "Expired"
    assert h.balance(client.address) == 501 * TOKEN  # payment back + 1 HRT collateral
    assert h.stake(prov.address) == 49 * TOKEN
    assert h.market.account(prov.address).open_jobs == 0


def test_expire_claimed_returns_collateral_above_the_payment(backend: Backend) -> None:
    h = make_harness(backend, collateral_bps=150_000)  # 15x the payment
    client, prov, anyone = actors(h)
    h.fund(client)
    h.register(prov, 50)
    job = h.post(client, payment=2 * TOKEN, window=100)
    h.claim(prov, job)
    assert h.stake(prov.address) == 20 * TOKEN
    h.b.advance(101)
    r = h.op(anyone, "expire", job, h.terms(job))
    ev = h.market.contract.events.JobExpired().process_receipt(r)[0]["args"]
    assert (ev["refund"], ev["slashed"]) == (4 * TOKEN, 2 * TOKEN)  # payment back and the payment again
    assert h.balance(client.address) == 502 * TOKEN
    assert h.stake(prov.address) == 48 * TOKEN  # the rest of the collateral is back in stake
    assert h.market.account(prov.address).open_jobs == 0


def test_expire_completed_or_settled_reverts(h: Harness) -> None:
    client, prov, _ = actors(h)
    h.fund(client)
    h.register(prov)
    job = h.post(client)
    h.claim(prov, job)
    h.complete(prov, job)
    h.b.advance(100_000)
    h.expect_revert("UnknownJob", client, "expire", job, h.terms(job), jobId=job)  # terms alone: see above
    h.op(client, "settle", *h.done(job))
    h.expect_revert("InvalidState", client, "expire", job, h.terms(job), state="Settled")


def test_unknown_job_reads_as_none(h: Harness) -> None:
    assert h.state(12345) == "None"
    assert h.market.job(0).state == "None"
