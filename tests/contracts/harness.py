"""A JobMarket under test: deploy, act as clients and providers, and check the balance
invariant after every operation."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from eth_utils import keccak
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.chain.types import PHASES, ZERO_ADDRESS, AuditRecord, Completion, JobTerms, result_commitment
from hearth.dev.compile import artifact_path
from hearth.dev.deploy import MarketParams
from hearth.dev.deploy import deploy_contract as dev_deploy_contract
from hearth.errors import ContractError
from hearth.formats import offers
from hearth.formats.offers import Offer
from hearth.formats.units import SUPPLY, TOKEN

from tests.backends import Backend

FIXED_GAS = 3_000_000  # skips gas estimation; reverts are decoded from the receipt
OPEN_STATES = ("Posted", "Claimed", "Completed", "Audited", "Disputed")
# states in which the claimer's collateral is locked
LOCKED_STATES = ("Claimed", "Completed", "Audited", "Disputed")
MODEL_V0 = bytes.fromhex("1220") + keccak(b"model-v0")
MODEL_V1 = bytes.fromhex("01551220") + keccak(b"model-v1")
SPEC = bytes.fromhex("1220") + keccak(b"spec")
RESULT = bytes.fromhex("01701220") + keccak(b"result")
CLASS_A = keccak(b"repro-class-a")
CLASS_B = keccak(b"repro-class-b")
OUT = b"\x11" * 32  # the honest output hash
WRONG = b"\x66" * 32  # a wrong one
SALT = b"\x5a" * 32


def phase(name: str) -> int:
    """An InvalidPhase error's `phase` argument (not decoded to a name like InvalidState's)."""
    return PHASES.index(name)


def artifact(name: str) -> dict[str, Any]:
    """A committed artifact, the test-only contracts' included."""
    data: dict[str, Any] = json.loads(artifact_path(name).read_text())
    return data


def deploy_contract(b: Backend, sender: Sender, name: str, *args: Any) -> str:
    """Deploy one contract; returns its address."""
    return str(dev_deploy_contract(b.w3, sender, artifact(name), *args, gas=10_000_000)["contractAddress"])


