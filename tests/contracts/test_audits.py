"""Audits, on eth-tester and anvil: random audits (auditBps 10,000: every job is drawn, so the
paths are deterministic) and client-requested ones, with commit and reveal, the tiebreak, the
arbiter and every timeout; exact balances of provider, auditors, client and audit pool. The
balance invariant (with the pool, the auditors' collateral and the bonds) is checked after every
operation.

Numbers: payment 1 HRT, collateral 15 HRT (15x), audit fee 10% (0.1 HRT to the pool), no
protocol fee; every provider registers 100 HRT of stake and keeps 100 HRT of balance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hearth.chain.types import ZERO_ADDRESS, result_commitment
from hearth.errors import ContractError
from hearth.formats.units import TOKEN
from web3 import Web3
from web3.logs import DISCARD

from tests.backends import Backend
from tests.contracts.harness import (
    CLASS_A,
    CLASS_B,
    MODEL_V1,
    OUT,
    SALT,
    WRONG,
    Harness,
    artifact,
    make_harness,
    phase,
)
from tests.contracts.model import probes

PAY = TOKEN
COLLATERAL = 15 * TOKEN
AUDIT_FEE = TOKEN // 10
TIMEOUT = 3_600
WINDOW = 3_600
THIRD = b"\x33" * 32
STAKE = 100 * TOKEN
AUDITED = {"audit_bps": 10_000, "collateral_bps": 150_000, "min_collateral": TOKEN // 100,
           "audit_fee_bps": 1_000, "audit_timeout": TIMEOUT, "dispute_bond": TOKEN // 10}


@pytest.fixture
def h(backend: Backend) -> Harness:
    return make_harness(backend, dispute_window=WINDOW, **AUDITED)


def cast(h: Harness, auditors: int = 1) -> tuple[LocalAccount, LocalAccount, list[LocalAccount]]:
    """Client (500 HRT deposited), provider and `auditors` other providers, all of class A
    serving MODEL_V0."""
    a = h.b.accounts
    client, prov, others = a[1], a[2], list(a[3:3 + auditors])
    h.fund(client)
    for p in (prov, *others):
        h.register(p)
    return client, prov, others


def completed(h: Harness, client: LocalAccount, prov: LocalAccount, output: bytes = OUT) -> int:
    job = h.post(client, payment=PAY)
    h.claim(prov, job)
    h.complete(prov, job, output)
    return job


def acct_of(h: Harness, address: str) -> LocalAccount:
    return next(a for a in h.b.accounts if a.address == address)


def auditor(h: Harness, job: int, rnd: int = 0) -> LocalAccount:
    return acct_of(h, h.audit(job).auditors[rnd])


def events(h: Harness, receipt: Any, name: str) -> list[Any]:
    return [e["args"] for e in getattr(h.market.contract.events, name)().process_receipt(receipt, errors=DISCARD)]


def past_window(h: Harness, job: int) -> None:
    """Move time past a completed job's window (a random audit starts after it)."""
    left = h.market.job(job).deadline - h.b.now()
    if left >= 0:
        h.b.advance(left + 2)  # eth-tester's latest block (where calls are estimated) lags its clock by one


