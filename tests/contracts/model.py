"""An independent model of JobMarket's money, written from the rules rather than the code: who
holds what, in which state each job is, and when each of its deadlines passes. The state-machine
test (test_properties.py) drives the contract and this model side by side.

Time is counted in jumps of JUMP seconds; every window and timeout is a multiple of 500 s that
no number of jumps equals, so "before" and "after" a deadline are never ambiguous, whatever few
seconds the chain's own clock adds between blocks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hearth.chain.types import JobTerms
from hearth.dev.deploy import MarketParams
from hearth.formats.units import TOKEN

JUMP = 1_500
PARAMS = MarketParams(
    collateral_bps=1000, min_collateral=TOKEN // 10, dispute_window=2_000, dispute_bond=TOKEN // 2,
    arbitration_timeout=1_000, max_completion_window=2_000, unbonding_delay=1_000, min_stake=10 * TOKEN,
)
OPEN = ("Posted", "Claimed", "Completed", "Disputed")
FINAL = ("Settled", "Cancelled", "Expired", "Refunded")


@dataclass
class Job:
    """A job as the model sees it."""

    terms: JobTerms
    claim_in: int
    state: str = "Posted"
    since: int = 0  # model time of the event that started the current deadline


@dataclass
class Model:
    """Balances, stakes, provider records and jobs, moved by the market's rules."""

    params: MarketParams
    fee_bps: int
    fee_recipient: str
    now: int = 0
    wallet: dict[str, int] = field(default_factory=dict)
    balance: Counter[str] = field(default_factory=Counter)
    stake: Counter[str] = field(default_factory=Counter)
    open_jobs: Counter[str] = field(default_factory=Counter)
    status: dict[str, str] = field(default_factory=dict)
    unbond_at: dict[str, int] = field(default_factory=dict)
    serves: dict[str, set[bytes]] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)
    paid: Counter[int] = field(default_factory=Counter)

    # ---------------------------------------------------------------- reads
    def collateral(self, payment: int) -> int:
        return max(payment * self.params.collateral_bps // 10_000, self.params.min_collateral)

    def escrow(self) -> int:
        """What the market holds for open jobs: payments, collateral once claimed, bonds."""
        total = 0
        for j in self.jobs.values():
            if j.state in OPEN:
                total += j.terms.payment
            if j.state in ("Claimed", "Completed", "Disputed"):
                total += self.collateral(j.terms.payment)
            if j.state == "Disputed":
                total += self.params.dispute_bond
        return total

    def elapsed(self, job: Job) -> int:
        return self.now - job.since

    def window(self, job: Job) -> int:
        """The length of the job's current deadline window."""
        p = self.params
        return {"Posted": job.claim_in, "Claimed": job.terms.completion_window, "Completed": p.dispute_window,
                "Disputed": p.arbitration_timeout}[job.state]

    def open_window(self, job: Job) -> bool:
        return self.elapsed(job) < self.window(job)

    def can_claim(self, provider: str, job: Job) -> bool:
        t = job.terms
        return (self.status.get(provider) == "Active" and t.model_key in self.serves.get(provider, set())
                and self.stake[provider] >= self.collateral(t.payment)
                and t.provider in (provider, "0x0000000000000000000000000000000000000000"))

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

    def move(self, job_id: int, state: str) -> None:
        j = self.jobs[job_id]
        j.state, j.since = state, self.now

    def pay_provider(self, job_id: int, extra: int = 0) -> None:
        """Settle: payment less fee (plus `extra`) to the provider, fee to the job's recipient."""
        j = self.jobs[job_id]
        t = j.terms
        fee = t.payment * t.fee_bps // 10_000
        self.balance[t.provider] += t.payment - fee + extra
        self.balance[t.fee_recipient] += fee
        self.stake[t.provider] += self.collateral(t.payment)
        self.open_jobs[t.provider] -= 1
        self.paid[job_id] += 1
        j.state = "Settled"

    def refund(self, job_id: int, state: str) -> None:
        """Cancel, expire or refund: the client gets back what the job holds for it."""
        j = self.jobs[job_id]
        t = j.terms
        back = t.payment
        if j.state in ("Claimed", "Disputed"):  # a no-show's collateral; a refunded dispute's too
            back += self.collateral(t.payment)
            self.open_jobs[t.provider] -= 1
        if j.state == "Disputed":
            back += self.params.dispute_bond
        self.balance[t.client] += back
        j.state = state