@dataclass
class Harness:
    """One deployed market and its actors."""

    b: Backend
    market: Market
    arbiter_address: str
    owner: LocalAccount
    senders: dict[str, Sender]
    params: MarketParams
    jobs: dict[int, JobTerms] = field(default_factory=dict)
    results: dict[int, Completion] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)

    # ---------------------------------------------------------------- actors
    def s(self, acct: LocalAccount) -> Sender:
        if acct.address not in self.senders:
            self.senders[acct.address] = Sender(self.b.w3, acct, fixed_gas=FIXED_GAS)
        self.accounts.add(acct.address)
        return self.senders[acct.address]

    def op(self, acct: LocalAccount, name: str, *args: Any) -> Any:
        """Send a JobMarket transaction as `acct`, then check the invariant."""
        receipt = self.s(acct).transact(self.market.fn(name, *args))
        self.check_invariant()
        return receipt

    def dispute(self, client: LocalAccount, job_id: int) -> tuple[Any, Any]:
        """The client's dispute, then (anyone's, in the next block) the `finalize` that draws its
        auditor from the dispute block's hash; both receipts."""
        r = self.op(client, "dispute", *self.done(job_id))
        au = self.audit(job_id)
        assert (au.phase, au.draw_block, au.auditors[0]) == ("Draw", r["blockNumber"], ZERO_ADDRESS)
        return r, self.op(self.owner, "finalize", *self.done(job_id))

    def expect_revert(self, error: str, acct: LocalAccount, name: str, *args: Any, **error_args: Any) -> ContractError:
        """The call must revert with exactly this custom error (and these arguments)."""
        with pytest.raises(ContractError) as info:
            self.s(acct).transact(self.market.fn(name, *args))
        assert info.value.name == error, f"expected {error}, got {info.value}"
        for k, v in error_args.items():
            assert info.value.error_args[k] == v, f"{error}.{k}: expected {v}, got {info.value.error_args[k]}"
        self.s(acct).resync()
        self.check_invariant()
        return info.value

    def fund(self, acct: LocalAccount, tokens: int = 1000, deposit: int = 500) -> None:
        """Give `acct` tokens and deposit some into the market."""
        self.s(self.owner).transact(self.market.token.functions.transfer(acct.address, tokens * TOKEN))
        self.s(acct).transact(self.market.token.functions.approve(self.market.address, 2**256 - 1))
        if deposit:
            self.op(acct, "deposit", deposit * TOKEN)

    def register(self, acct: LocalAccount, stake: int = 100, models: tuple[bytes, ...] = (MODEL_V0,),
                 cls: bytes = CLASS_A) -> None:
        """Fund and register a provider in reproducibility class `cls`."""
        self.fund(acct, 1000, stake + 100)
        self.op(acct, "register", stake * TOKEN, TOKEN // 100, cls, list(models))

    def post(self, client: LocalAccount, payment: int = TOKEN, claim_in: int = 3600, window: int = 600,
             provider: str = ZERO_ADDRESS, model: bytes = MODEL_V0, spec: bytes = SPEC) -> int:
        """Post a job; returns its id (terms remembered)."""
        deadline = self.b.now() + claim_in
        r = self.s(client).transact(
            self.market.fn("postJob", self.market.post_params(model, spec, payment, deadline, window, provider))
        )
        job_id = self.market.job_posted_id(r)
        self.jobs[job_id] = self.market.posted(job_id).terms
        self.check_invariant()
        return job_id

    def terms(self, job_id: int) -> tuple[Any, ...]:
        return self.jobs[job_id].as_tuple()

    # ---------------------------------------------------------------- offers
    def offer(self, provider: LocalAccount, model: bytes = MODEL_V0, price: int = TOKEN, window: int = 600,
              max_open: int = 4, expires_in: int = 3600, nonce: int | None = None, cls: bytes = CLASS_A,
              signer: LocalAccount | None = None) -> Offer:
        """An offer of `provider`, signed by it (or by `signer`'s key, over the same digest), with
        its current offer nonce unless `nonce` is given."""
        if nonce is None:
            nonce = int(self.market.contract.functions.offerNonce(provider.address).call())
        o = Offer(provider.address, keccak(model), cls, price, window, max_open, self.b.now() + expires_in, nonce)
        if signer is None:
            return offers.sign(provider, o, self.chain_id, self.market.address)
        sig = signer.unsafe_sign_hash(Hash32(offers.digest(o, self.chain_id, self.market.address))).signature
        return replace(o, signature=bytes(sig))

    @property
    def chain_id(self) -> int:
        return int(self.b.w3.eth.chain_id)

    def offer_args(self, offer: Offer, payment: int | None = None, window: int = 600, model: bytes = MODEL_V0,
                   provider: str | None = None, claim_in: int = 3600, spec: bytes = SPEC) -> tuple[Any, ...]:
        """postJobWithOffer's arguments: a job for `offer`'s provider (or `provider`), paying
        the offer's price unless `payment` says otherwise."""
        payment = offer.price if payment is None else payment
        p = self.market.post_params(model, spec, payment, self.b.now() + claim_in, window,
                                    offer.provider if provider is None else provider)
        return p, offer.as_tuple(), offer.signature

    def post_with_offer(self, client: LocalAccount, offer: Offer, payment: int | None = None, window: int = 600,
                        model: bytes = MODEL_V0) -> tuple[int, Any]:
        """Post a job under `offer`, posted and claimed in one transaction: its id (terms
        remembered) and the receipt."""
        r = self.s(client).transact(self.market.fn("postJobWithOffer",
                                                   *self.offer_args(offer, payment, window, model)))
        job_id = self.market.job_posted_id(r)
        self.jobs[job_id] = self.market.posted(job_id).terms
        self.check_invariant()
        return job_id, r

    def claim(self, provider: LocalAccount, job_id: int) -> Any:
        r = self.op(provider, "claim", job_id, self.terms(job_id))
        self.jobs[job_id] = self.jobs[job_id].with_provider(provider.address)
        return r

    def complete(self, provider: LocalAccount, job_id: int, output_hash: bytes = OUT, salt: bytes = SALT,
                 commitment: bytes | None = None) -> Any:
        """Complete with a commitment to `output_hash` (or this `commitment`); remembers the
        job's Completion for the calls after it."""
        if commitment is None:
            commitment = result_commitment(job_id, provider.address, output_hash, salt)
        r = self.op(provider, "complete", job_id, self.terms(job_id), RESULT, commitment)
        self.results[job_id] = Completion(commitment, int(r["blockNumber"]))
        return r

    def result(self, job_id: int) -> tuple[bytes, int]:
        """The job's Result in ABI form."""
        return self.results[job_id].as_tuple()

    def done(self, job_id: int) -> tuple[Any, ...]:
        """(jobId, terms, result): the first arguments of every call on a completed job."""
        return job_id, self.terms(job_id), self.result(job_id)

    def settle(self, job_id: int, by: LocalAccount | None = None) -> Any:
        """Settle after the window (advancing past it)."""
        self.b.advance(self.dispute_window + 1)
        return self.op(by or self.owner, "settle", *self.done(job_id))

    # ---------------------------------------------------------------- audits
    def audit(self, job_id: int) -> AuditRecord:
        return self.market.audit(job_id)

    def pool(self) -> int:
        return int(self.market.contract.functions.auditPool().call())

    def commit_audit(self, auditor: LocalAccount, job_id: int, output_hash: bytes = OUT,
                     salt: bytes = SALT) -> Any:
        return self.op(auditor, "commitAudit", job_id, result_commitment(job_id, auditor.address, output_hash, salt))

    def reveal(self, party: str, job_id: int, output_hash: bytes = OUT, salt: bytes = SALT,
               by: LocalAccount | None = None) -> Any:
        """Open `party`'s commitment (sent by `by`, anyone: the owner by default)."""
        return self.op(by or self.owner, "reveal", *self.done(job_id), party, output_hash, salt)

    @property
    def dispute_window(self) -> int:
        return self.params.dispute_window

    @property
    def bond(self) -> int:
        return self.params.dispute_bond

    # ---------------------------------------------------------------- views
    def state(self, job_id: int) -> str:
        return self.market.job(job_id).state

    def balance(self, addr: str) -> int:
        return self.market.account(addr).balance

    def stake(self, addr: str) -> int:
        return self.market.account(addr).stake

    def collateral(self, payment: int) -> int:
        return max(payment * self.params.collateral_bps // 10_000, self.params.min_collateral)

    def check_invariant(self) -> None:
        """Market token balance == internal balances + stakes + audit pool + escrow of open jobs
        (payment; the claimer's collateral once claimed; while audited or disputed, the drawn
        auditors' collateral and the requester's bond)."""
        m = self.market
        held = m.token_balance(m.address)
        owed = self.pool()
        for a in self.accounts | {self.owner.address}:
            acct = m.account(a)
            owed += acct.balance + acct.stake
        for job_id, terms in self.jobs.items():
            st = self.state(job_id)
            collateral = self.collateral(terms.payment)
            if st in OPEN_STATES:
                owed += terms.payment
            if st in LOCKED_STATES:
                owed += collateral
            if st in ("Audited", "Disputed"):
                au = self.audit(job_id)
                owed += au.bond + collateral * sum(a != ZERO_ADDRESS for a in au.auditors)
        assert held == owed, f"invariant broken: market holds {held}, owes {owed}"


# The contract tests' market: a 1 s window (settle in the next block after a jump), 10%
# collateral, no random audits and no audit fee (test_audits.py sets its own).
TEST_PARAMS = MarketParams(collateral_bps=1000, dispute_window=1, audit_bps=0, audit_fee_bps=0)


def make_harness(b: Backend, dispute_window: int = 1, arbiter: str | None = None, **params: int) -> Harness:
    """Deploy token, arbiter and market on `b` (TEST_PARAMS, with these changes)."""
    p = replace(TEST_PARAMS, dispute_window=dispute_window, **params)
    owner = b.accounts[0]
    senders: dict[str, Sender] = {}
    s = Sender(b.w3, owner, fixed_gas=FIXED_GAS)
    senders[owner.address] = s
    token = deploy_contract(b, s, "HearthToken", owner.address, SUPPLY)
    arb = arbiter or deploy_contract(b, s, "SimpleArbiter", owner.address)
    market = deploy_contract(b, s, "JobMarket", token, arb, p.as_config())
    m = Market(b.w3, market, token, int(b.w3.eth.block_number))
    return Harness(b, m, arb, owner, senders, p)


Factory = Callable[..., Harness]