def mine(b: Backend, n: int) -> None:
    """Mine `n` empty blocks (to age a completion block's hash out of history)."""
    if b.name == "eth-tester":
        b.tester.mine_blocks(n)  # type: ignore[attr-defined]
        return
    for k in [1000] * (n // 1000) + [n % 1000]:
        b.rpc("anvil_mine", hex(k))  # type: ignore[attr-defined]


def start(h: Harness, job: int) -> LocalAccount:
    """startAudit by an outsider after the window; returns the drawn auditor."""
    past_window(h, job)
    r = h.op(h.b.accounts[9], "startAudit", *h.done(job))
    (started,) = events(h, r, "AuditStarted")
    assert (started["requester"], started["bond"]) == (ZERO_ADDRESS, 0)
    (assigned,) = events(h, r, "AuditorAssigned")
    assert (assigned["round"], assigned["collateral"]) == (0, COLLATERAL)
    assert assigned["commitDeadline"] == h.market.job(job).deadline
    assert h.state(job) == "Audited" and h.audit(job).phase == "Commit"
    return acct_of(h, assigned["auditor"])


def decide(h: Harness, job: int, provider_wins: bool) -> Any:
    arb = h.b.w3.eth.contract(address=Web3.to_checksum_address(h.arbiter_address), abi=artifact("SimpleArbiter")["abi"])
    r = h.s(h.owner).transact(arb.functions.decide(h.market.address, *h.done(job), provider_wins))
    h.check_invariant()
    return r


def books(h: Harness, *accts: LocalAccount) -> list[tuple[int, int, int]]:
    """(balance, stake, open jobs) of each."""
    out = []
    for a in accts:
        r = h.market.account(a.address)
        out.append((r.balance, r.stake, r.open_jobs))
    return out


def tiebreak(h: Harness, job: int, provider_output: bytes, a0_output: bytes,
             a1_output: bytes) -> tuple[LocalAccount, LocalAccount, Any]:
    """Round 0 (provider and drawn auditor disagree), the draw, round 1; returns both auditors
    and the receipt of the last reveal."""
    a0 = start(h, job)
    h.commit_audit(a0, job, a0_output)
    h.reveal(h.jobs[job].provider, job, provider_output)
    r = h.reveal(a0.address, job, a0_output)
    (mismatch,) = events(h, r, "AuditMismatch")
    au = h.audit(job)
    assert (au.phase, au.draw_block, mismatch["drawBlock"]) == ("Draw", r["blockNumber"], r["blockNumber"])
    h.expect_revert("InvalidPhase", a0, "reveal", *h.done(job), a0.address, a0_output, SALT, phase=phase("Draw"))
    r = h.op(h.b.accounts[9], "finalize", *h.done(job))
    (assigned,) = events(h, r, "AuditorAssigned")
    a1 = acct_of(h, assigned["auditor"])
    assert assigned["round"] == 1 and a1.address not in (a0.address, h.jobs[job].provider)
    assert h.audit(job).round == 1 and h.audit(job).phase == "Commit"
    h.commit_audit(a1, job, a1_output)
    return a0, a1, h.reveal(a1.address, job, a1_output)


# ------------------------------------------------------------------ random audits


def test_upheld_random_audit_pays_provider_auditor_and_pool(h: Harness) -> None:
    client, prov, (aud,) = cast(h)
    outsider = h.b.accounts[9]
    job = completed(h, client, prov)
    h.b.advance(1)
    deadline = h.market.job(job).deadline
    # the window is the client's: no random audit in it, so none can end (and pay) before a dispute
    h.expect_revert("DeadlineNotPassed", outsider, "startAudit", *h.done(job), jobId=job, deadline=deadline)
    h.b.advance(WINDOW + 1)
    assert h.market.contract.functions.auditSelected(*h.done(job)).call() is True
    h.expect_revert("AuditRequired", outsider, "settle", *h.done(job), jobId=job)
    h.expect_revert("AuditRequired", outsider, "settleMany", [job], [h.terms(job)], [h.result(job)], jobId=job)
    h.expect_revert("InvalidPhase", aud, "commitAudit", job, OUT, jobId=job, phase=phase("None"))
    assert start(h, job) == aud
    h.expect_revert("InvalidState", outsider, "startAudit", *h.done(job), jobId=job, state="Audited")
    assert books(h, aud)[0] == (100 * TOKEN, STAKE - COLLATERAL, 1)  # its collateral is locked
    h.expect_revert("ProviderHasOpenJobs", aud, "setReproClass", CLASS_B, provider=aud.address, openJobs=1)
    # nobody reveals before the auditor has committed: there would be an output to copy
    h.expect_revert("InvalidPhase", outsider, "reveal", *h.done(job), prov.address, OUT, SALT, jobId=job,
                    phase=phase("Commit"))
    h.expect_revert("NotAuditor", prov, "commitAudit", job, OUT, jobId=job, caller=prov.address)
    r = h.commit_audit(aud, job)
    (committed,) = events(h, r, "AuditCommitted")
    assert committed["revealDeadline"] == h.market.job(job).deadline
    h.expect_revert("InvalidPhase", aud, "commitAudit", job, OUT, phase=phase("Reveal"))
    h.expect_revert("InvalidReveal", outsider, "reveal", *h.done(job), prov.address, b"\0" * 32, SALT,
                    jobId=job, party=prov.address)
    h.reveal(prov.address, job)
    assert h.audit(job).provider_output == OUT
    h.expect_revert("InvalidReveal", outsider, "reveal", *h.done(job), prov.address, OUT, SALT, party=prov.address)
    r = h.reveal(aud.address, job)
    assert [e["upheld"] for e in events(h, r, "AuditEnded")] == [True]
    assert [(e["auditor"], e["reward"]) for e in events(h, r, "AuditorPaid")] == [(aud.address, 0)]  # empty pool
    (settled,) = events(h, r, "JobSettled")
    assert (settled["providerAmount"], settled["fee"], settled["auditFee"]) == (PAY - AUDIT_FEE, 0, AUDIT_FEE)
    assert h.state(job) == "Settled" and h.audit(job).phase == "None"
    assert books(h, prov, aud, client) == [(100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0), (100 * TOKEN, STAKE, 0),
                                           (499 * TOKEN, 0, 0)]
    assert h.pool() == AUDIT_FEE
    # the next upheld audit pays its auditor min(pool, payment) out of the pool
    job2 = completed(h, client, prov)
    start(h, job2)
    h.commit_audit(aud, job2)
    h.reveal(aud.address, job2, by=aud)
    h.reveal(prov.address, job2, by=prov)
    assert books(h, prov, aud, client) == [(100 * TOKEN + 2 * (PAY - AUDIT_FEE), STAKE, 0),
                                           (100 * TOKEN + AUDIT_FEE, STAKE, 0), (498 * TOKEN, 0, 0)]
    assert h.pool() == AUDIT_FEE


def test_tiebreak_convicts_the_provider(h: Harness) -> None:
    client, prov, _ = cast(h, auditors=2)
    job = completed(h, client, prov, WRONG)
    a0, a1, r = tiebreak(h, job, WRONG, OUT, OUT)
    assert [e["upheld"] for e in events(h, r, "AuditEnded")] == [False]
    assert [(e["account"], e["amount"]) for e in events(h, r, "Slashed")] == [(prov.address, COLLATERAL)]
    assert [(e["auditor"], e["reward"]) for e in events(h, r, "AuditorPaid")] == [(a0.address, PAY), (a1.address, PAY)]
    assert [e["refund"] for e in events(h, r, "JobRefunded")] == [PAY]
    assert h.state(job) == "Refunded"
    # the provider's whole collateral is gone: a payment to each right auditor, the rest to the pool
    assert books(h, prov, a0, a1, client) == [
        (100 * TOKEN, STAKE - COLLATERAL, 0), (100 * TOKEN + PAY, STAKE, 0), (100 * TOKEN + PAY, STAKE, 0),
        (500 * TOKEN, 0, 0)]
    assert h.pool() == COLLATERAL - 2 * PAY
    h.expect_revert("InvalidState", client, "finalize", *h.done(job), jobId=job, state="Refunded")


def test_tiebreak_upholds_the_provider_and_slashes_the_lying_auditor(h: Harness) -> None:
    client, prov, _ = cast(h, auditors=2)
    job = completed(h, client, prov, OUT)
    a0, a1, r = tiebreak(h, job, OUT, WRONG, OUT)
    assert [e["upheld"] for e in events(h, r, "AuditEnded")] == [True]
    assert [(e["account"], e["amount"]) for e in events(h, r, "Slashed")] == [(a0.address, COLLATERAL)]
    # a random audit's reward comes from the pool, and is no more than a job pays into it per
    # random audit: its audit fee over the audit rate (here 100%: the audit fee)
    assert [(e["auditor"], e["reward"]) for e in events(h, r, "AuditorPaid")] == [(a1.address, AUDIT_FEE)]
    assert h.state(job) == "Settled"
    assert books(h, prov, a0, a1, client) == [
        (100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0), (100 * TOKEN, STAKE - COLLATERAL, 0),
        (100 * TOKEN + AUDIT_FEE, STAKE, 0), (499 * TOKEN, 0, 0)]
    assert h.pool() == COLLATERAL  # the liar's collateral paid the honest auditor, the job's audit fee came in


@pytest.mark.parametrize("provider_wins", [True, False], ids=["provider-wins", "client-wins"])
def test_three_outputs_go_to_the_arbiter(h: Harness, provider_wins: bool) -> None:
    client, prov, _ = cast(h, auditors=2)
    job = completed(h, client, prov, OUT)
    a0, a1, r = tiebreak(h, job, OUT, WRONG, THIRD)
    (disputed,) = events(h, r, "JobDisputed")
    assert (disputed["client"], disputed["bond"]) == (client.address, 0)
    assert h.state(job) == "Disputed" and disputed["arbitrationDeadline"] == h.market.job(job).deadline
    h.expect_revert("NotArbiter", client, "resolve", *h.done(job), False, caller=client.address)
    h.expect_revert("DeadlineNotPassed", client, "finalize", *h.done(job), jobId=job)
    decide(h, job, provider_wins)
    if provider_wins:  # both auditors were wrong: both lose their collateral to the pool
        assert h.state(job) == "Settled"
        assert books(h, prov, a0, a1, client) == [
            (100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0), (100 * TOKEN, STAKE - COLLATERAL, 0),
            (100 * TOKEN, STAKE - COLLATERAL, 0), (499 * TOKEN, 0, 0)]
        assert h.pool() == 2 * COLLATERAL + AUDIT_FEE
    else:  # both auditors said the provider was wrong: paid out of its collateral
        assert h.state(job) == "Refunded"
        assert books(h, prov, a0, a1, client) == [
            (100 * TOKEN, STAKE - COLLATERAL, 0), (100 * TOKEN + PAY, STAKE, 0), (100 * TOKEN + PAY, STAKE, 0),
            (500 * TOKEN, 0, 0)]
        assert h.pool() == COLLATERAL - 2 * PAY


def test_silent_tiebreaker_sends_the_job_to_the_arbiter(h: Harness) -> None:
    client, prov, _ = cast(h, auditors=2)
    job = completed(h, client, prov, OUT)
    a0 = start(h, job)
    h.commit_audit(a0, job, WRONG)
    h.reveal(prov.address, job)
    h.reveal(a0.address, job, WRONG)
    h.op(client, "finalize", *h.done(job))
    a1 = auditor(h, job, 1)
    h.expect_revert("DeadlineNotPassed", client, "finalize", *h.done(job), jobId=job)
    h.b.advance(TIMEOUT + 1)
    h.expect_revert("DeadlinePassed", a1, "commitAudit", job, OUT, jobId=job)
    r = h.op(client, "finalize", *h.done(job))
    assert len(events(h, r, "JobDisputed")) == 1 and h.state(job) == "Disputed"
    decide(h, job, True)  # the tiebreaker never answered: slashed with the liar
    assert books(h, a0, a1) == [(100 * TOKEN, STAKE - COLLATERAL, 0), (100 * TOKEN, STAKE - COLLATERAL, 0)]
    assert h.pool() == 2 * COLLATERAL + AUDIT_FEE


# ------------------------------------------------------------------ timeouts


def test_silent_auditor_is_slashed_and_the_result_stands(h: Harness) -> None:
    client, prov, (aud,) = cast(h)
    job = completed(h, client, prov)
    start(h, job)
    h.expect_revert("DeadlineNotPassed", client, "finalize", *h.done(job), jobId=job,
                    deadline=h.market.job(job).deadline)
    h.b.advance(TIMEOUT + 1)
    h.expect_revert("DeadlinePassed", aud, "commitAudit", job, OUT, jobId=job)
    r = h.op(client, "finalize", *h.done(job))
    assert [e["upheld"] for e in events(h, r, "AuditEnded")] == [True]
    assert [(e["account"], e["amount"]) for e in events(h, r, "Slashed")] == [(aud.address, COLLATERAL)]
    assert h.state(job) == "Settled"
    assert books(h, prov, aud, client) == [(100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0),
                                           (100 * TOKEN, STAKE - COLLATERAL, 0), (499 * TOKEN, 0, 0)]
    assert h.pool() == COLLATERAL + AUDIT_FEE


def test_auditor_that_commits_but_never_reveals_is_slashed(h: Harness) -> None:
    client, prov, (aud,) = cast(h)
    job = completed(h, client, prov)
    start(h, job)
    h.commit_audit(aud, job)
    h.reveal(prov.address, job)
    h.b.advance(TIMEOUT + 1)
    h.expect_revert("DeadlinePassed", aud, "reveal", *h.done(job), aud.address, OUT, SALT, jobId=job)
    h.op(client, "finalize", *h.done(job))
    assert h.state(job) == "Settled"
    assert books(h, prov, aud) == [(100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0), (100 * TOKEN, STAKE - COLLATERAL, 0)]
    assert h.pool() == COLLATERAL + AUDIT_FEE


def test_provider_that_never_reveals_is_held_wrong(h: Harness) -> None:
    client, prov, (aud,) = cast(h)
    job = completed(h, client, prov)
    start(h, job)
    h.commit_audit(aud, job)
    h.reveal(aud.address, job)
    assert h.state(job) == "Audited" and h.audit(job).outputs[0] == OUT
    h.b.advance(TIMEOUT + 1)
    r = h.op(client, "finalize", *h.done(job))
    assert [e["upheld"] for e in events(h, r, "AuditEnded")] == [False]
    assert [(e["auditor"], e["reward"]) for e in events(h, r, "AuditorPaid")] == [(aud.address, PAY)]
    assert h.state(job) == "Refunded"
    assert books(h, prov, aud, client) == [(100 * TOKEN, STAKE - COLLATERAL, 0), (100 * TOKEN + PAY, STAKE, 0),
                                           (500 * TOKEN, 0, 0)]
    assert h.pool() == COLLATERAL - PAY


def test_a_copied_commitment_cannot_be_opened(h: Harness) -> None:
    client, prov, (aud,) = cast(h)
    job = completed(h, client, prov)
    start(h, job)
    # the lazy auditor commits the provider's own commitment, read from JobCompleted ...
    h.op(aud, "commitAudit", job, h.results[job].commitment)
    h.reveal(prov.address, job)
    # ... but a commitment names its party: the provider's output and salt do not open it for the auditor
    h.expect_revert("InvalidReveal", aud, "reveal", *h.done(job), aud.address, OUT, SALT, jobId=job, party=aud.address)
    outsider = h.b.accounts[8]
    h.expect_revert("InvalidReveal", outsider, "reveal", *h.done(job), outsider.address, OUT, SALT,
                    party=outsider.address)
    h.b.advance(TIMEOUT + 1)
    h.op(client, "finalize", *h.done(job))
    assert books(h, aud)[0] == (100 * TOKEN, STAKE - COLLATERAL, 0)


# ------------------------------------------------------------------ requested audits


def test_requested_audit_that_upholds_the_result_costs_the_bond(backend: Backend) -> None:
    h = make_harness(backend, dispute_window=WINDOW, **{**AUDITED, "audit_bps": 0, "dispute_bond": 3 * TOKEN})
    client, prov, (aud,) = cast(h)
    job = completed(h, client, prov)
    h.expect_revert("DeadlineNotPassed", client, "startAudit", *h.done(job), jobId=job)
    r, drawn = h.dispute(client, job)
    (started,) = events(h, r, "AuditStarted")
    assert (started["requester"], started["bond"]) == (client.address, 3 * TOKEN)
    assert events(h, r, "AuditorAssigned") == []  # drawn from this block's hash, by a later finalize
    (assigned,) = events(h, drawn, "AuditorAssigned")
    assert (assigned["auditor"], assigned["round"]) == (aud.address, 0)
    assert auditor(h, job) == aud and h.balance(client.address) == 496 * TOKEN
    h.commit_audit(aud, job)
    h.reveal(prov.address, job)
    r = h.reveal(aud.address, job)
    assert [(e["auditor"], e["reward"]) for e in events(h, r, "AuditorPaid")] == [(aud.address, PAY)]
    # the auditor is paid a payment out of the bond; the provider gets the rest of it
    assert books(h, prov, aud, client) == [(100 * TOKEN + PAY - AUDIT_FEE + 2 * TOKEN, STAKE, 0),
                                           (100 * TOKEN + PAY, STAKE, 0), (496 * TOKEN, 0, 0)]
    assert h.pool() == AUDIT_FEE


def test_requested_audit_that_convicts_returns_the_bond(h: Harness) -> None:
    client, prov, _ = cast(h, auditors=2)
    job = completed(h, client, prov, WRONG)
    h.dispute(client, job)
    a0 = auditor(h, job)
    h.commit_audit(a0, job, OUT)
    h.reveal(prov.address, job, WRONG)
    h.reveal(a0.address, job, OUT)
    h.op(client, "finalize", *h.done(job))
    a1 = auditor(h, job, 1)
    h.commit_audit(a1, job, OUT)
    r = h.reveal(a1.address, job, OUT)
    assert [e["refund"] for e in events(h, r, "JobRefunded")] == [PAY + h.bond]
    assert books(h, prov, a0, a1, client) == [
        (100 * TOKEN, STAKE - COLLATERAL, 0), (100 * TOKEN + PAY, STAKE, 0), (100 * TOKEN + PAY, STAKE, 0),
        (500 * TOKEN, 0, 0)]
    assert h.pool() == COLLATERAL - 2 * PAY


def test_requested_audit_left_unanswered_returns_the_bond(h: Harness) -> None:
    client, prov, (aud,) = cast(h)
    job = completed(h, client, prov)
    h.dispute(client, job)
    h.b.advance(TIMEOUT + 1)
    h.op(client, "finalize", *h.done(job))
    assert books(h, prov, aud, client) == [(100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0),
                                           (100 * TOKEN, STAKE - COLLATERAL, 0), (499 * TOKEN, 0, 0)]
    assert h.pool() == COLLATERAL + AUDIT_FEE


# ------------------------------------------------------------------ who can be drawn


def test_a_provider_alone_in_its_class_is_not_audited_and_is_paid(h: Harness) -> None:
    client, prov, _ = cast(h, auditors=0)
    a = h.b.accounts
    h.register(a[3], cls=CLASS_B)  # another class
    job = completed(h, client, prov)
    past_window(h, job)
    r = h.op(a[9], "startAudit", *h.done(job))
    assert len(events(h, r, "AuditSkipped")) == 1 and events(h, r, "AuditorAssigned") == []
    (settled,) = events(h, r, "JobSettled")
    assert settled["providerAmount"] == PAY - AUDIT_FEE and h.state(job) == "Settled"
    assert books(h, prov)[0] == (100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0)
    assert h.pool() == AUDIT_FEE
    assert h.market.account(a[3].address).open_jobs == 0


def test_classmates_none_of_whom_can_audit_send_the_job_to_the_arbiter(h: Harness) -> None:
    """Classmates that cannot audit (another model, too little stake, unbonding), or that joined
    to push the draw past the able ones, do not let the result stand unchecked."""
    client, prov, _ = cast(h, auditors=0)
    a = h.b.accounts
    h.register(a[3], cls=CLASS_B)  # another class
    h.register(a[4], models=(MODEL_V1,))  # does not serve the model
    h.register(a[5], stake=10)  # too little free stake for the 15 HRT collateral
    h.register(a[6])
    h.op(a[6], "unbond")  # not active
    assert len(h.market.contract.functions.classMembers(CLASS_A).call()) == 4  # the provider and a[4:7]
    job = completed(h, client, prov)
    past_window(h, job)
    r = h.op(a[9], "startAudit", *h.done(job))
    assert events(h, r, "AuditSkipped") == [] and events(h, r, "AuditorAssigned") == []
    (disputed,) = events(h, r, "JobDisputed")
    assert (disputed["client"], disputed["bond"]) == (client.address, 0) and h.state(job) == "Disputed"
    assert books(h, prov)[0] == (100 * TOKEN, STAKE - COLLATERAL, 1)  # nothing paid, the collateral held
    for p in a[3:7]:  # none of them was touched
        assert h.market.account(p.address).open_jobs == 0
    decide(h, job, provider_wins=False)  # the arbiter finds it wrong: the client is refunded
    assert h.state(job) == "Refunded" and h.balance(client.address) == 500 * TOKEN
    assert books(h, prov)[0] == (100 * TOKEN, STAKE - COLLATERAL, 0)


HISTORY = Web3.to_checksum_address("0x0000F90827F1C53a10cb7A02335B175320002935")  # EIP-2935


def age(h: Harness, job: int) -> None:
    """Past the window and beyond the hash history: EIP-2935's 8,191 blocks, or BLOCKHASH's 256."""
    past_window(h, job)
    mine(h.b, 8_200 if h.b.w3.eth.get_code(HISTORY) else 300)
    assert h.market.contract.functions.auditSelected(*h.done(job)).call() is True  # whatever it drew


@contextmanager
def short_history(h: Harness) -> Iterator[None]:
    """BLOCKHASH's 256 blocks of hashes only, as on a chain without EIP-2935 (eth-tester is one):
    anvil's history contract is taken away for the test and put back, so that aging a hash takes
    300 blocks instead of 8,200 (40 s on anvil). The 8,191-block path runs in the test above."""
    code = h.b.w3.eth.get_code(HISTORY)
    if code:
        h.b.rpc("anvil_setCode", HISTORY, "0x")  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if code:
            h.b.rpc("anvil_setCode", HISTORY, code.to_0x_hex())  # type: ignore[attr-defined]


def test_a_job_aged_out_of_the_hash_history_is_audited_at_the_providers_expense(backend: Backend) -> None:
    """Once the completion block's hash is gone, every job counts as drawn, so a liar cannot wait
    its audit out. The auditor is drawn a block later (any hash the caller could see would let it
    pick), and its reward, the job's audit fee, comes out of the provider's payout, not the pool:
    an operator with a class of its own gains nothing by aging its jobs (a large one drawn on
    demand would collect the pool; undrawn ones would take back the audit fee settling pays in)."""
    h = make_harness(backend, dispute_window=WINDOW, **{**AUDITED, "audit_bps": 1_000})  # the default rate
    client, prov, (aud,) = cast(h)
    pool = h.pool()  # empty: the reward does not come out of it
    job = completed(h, client, prov, WRONG)
    age(h, job)
    r = h.op(h.b.accounts[9], "startAudit", *h.done(job))
    assert events(h, r, "AuditorAssigned") == [] and h.state(job) == "Audited"
    au = h.audit(job)
    assert (au.phase, au.draw_block, au.aged) == ("Draw", r["blockNumber"], True)
    assert h.market.account(aud.address).open_jobs == 0
    drawn = h.op(h.b.accounts[9], "finalize", *h.done(job))
    (assigned,) = events(h, drawn, "AuditorAssigned")
    assert (assigned["auditor"], assigned["round"]) == (aud.address, 0)
    h.commit_audit(aud, job, WRONG)  # the operator's own auditor agrees with the wrong output
    h.reveal(prov.address, job, WRONG)
    before = books(h, prov, aud)
    r = h.reveal(aud.address, job, WRONG)
    assert [(e["auditor"], e["reward"]) for e in events(h, r, "AuditorPaid")] == [(aud.address, AUDIT_FEE)]
    # JobSettled shows the payout before the aged audit's reward, AuditorPaid the reward
    assert [e["providerAmount"] for e in events(h, r, "JobSettled")] == [PAY - AUDIT_FEE]
    assert h.state(job) == "Settled"
    assert books(h, prov, aud) == [(before[0][0] + PAY - 2 * AUDIT_FEE, STAKE, 0), (before[1][0] + AUDIT_FEE, STAKE, 0)]
    assert h.pool() == pool + AUDIT_FEE  # the job's audit fee came in, as a settle's would, and nothing went out


def aged_draw_left_to_age(h: Harness, finalizer: LocalAccount | None = None) -> tuple[LocalAccount, LocalAccount, int, Any]:
    """A wrong job aged out of history, its provider's own audit started, the draw's hash let age
    out too, then a finalize (by `finalizer`, an outsider by default): provider, auditor, job and
    that finalize's receipt."""
    client, prov, (aud,) = cast(h)
    job = completed(h, client, prov, WRONG)
    with short_history(h):
        age(h, job)
        h.op(prov, "startAudit", *h.done(job))
        mine(h.b, 300)
        r = h.op(finalizer or h.b.accounts[9], "finalize", *h.done(job))
    return prov, aud, job, r


def test_an_aged_draw_nobody_sent_in_time_is_drawn_from_a_later_block(h: Harness) -> None:
    """A provider that starts its own aged audit and then lets the draw's hash age out too gets
    no arbiter to wait out: the next finalize moves the draw to its own block, whose hash the
    sender cannot know, and the one after draws."""
    _, aud, job, r = aged_draw_left_to_age(h)
    assert events(h, r, "AuditorAssigned") == [] and events(h, r, "JobDisputed") == []
    assert (h.state(job), h.audit(job).phase, h.audit(job).draw_block) == ("Audited", "Draw", r["blockNumber"])
    r = h.op(h.b.accounts[9], "finalize", *h.done(job))
    (assigned,) = events(h, r, "AuditorAssigned")
    assert assigned["auditor"] == aud.address


def test_a_draw_left_to_age_twice_goes_to_the_arbiter(h: Harness) -> None:
    """The draw moves to a later block once; whoever started the audit and does not like that
    block's hash cannot wait for another: aged again, the arbiter decides."""
    prov, aud, job, r = aged_draw_left_to_age(h, h.b.accounts[2])  # the provider: moved to this block
    assert prov.address == h.b.accounts[2].address
    assert h.audit(job).redrawn and events(h, r, "JobDisputed") == []
    with short_history(h):
        mine(h.b, 300)  # the provider saw the new seed and let it age out
        r = h.op(prov, "finalize", *h.done(job))
    assert events(h, r, "AuditorAssigned") == []
    (disputed,) = events(h, r, "JobDisputed")
    assert disputed["bond"] == 0 and h.state(job) == "Disputed"
    assert h.market.account(aud.address).open_jobs == 0
    decide(h, job, provider_wins=False)
    assert h.state(job) == "Refunded"


def test_an_aged_job_of_a_provider_alone_in_its_class_is_paid_unaudited(h: Harness) -> None:
    client, prov, _ = cast(h, auditors=0)
    job = completed(h, client, prov)
    with short_history(h):
        age(h, job)
        h.op(h.b.accounts[9], "startAudit", *h.done(job))
        r = h.op(h.b.accounts[9], "finalize", *h.done(job))
    assert len(events(h, r, "AuditSkipped")) == 1 and h.state(job) == "Settled"
    assert books(h, prov)[0] == (100 * TOKEN + PAY - AUDIT_FEE, STAKE, 0)
    assert h.audit(job).phase == "None" and h.audit(job).aged is False  # its audit record is gone


def test_auditors_are_drawn_only_in_the_class_among_servers(h: Harness) -> None:
    client, prov, (same,) = cast(h)
    a = h.b.accounts
    h.register(a[4], cls=CLASS_B)
    h.register(a[5], models=(MODEL_V1,))
    for _ in range(3):
        job = completed(h, client, prov)
        assert start(h, job) == same
        h.commit_audit(same, job)
        h.reveal(same.address, job)
        h.reveal(prov.address, job)
    assert all(h.market.account(p.address).open_jobs == 0 for p in a[4:6])


def join_sybils(h: Harness) -> list[LocalAccount]:
    """Five more providers join class A, able to audit: the accounts of someone who, knowing a
    seed's hash, would add members until a draw that read the list as it stands landed on one."""
    sybils = list(h.b.accounts[4:9])
    for s in sybils:
        h.register(s)
    assert len(h.market.contract.functions.classMembers(CLASS_A).call()) == 7
    return sybils


def test_providers_that_join_after_the_completion_block_are_never_drawn_for_it(h: Harness) -> None:
    """A random audit reads the class's list as it stood at the completion block. Read as it
    stands at startAudit, each of these draws would land on one of the five late joiners 5
    times in 7 (all four missing them: 1 run in 150)."""
    client, prov, (honest,) = cast(h)
    jobs = [completed(h, client, prov) for _ in range(4)]
    sybils = join_sybils(h)
    for job in jobs:
        assert start(h, job) == honest
    assert all(h.market.account(s.address).open_jobs == 0 for s in sybils)


def test_providers_that_join_after_a_dispute_are_never_drawn_for_it(h: Harness) -> None:
    """A requested audit's auditor is drawn by `finalize` from the dispute block's hash, among the
    members of that block (three draws that would all miss five late joiners: 1 run in 40)."""
    client, prov, (honest,) = cast(h)
    jobs = [completed(h, client, prov) for _ in range(3)]
    for job in jobs:
        h.op(client, "dispute", *h.done(job))
    sybils = join_sybils(h)
    for job in jobs:
        r = h.op(h.b.accounts[9], "finalize", *h.done(job))
        (assigned,) = events(h, r, "AuditorAssigned")
        assert assigned["auditor"] == honest.address
    assert all(h.market.account(s.address).open_jobs == 0 for s in sybils)


def test_entries_of_members_that_left_hand_their_turn_to_nobody(h: Harness) -> None:
    """An operator that moves one account in and out of the class leaves a stretch of entries
    behind it. A draw that walked on from a left entry to the next would give the account after
    the stretch every draw that starts in it (the review that found this measured 37 of 40);
    each look at a fresh place gives it its share. On chain: every draw is the rule's."""
    client, prov, (honest, sybil) = cast(h, auditors=2)
    for _ in range(15):  # 15 round trips: 15 left entries, then the sybil's live one
        h.op(sybil, "setReproClass", CLASS_B)
        h.op(sybil, "setReproClass", CLASS_A)
    entries = [prov.address, honest.address] + [sybil.address] * 16
    left = [False, False] + [True] * 15 + [False]

    def draw(seed: bytes) -> str | None:  # the rule (model.probes), over this list
        return next((entries[i] for i in probes(seed, len(entries)) if not left[i] and entries[i] != prov.address), None)

    for _ in range(3):
        job = completed(h, client, prov)
        block = h.results[job].block
        expected = draw(keccak(abi_encode(["bytes32", "uint256", "string"],
                                          [bytes(h.b.w3.eth.get_block(block)["hash"]), job, "draw"])))
        past_window(h, job)
        r = h.op(h.b.accounts[9], "startAudit", *h.done(job))
        if expected is None:  # all 32 looks at left entries or the provider: 1 in 44 here
            assert events(h, r, "AuditorAssigned") == [] and h.state(job) == "Disputed"
            decide(h, job, provider_wins=True)
            continue
        (assigned,) = events(h, r, "AuditorAssigned")
        assert assigned["auditor"] == expected
        drawn = acct_of(h, expected)
        h.commit_audit(drawn, job)
        h.reveal(drawn.address, job)
        h.reveal(prov.address, job)
    # the rule over many seeds: the sybil's share is its share of live auditors (1 of 2, less the
    # 1 in 44 that go to the arbiter), where walking on from the drawn place gave it 16 of 18
    wins: Counter[str | None] = Counter()
    walk: Counter[str] = Counter()
    for k in range(4000):
        seed = keccak(k.to_bytes(32, "big"))
        wins[draw(seed)] += 1
        i = int.from_bytes(seed, "big") % len(entries)
        while left[i] or entries[i] == prov.address:
            i = (i + 1) % len(entries)
        walk[entries[i]] += 1
    assert 1800 < wins[sybil.address] < 2150 and wins[None] < 200 and walk[sybil.address] > 3400


def test_a_provider_that_leaves_keeps_its_place_in_the_list(h: Harness) -> None:
    """Leaving marks the entry instead of moving the last member into it (which would reorder
    the list under draws whose seed is known); the view lists who is in, in joining order."""
    client, prov, (x, y) = cast(h, auditors=2)
    members = h.market.contract.functions.classMembers
    assert members(CLASS_A).call() == [prov.address, x.address, y.address]
    h.op(x, "setReproClass", CLASS_B)
    assert members(CLASS_A).call() == [prov.address, y.address]
    h.op(x, "setReproClass", CLASS_A)  # back, at the end
    assert members(CLASS_A).call() == [prov.address, y.address, x.address]
    job = completed(h, client, prov)
    assert start(h, job) in (x, y)


# ------------------------------------------------------------------ randomness


def test_the_draw_waits_for_the_completion_block_to_be_mined(h: Harness) -> None:
    client, prov, _ = cast(h)
    job = completed(h, client, prov)
    block = h.results[job].block
    fn = h.market.contract.functions.auditSelected(*h.done(job))
    assert h.b.w3.eth.block_number == block
    with pytest.raises(Exception) as info:  # noqa: B017  (decoded just below)
        fn.call()  # as seen from the completion block: its hash is not known yet
    from hearth.chain.revert import as_contract_error

    err = as_contract_error(info.value)
    assert isinstance(err, ContractError) and err.name == "RandomnessNotReady", info.value
    assert (err.error_args["blockNumber"], err.error_args["currentBlock"]) == (block, block)
    h.b.advance(1)
    assert fn.call() is True  # auditBps 10,000


def test_never_selected_without_audits(backend: Backend) -> None:
    h = make_harness(backend, dispute_window=WINDOW, **{**AUDITED, "audit_bps": 0})
    client, prov, _ = cast(h)
    job = completed(h, client, prov)
    assert h.market.contract.functions.auditSelected(*h.done(job)).call() is False
    past_window(h, job)
    h.expect_revert("NotSelected", client, "startAudit", *h.done(job), jobId=job)
    h.settle(job)
    assert h.state(job) == "Settled"


def test_commitments_name_the_party(h: Harness) -> None:
    assert result_commitment(1, h.b.accounts[1].address, OUT, SALT) != result_commitment(
        1, h.b.accounts[2].address, OUT, SALT)
