"""An independent model of JobMarket's money, written from the rules rather than the code: who
holds what, in which state each job (and its audit) is, and when each of its deadlines passes.
The state-machine test (test_properties.py) drives the contract and this model side by side.
Provider offers are the model's too: which refusal (if any) a job posted under an offer meets,
and which nonce voids which offer.

Randomness is the chain's: whether a job is drawn for audit and which auditor is drawn come from
block hashes, so the test reads the hash from the chain; the model keeps each class's list of
members as the rules define it (in joining order, with the block each joined in, a provider that
leaves keeping its place) and names the one auditor the rules draw from that hash (or none),
which the chain must have drawn.

Time is counted in jumps of JUMP seconds; every window and timeout is a multiple of 500 s that
no number of jumps equals, so "before" and "after" a deadline are never ambiguous, whatever few
seconds the chain's own clock adds between blocks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from hearth.chain.types import Completion, JobTerms
from hearth.dev.deploy import MarketParams
from hearth.formats.offers import Offer
from hearth.formats.units import TOKEN

JUMP = 1_500
MAX_DRAW = 32  # places an auditor draw looks at (JobAudits.MAX_DRAW)


def probes(seed: bytes, n: int) -> list[int]:
    """The places in a list of n entries that a draw from `seed` looks at, in order: the i-th is
    keccak256(abi.encode(seed, i)) mod n (none in an empty list)."""
    if n == 0:
        return []
    return [int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [seed, i])), "big") % n
            for i in range(MAX_DRAW)]

PARAMS = MarketParams(
    collateral_bps=1000, min_collateral=TOKEN // 10, dispute_window=1_000, dispute_bond=TOKEN // 2,
    arbitration_timeout=1_000, max_completion_window=2_000, unbonding_delay=1_000, min_stake=10 * TOKEN,
    audit_bps=5_000, audit_fee_bps=1_000, audit_timeout=1_000,
)
OPEN = ("Posted", "Claimed", "Completed", "Audited", "Disputed")
LOCKED = ("Claimed", "Completed", "Audited", "Disputed")
FINAL = ("Settled", "Cancelled", "Expired", "Refunded")
ZERO = "0x0000000000000000000000000000000000000000"


@dataclass
class Audit:
    """A running audit as the model sees it."""

    requester: str | None
    bond: int
    auditors: list[str]
    commits: list[bytes | None] = field(default_factory=lambda: [None, None])  # the output each committed to
    outputs: list[bytes | None] = field(default_factory=lambda: [None, None])  # revealed
    provider_output: bytes | None = None
    round: int = 0
    phase: str = "Commit"
    aged: bool = False  # drawn because the completion block's hash had left history (the state machine never waits that long)


@dataclass
class Job:
    """A job as the model sees it."""

    terms: JobTerms
    claim_in: int
    state: str = "Posted"
    since: int = 0  # model time of the event that started the current deadline
    result: Completion | None = None
    output: bytes = b""  # what the provider committed to at complete
    audit: Audit | None = None
    offered: bool = False  # posted under an offer (the OFFERED bit of its salt): only such a job can be declined


@dataclass
class SignedOffer:
    """An offer as the model sees it: signed at model time `signed_at`, void `lifetime` seconds
    later (its expiry is the chain's time then plus the lifetime), and whether its signature is
    its provider's over exactly these fields."""

    offer: Offer
    signed_at: int
    lifetime: int
    genuine: bool = True


@dataclass
class Model:
    """Balances, stakes, provider records, jobs and audits, moved by the market's rules."""

    params: MarketParams
    fee_bps: int
    fee_recipient: str
    now: int = 0
    pool: int = 0
    wallet: dict[str, int] = field(default_factory=dict)
    balance: Counter[str] = field(default_factory=Counter)
    stake: Counter[str] = field(default_factory=Counter)
    open_jobs: Counter[str] = field(default_factory=Counter)
    status: dict[str, str] = field(default_factory=dict)
    unbond_at: dict[str, int] = field(default_factory=dict)
    serves: dict[str, set[bytes]] = field(default_factory=dict)
    cls: dict[str, bytes] = field(default_factory=dict)
    # per class: [account, block it joined in, left] in joining order
    members: dict[bytes, list[list[Any]]] = field(default_factory=dict)
    offer_nonce: Counter[str] = field(default_factory=Counter)
    jobs: dict[int, Job] = field(default_factory=dict)
    paid: Counter[int] = field(default_factory=Counter)

    # ---------------------------------------------------------------- reads
    def collateral(self, payment: int) -> int:
        return max(payment * self.params.collateral_bps // 10_000, self.params.min_collateral)

    def escrow(self) -> int:
        """What the market holds for open jobs: payments, the claimer's collateral, the drawn
        auditors' collateral and the bonds of requested audits."""
        total = 0
        for j in self.jobs.values():
            c = self.collateral(j.terms.payment)
            if j.state in OPEN:
                total += j.terms.payment
            if j.state in LOCKED:
                total += c
            if j.state in ("Audited", "Disputed") and j.audit is not None:
                total += j.audit.bond + c * len(j.audit.auditors)
        return total

    def elapsed(self, job: Job) -> int:
        return self.now - job.since

    def window(self, job: Job) -> int:
        """The length of the job's current deadline window."""
        p = self.params
        return {"Posted": job.claim_in, "Claimed": job.terms.completion_window, "Completed": p.dispute_window,
                "Audited": p.audit_timeout, "Disputed": p.arbitration_timeout}[job.state]

    def open_window(self, job: Job) -> bool:
        return self.elapsed(job) < self.window(job)

    def can_claim(self, provider: str, job: Job) -> bool:
        t = job.terms
        return (self.status.get(provider) == "Active" and t.model_key in self.serves.get(provider, set())
                and self.stake[provider] >= self.collateral(t.payment)
                and t.provider in (provider, ZERO))

    def can_audit(self, job: Job, who: str, exclude: str | None = None) -> bool:
        """Whether `who` may audit `job`: another active provider of its provider's class that
        serves the model and has the collateral free."""
        t = job.terms
        return (self.status.get(who) == "Active" and who not in (t.provider, exclude)
                and self.cls.get(who) == self.cls[t.provider] and t.model_key in self.serves.get(who, set())
                and self.stake[who] >= self.collateral(t.payment))

    def auditor_for(self, job: Job, seed: bytes, seed_block: int, exclude: str | None = None) -> str | None:
        """The auditor the draw names: among the class's list as it stood at the seed block (its
        first n entries, those that joined by then), the first of MAX_DRAW places drawn afresh (see
        probe) whose entry has not left and can audit; None if none of them can."""
        listed = [e for e in self.members.get(self.cls[job.terms.provider], []) if e[1] <= seed_block]
        for place in probes(seed, len(listed)):
            who, _, left = listed[place]
            if not left and self.can_audit(job, who, exclude):
                return str(who)
        return None

    def alone(self, provider: str) -> bool:
        """Whether nobody else is in the provider's class now."""
        return sum(c == self.cls[provider] for c in self.cls.values()) < 2

    def offer_refusal(self, client: str, so: SignedOffer, provider: str, model_key: bytes, payment: int,
                      window: int) -> tuple[str, str, dict[str, Any]] | None:
        """(what, error, its arguments) that postJobWithOffer meets for this job under this
        offer, in the market's order (the offer, then the post, then the assignment); None: the
        job is posted and assigned."""
        o, p = so.offer, so.offer.provider
        # the provider's class and models are not checked: its signature vouches for them, and
        # changing either raises its nonce (register, setReproClass, removeModels)
        if provider != p or model_key != o.model_key or not so.genuine:
            return "offer invalid", "InvalidOffer", {"provider": p}
        expired = self.now - so.signed_at > so.lifetime
        if expired or o.nonce != self.offer_nonce[p]:  # withdrawn, or signed for a nonce not current
            return ("offer expired" if expired else "offer withdrawn"), "OfferVoid", {
                "provider": p, "expiry": o.expiry, "nonce": o.nonce}
        if payment != o.price or window < o.completion_window:
            return "offer terms unmet", "OfferTermsUnmet", {
                "payment": payment, "price": o.price, "completionWindow": window, "offerWindow": o.completion_window}
        if self.open_jobs[p] >= o.max_open_jobs:
            return "provider busy", "ProviderBusy", {"provider": p, "openJobs": self.open_jobs[p],
                                                     "maxOpenJobs": o.max_open_jobs}
        if self.balance[client] < payment:
            return "offer job above balance", "InsufficientBalance", {
                "account": client, "balance": self.balance[client], "needed": payment}
        if self.status.get(p) != "Active":
            return "offer of an inactive provider", "ProviderNotActive", {"provider": p}
        if self.stake[p] < self.collateral(payment):
            return "offer job above free stake", "InsufficientStake", {
                "provider": p, "freeStake": self.stake[p], "needed": self.collateral(payment)}
        return None

    def can_decline(self, job: Job) -> bool:
        """Within the first half of the completion window: decline's last moment is the deadline
        less half the window (rounded down)."""
        w = job.terms.completion_window
        return job.state == "Claimed" and job.offered and self.elapsed(job) <= w - w // 2

    def in_state(self, *states: str) -> list[int]:
        return [i for i, j in self.jobs.items() if j.state in states]

    # ---------------------------------------------------------------- moves
    def post(self, job_id: int, terms: JobTerms, claim_in: int) -> None:
        self.balance[terms.client] -= terms.payment
        self.jobs[job_id] = Job(terms, claim_in, "Posted", self.now)

    def claim(self, job_id: int, provider: str) -> None:
        j = self.jobs[job_id]
        self.stake[provider] -= self.collateral(j.terms.payment)
        self.open_jobs[provider] += 1
        j.terms = j.terms.with_provider(provider)
        j.state, j.since = "Claimed", self.now

    def decline(self, job_id: int) -> None:
        """The claimer gives the job back: the client gets the payment, the claimer its collateral."""
        j = self.jobs[job_id]
        t = j.terms
        self.balance[t.client] += t.payment
        self.stake[t.provider] += self.collateral(t.payment)
        self.open_jobs[t.provider] -= 1
        j.state = "Cancelled"

    def move(self, job_id: int, state: str) -> None:
        j = self.jobs[job_id]
        j.state, j.since = state, self.now

    def pay_provider(self, job_id: int, extra: int = 0, less: int = 0) -> None:
        """Settle: payment less fee and audit fee (less `less`, plus `extra`) to the provider, the
        fee to the job's recipient, the audit fee to the pool, the collateral back to stake."""
        j = self.jobs[job_id]
        t = j.terms
        fee = t.payment * t.fee_bps // 10_000
        audit_fee = t.payment * self.params.audit_fee_bps // 10_000
        self.balance[t.provider] += t.payment - fee - audit_fee - less + extra
        self.balance[t.fee_recipient] += fee
        self.pool += audit_fee
        self.stake[t.provider] += self.collateral(t.payment)
        self.open_jobs[t.provider] -= 1
        self.paid[job_id] += 1
        j.state, j.audit = "Settled", None

    def cancel_or_expire(self, job_id: int, state: str) -> None:
        """Cancel or expire: the client gets its payment back, and up to the payment again out
        of a no-show claimer's collateral (the rest goes back to the claimer's stake)."""
        j = self.jobs[job_id]
        t = j.terms
        back = t.payment
        if j.state == "Claimed":
            c = self.collateral(t.payment)
            slashed = min(c, t.payment)
            back += slashed
            self.stake[t.provider] += c - slashed
            self.open_jobs[t.provider] -= 1
        self.balance[t.client] += back
        j.state = state

    def join(self, provider: str, cls: bytes, block: int) -> None:
        """The provider joins a class (registering, or moving from its old one)."""
        self.leave(provider)
        self.cls[provider] = cls
        self.members.setdefault(cls, []).append([provider, block, False])

    def leave(self, provider: str) -> None:
        """The provider leaves its class; its entry stays in the list, marked."""
        cls = self.cls.pop(provider, None)
        if cls is not None:
            entry = next(e for e in self.members[cls] if e[0] == provider and not e[2])
            entry[2] = True

    def draw(self, job_id: int, auditor: str | None, seed: bytes, seed_block: int, exclude: str | None = None) -> None:
        """The chain drew `auditor` (None: nobody) for the job: it must be the one the rules
        draw; its collateral is locked."""
        j = self.jobs[job_id]
        expected = self.auditor_for(j, seed, seed_block, exclude)
        assert auditor == expected, f"job {job_id}: {auditor} drawn, the rules draw {expected}"
        if auditor is not None:
            self.stake[auditor] -= self.collateral(j.terms.payment)
            self.open_jobs[auditor] += 1

    def open_audit(self, job_id: int, auditor: str | None, requester: str | None, bond: int,
                   draw: bool = False) -> None:
        """An audit with its first auditor; none: to the arbiter, or (`draw`, a dispute) drawn
        by a later finalize."""
        j = self.jobs[job_id]
        j.audit = Audit(requester, bond, [auditor] if auditor else [], phase="Draw" if draw else "Commit")
        self.move(job_id, "Audited" if auditor or draw else "Disputed")

    def conclude(self, job_id: int, upheld: bool, bond_forfeit: bool) -> None:
        """End an audit or arbitration (see IJobMarket.resolve and JobAudits._conclude's rules)."""
        j = self.jobs[job_id]
        au = j.audit
        assert au is not None
        t = j.terms
        c = self.collateral(t.payment)
        fund = (au.bond if bond_forfeit else 0) if upheld else c
        less = 0  # an aged audit's rewards, out of the provider's payout
        for who, out in zip(au.auditors, au.outputs, strict=False):
            self.open_jobs[who] -= 1
            if out is None or (out == au.provider_output) != upheld:
                self.pool += c  # wrong or silent: its collateral goes to the pool
                continue
            reward = t.payment
            p = self.params
            if upheld and au.requester is None and au.aged:  # the provider pays it: its audit fee
                audit_fee = t.payment * p.audit_fee_bps // 10_000
                net = t.payment - t.payment * t.fee_bps // 10_000 - audit_fee
                reward = min(audit_fee, net - less)
                less += reward
            elif upheld and au.requester is None:  # no more than a job pays into the pool per random audit
                reward = min(reward, t.payment * p.audit_fee_bps // p.audit_bps, self.pool)
                self.pool -= reward
            else:
                reward = min(reward, fund)
                fund -= reward
            self.stake[who] += c
            self.balance[who] += reward
        if upheld:
            if not bond_forfeit and au.requester is not None:
                self.balance[au.requester] += au.bond
            self.pay_provider(job_id, extra=fund, less=less)
            return
        self.open_jobs[t.provider] -= 1
        self.pool += fund
        self.balance[t.client] += t.payment + au.bond
        j.state, j.audit = "Refunded", None
