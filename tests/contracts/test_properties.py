"""A hypothesis state machine drives the market and an independent model of it (model.py) side
by side: two clients, three providers, two fee recipients and the arbiter, each acting only where
the rules let that party act, over a market with a dispute window, a dispute bond, a collateral
floor and a non-zero fee that the owner changes. Time jumps past every window and timeout.

Each step is one transition the model says may happen now, drawn with weights that favour moving
jobs along, so that deep paths (a dispute the arbiter lets lapse, a provider that leaves and
registers again) are reached many times in a bounded run. After every step every account's
balance, stake, open jobs, status and wallet equal the model's, the market holds exactly
balances + stakes + escrow, the moved job's state is the model's, and no job was paid twice.
Refused calls are checked against their exact custom error. Each transition is counted, and the
run fails unless every one was reached at least MIN_COUNT times.

It runs on anvil, whose evm_snapshot/evm_revert reset the chain between examples in a
millisecond (eth-tester takes seconds per example; test_market.py and its siblings cover it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from random import Random
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hearth.chain.types import ZERO_ADDRESS, posted_from_event
from hearth.errors import ContractError
from hearth.formats.units import TOKEN
from hearth.jobs import permit_signature
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from web3.logs import DISCARD

from tests.backends import AnvilBackend
from tests.contracts.harness import RESULT, SPEC
from tests.contracts.model import FINAL, JUMP, PARAMS
from tests.contracts.world import MODELS, World

EXAMPLES, STEPS, MIN_COUNT = 50, 50, 5
PAYMENTS = (TOKEN // 4, TOKEN, 3 * TOKEN)  # collateral below, at and above the floor
TRANSITIONS = (
    "deposit", "depositWithPermit", "withdraw", "register", "addStake", "unbond", "withdrawStake", "setFee",
    "postJob", "postJob (directed)", "postJobWithPermit", "claim", "complete", "cancel", "settle", "dispute",
    "resolve (provider wins)", "resolve (client wins)", "expire (unclaimed)", "expire (claimed, slashed)",
    "expire (dispute lapsed)", "advance time",
)


WORLD: World | None = None
COUNTS: Counter[str] = Counter()


class MarketMachine(RuleBasedStateMachine):
    """One example: a sequence of market operations from the snapshot."""

    def __init__(self) -> None:
        super().__init__()
        assert WORLD is not None
        self.w, self.h = WORLD, WORLD.h
        self.m = WORLD.reset()
        self.everyone = [self.w.owner, *self.w.clients, *self.w.providers, *self.w.treasuries]
        self.wallets = self.w.clients + self.w.providers
        self.approved = {a.address for a in self.w.clients + self.w.providers}  # max allowance from fund()
        self.steps = 0
        self.touched: int | None = None

    # ---------------------------------------------------------------- plumbing
    def tx(self, acct: LocalAccount, name: str, *args: Any) -> Any:
        return self.h.s(acct).transact(self.h.market.fn(name, *args))

    def refuse(self, what: str, error: str, acct: LocalAccount, name: str, *args: Any, **error_args: Any) -> None:
        with pytest.raises(ContractError) as info:
            self.tx(acct, name, *args)
        assert info.value.name == error, f"{what}: expected {error}, got {info.value}"
        for k, v in error_args.items():
            assert info.value.error_args[k] == v, f"{what}: {error}.{k} = {info.value.error_args[k]}, expected {v}"
        self.h.s(acct).resync()
        COUNTS[f"refused: {what}"] += 1

    def acct(self, address: str) -> LocalAccount:
        return next(a for a in self.everyone if a.address == address)

    def jobs_where(self, *states: str, open_window: bool | None = None) -> list[int]:
        return [i for i in self.m.in_state(*states)
                if open_window is None or self.m.open_window(self.m.jobs[i]) == open_window]

    def claims(self) -> list[tuple[int, LocalAccount]]:
        return [(i, p) for i in self.jobs_where("Posted", open_window=True) for p in self.w.providers
                if self.m.can_claim(p.address, self.m.jobs[i])]

    def check_state(self, job_id: int) -> None:
        """Compare this job's on-chain state with the model's after the step (see books_balance)."""
        self.touched = job_id

    def deadline(self, job_id: int) -> int:
        return self.h.market.job(job_id).deadline

    # ---------------------------------------------------------------- what can happen next
    def menu(self) -> list[tuple[Callable[[Random, str], None], str, float]]:
        """(action, transition, weight) for every transition the model says may happen now.
        Weights favour moving jobs along, so that the deep paths (a dispute that lapses, a
        provider that leaves and comes back) are reached many times in a bounded run."""
        j = self.jobs_where
        out: list[tuple[Callable[[Random, str], None], str, float]] = []
        for ok, action, weight in (
            (j("Posted", "Claimed", "Disputed", open_window=False), self.expire, 4),
            (j("Disputed", open_window=True), self.resolve, 3),
            (j("Completed", open_window=False), self.settle, 3),
            (j("Completed", open_window=True), self.dispute, 2),
            (j("Claimed", open_window=True), self.complete, 5),
            (self.claims(), self.claim, 4),
            (j("Posted"), self.cancel, 1),
            (self.m.jobs, self.refused, 2),
        ):
            if ok:
                out.append((action, action.__name__, weight))
        out += [(self.post, k, 1) for k in ("postJob", "postJob (directed)", "postJobWithPermit")]
        out += [(self.advance, "advance time", 2), (self.set_fee, "setFee", 0.5)]
        # unbonding only while another provider stays active, so that jobs keep being claimed
        active = sum(s == "Active" for s in self.m.status.values())
        kinds = ("register", "addStake", "withdrawStake") + (("unbond",) if active > 1 else ())
        out += [(self.provider, k, 0.5) for k in kinds]
        out += [(self.money, k, 0.5) for k in ("deposit", "depositWithPermit", "withdraw")]
        return out

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        """One transition, chosen among those possible now, by the party allowed to make it."""
        # Uniform choices from a seed hypothesis draws (and replays); the step number keeps a
        # seed hypothesis likes to repeat (0, the maximum) from repeating the same choices.
        self.steps += 1
        rnd = Random(f"{self.steps}:{data.draw(st.integers(0, 2**32 - 1), label='seed')}")
        menu = self.menu()
        action, kind, _ = rnd.choices(menu, weights=[weight for _, _, weight in menu])[0]
        action(rnd, kind)

    def provider_ok(self, addr: str, kind: str) -> bool:
        m = self.m
        return {
            "register": m.status[addr] == "None" and m.balance[addr] >= PARAMS.min_stake,
            "addStake": m.status[addr] == "Active" and m.balance[addr] > 0,
            "unbond": m.status[addr] == "Active",
            "withdrawStake": m.status[addr] == "Unbonding" and not m.open_jobs[addr]
            and m.now - m.unbond_at[addr] >= PARAMS.unbonding_delay,
        }[kind]

    # ---------------------------------------------------------------- money
    def money(self, rnd: Random, kind: str) -> None:
        a = rnd.choice(self.w.clients + self.w.providers)
        amount = rnd.choice([1, 5, 40])
        value, m, market = amount * TOKEN, self.m, self.h.market
        if kind == "withdraw":
            have = m.balance[a.address]
            if have == 0:
                self.refuse("withdraw above balance", "InsufficientBalance", a, "withdraw", TOKEN, balance=0)
                return
            value = min(value, have)
            self.tx(a, "withdraw", value)
            m.balance[a.address] -= value
            m.wallet[a.address] += value
        else:
            value = min(value, m.wallet[a.address])
            if value == 0:
                return
            if kind == "deposit":
                if a.address not in self.approved:
                    self.h.s(a).transact(market.token.functions.approve(market.address, 2**256 - 1))
                    self.approved.add(a.address)
                self.tx(a, "deposit", value)
            else:
                deadline = self.w.b.now() + 600
                v, r, s = permit_signature(a, market, value, deadline)
                self.tx(a, "depositWithPermit", value, deadline, v, r, s)
                self.approved.discard(a.address)  # the permit replaced the allowance
            m.balance[a.address] += value
            m.wallet[a.address] -= value
        COUNTS[kind] += 1

    # ---------------------------------------------------------------- providers and owner
    def provider(self, rnd: Random, kind: str) -> None:
        m = self.m
        fits = [p for p in self.w.providers if self.provider_ok(p.address, kind)]
        p = rnd.choice(fits or self.w.providers)  # one it works for, if any
        models = rnd.choice([MODELS[:1], MODELS])
        addr = p.address
        status = m.status[addr]
        if kind == "register":
            if status != "None":
                self.refuse("register twice", "ProviderAlreadyRegistered", p, "register", 10 * TOKEN, 0, [])
                return
            stake = min(m.balance[addr], 12 * TOKEN)
            if stake < PARAMS.min_stake:
                self.refuse("register below minimum", "StakeBelowMinimum", p, "register", stake, 0, list(models))
                return
            self.tx(p, "register", stake, 0, list(models))
            m.balance[addr] -= stake
            m.stake[addr] += stake
            m.status[addr] = "Active"
            m.serves[addr] = {keccak(x) for x in models}
        elif kind in ("addStake", "unbond") and status != "Active":
            args = [TOKEN] if kind == "addStake" else []
            self.refuse(f"{kind} when not active", "ProviderNotActive", p, kind, *args, provider=addr)
            return
        elif kind == "addStake":
            value = min(m.balance[addr], 2 * TOKEN)
            if value == 0:
                return
            self.tx(p, "addStake", value)
            m.balance[addr] -= value
            m.stake[addr] += value
        elif kind == "unbond":
            self.tx(p, "unbond")
            m.status[addr], m.unbond_at[addr] = "Unbonding", m.now
        elif status != "Unbonding":
            self.refuse("withdrawStake when not unbonding", "ProviderNotUnbonding", p, "withdrawStake")
            return
        elif m.now - m.unbond_at[addr] < PARAMS.unbonding_delay:
            self.refuse("withdrawStake too early", "UnbondingNotOver", p, "withdrawStake")
            return
        elif m.open_jobs[addr]:
            self.refuse("withdrawStake with open jobs", "ProviderHasOpenJobs", p, "withdrawStake",
                        openJobs=m.open_jobs[addr])
            return
        else:
            self.tx(p, "withdrawStake")
            m.balance[addr] += m.stake[addr]
            m.stake[addr] = 0
            m.status[addr], m.serves[addr] = "None", set()
            assert not any(self.h.market.serves(addr, x) for x in MODELS)
        COUNTS[kind] += 1

    def set_fee(self, rnd: Random, kind: str) -> None:
        bps, to = rnd.choice([0, 100, 250, 1000]), rnd.choice([0, 1, 0, 1, 2, 3])
        recipient = [t.address for t in self.w.treasuries] + [ZERO_ADDRESS, self.h.market.address]
        if to >= 2:
            self.refuse("fee to zero or the market", "InvalidFeeRecipient", self.w.owner, "setFee", bps,
                        recipient[to], recipient=recipient[to])
            return
        self.tx(self.w.owner, "setFee", bps, recipient[to])
        self.m.fee_bps, self.m.fee_recipient = bps, recipient[to]
        COUNTS["setFee"] += 1

    # ---------------------------------------------------------------- jobs
    def post(self, rnd: Random, kind: str) -> None:
        c, m, market = rnd.choice(self.w.clients), self.m, self.h.market
        pay, model = rnd.choice(PAYMENTS), rnd.choice(MODELS)
        claim_in, window = rnd.choice([1_000, 2_000]), rnd.choice([1_000, 2_000])
        provider = ZERO_ADDRESS
        if kind == "postJob (directed)":
            provider = rnd.choice(self.w.providers).address
        p = market.post_params(model, SPEC, pay, self.w.b.now() + claim_in, window, provider)
        if kind == "postJobWithPermit":
            if m.wallet[c.address] < pay:
                return
            deadline = self.w.b.now() + 600
            v, r, s = permit_signature(c, market, pay, deadline)
            receipt = self.tx(c, "postJobWithPermit", p, pay, deadline, v, r, s)
            m.wallet[c.address] -= pay
            m.balance[c.address] += pay
            self.approved.discard(c.address)
        elif m.balance[c.address] < pay:
            self.refuse("post above balance", "InsufficientBalance", c, "postJob", p, needed=pay)
            return
        else:
            receipt = self.tx(c, "postJob", p)
        ev = market.contract.events.JobPosted().process_receipt(receipt, errors=DISCARD)[0]
        posted = posted_from_event(ev)
        t = posted.terms
        assert (t.client, t.payment, t.provider, t.completion_window) == (c.address, pay, provider, window)
        assert (t.fee_bps, t.fee_recipient, t.model_key) == (m.fee_bps, m.fee_recipient, keccak(model))
        m.post(posted.job_id, t, claim_in)
        self.check_state(posted.job_id)
        COUNTS[kind] += 1

    def claim(self, rnd: Random, kind: str) -> None:
        job_id, p = rnd.choice(self.claims())
        self.tx(p, "claim", job_id, self.m.jobs[job_id].terms.as_tuple())
        self.m.claim(job_id, p.address)
        self.check_state(job_id)
        COUNTS["claim"] += 1

    def complete(self, rnd: Random, kind: str) -> None:
        job_id = rnd.choice(self.jobs_where("Claimed", open_window=True))
        t = self.m.jobs[job_id].terms
        self.tx(self.acct(t.provider), "complete", job_id, t.as_tuple(), RESULT, b"\x11" * 32)
        self.m.move(job_id, "Completed")
        self.check_state(job_id)
        COUNTS["complete"] += 1

    def settle(self, rnd: Random, kind: str) -> None:
        job_id = rnd.choice(self.jobs_where("Completed", open_window=False))
        r = self.tx(rnd.choice(self.everyone), "settle", job_id, self.m.jobs[job_id].terms.as_tuple())
        self.paid_once(job_id, r)
        self.m.pay_provider(job_id)
        self.check_state(job_id)
        COUNTS["settle"] += 1

    def cancel(self, rnd: Random, kind: str) -> None:
        job_id = rnd.choice(self.jobs_where("Posted"))
        t = self.m.jobs[job_id].terms
        self.tx(self.acct(t.client), "cancel", job_id, t.as_tuple())
        self.m.refund(job_id, "Cancelled")
        self.check_state(job_id)
        COUNTS["cancel"] += 1

    def dispute(self, rnd: Random, kind: str) -> None:
        job_id = rnd.choice(self.jobs_where("Completed", open_window=True))
        t = self.m.jobs[job_id].terms
        if self.m.balance[t.client] < PARAMS.dispute_bond:
            self.refuse("dispute without the bond", "InsufficientBalance", self.acct(t.client), "dispute", job_id,
                        t.as_tuple(), needed=PARAMS.dispute_bond)
            return
        self.tx(self.acct(t.client), "dispute", job_id, t.as_tuple())
        self.m.balance[t.client] -= PARAMS.dispute_bond
        self.m.move(job_id, "Disputed")
        self.check_state(job_id)
        COUNTS["dispute"] += 1

    def resolve(self, rnd: Random, kind: str) -> None:
        job_id = rnd.choice(self.jobs_where("Disputed", open_window=True))
        provider_wins = rnd.random() < 0.5
        t = self.m.jobs[job_id].terms
        fn = self.w.arbiter.functions.decide(self.h.market.address, job_id, t.as_tuple(), provider_wins)
        r = self.h.s(self.w.owner).transact(fn)
        if provider_wins:
            self.paid_once(job_id, r)
            self.m.pay_provider(job_id, extra=PARAMS.dispute_bond)
        else:
            self.m.refund(job_id, "Refunded")
        self.check_state(job_id)
        COUNTS["resolve (provider wins)" if provider_wins else "resolve (client wins)"] += 1

    def expire(self, rnd: Random, kind: str) -> None:
        job_id = rnd.choice(self.jobs_where("Posted", "Claimed", "Disputed", open_window=False))
        j = self.m.jobs[job_id]
        state = j.state
        r = self.tx(rnd.choice(self.everyone), "expire", job_id, j.terms.as_tuple())
        if state == "Disputed":  # the arbiter never decided: the result stands, the bond goes back
            self.paid_once(job_id, r)
            self.m.balance[j.terms.client] += PARAMS.dispute_bond
            self.m.pay_provider(job_id)
        else:
            self.m.refund(job_id, "Expired")
        self.check_state(job_id)
        COUNTS[{"Posted": "expire (unclaimed)", "Claimed": "expire (claimed, slashed)",
                "Disputed": "expire (dispute lapsed)"}[state]] += 1

    def advance(self, rnd: Random, kind: str) -> None:
        self.w.b.advance(JUMP)
        self.m.now += JUMP
        COUNTS["advance time"] += 1

    # ---------------------------------------------------------------- the wrong party, the wrong time
    def refusals(self) -> list[tuple[Any, ...]]:
        """(what, error, actor, function, job, error args) for every refused call open now."""
        m = self.m
        out: list[tuple[Any, ...]] = []
        outsider = self.w.treasuries[1]
        for i, j in m.jobs.items():
            st_ = j.state
            if st_ in FINAL:
                out.append(("replay a finished job", "InvalidState", outsider, "settle", i, {"state": st_}))
            elif st_ == "Claimed":
                out.append(("complete by a non-claimer", "NotProvider", outsider, "complete", i, {}))
            elif st_ == "Completed":
                out.append(("dispute by a non-client", "NotClient", outsider, "dispute", i, {}))
            elif st_ == "Posted":
                out.append(("cancel by a non-client", "NotClient", outsider, "cancel", i, {}))
            if st_ == "Posted" and not m.open_window(j):
                out.append(("claim after the deadline", "DeadlinePassed", outsider, "claim", i, {}))
            if st_ == "Completed" and m.open_window(j):
                out.append(("settle inside the window", "DeadlineNotPassed", outsider, "settle", i, {}))
            if st_ in ("Posted", "Claimed", "Disputed") and m.open_window(j):
                out.append(("expire before the deadline", "DeadlineNotPassed", outsider, "expire", i, {}))
            if st_ == "Disputed" and not m.open_window(j):
                out.append(("resolve after the deadline", "DeadlinePassed", None, "decide", i, {}))
        return out

    def refused(self, rnd: Random, kind: str) -> None:
        options = self.refusals()
        kind = rnd.choice(sorted({o[0] for o in options}))  # a kind of mistake, then a job it applies to
        what, error, who, fn, job_id, args = rnd.choice([o for o in options if o[0] == kind])
        t = self.m.jobs[job_id].terms.as_tuple()
        extra: tuple[Any, ...] = (RESULT, b"\0" * 32) if fn == "complete" else ()
        if fn == "decide":  # the arbiter, through its contract: the market's error comes back up
            with pytest.raises(ContractError) as info:
                self.h.s(self.w.owner).transact(self.w.arbiter.functions.decide(self.h.market.address, job_id, t, True))
            assert info.value.name == error and info.value.error_args["deadline"] == self.deadline(job_id)
            self.h.s(self.w.owner).resync()
            COUNTS[f"refused: {what}"] += 1
            return
        self.refuse(what, error, who, fn, job_id, t, *extra, jobId=job_id, **args)

    # ---------------------------------------------------------------- checks
    def paid_once(self, job_id: int, receipt: Any) -> None:
        settled = self.h.market.contract.events.JobSettled().process_receipt(receipt, errors=DISCARD)
        assert [int(e["args"]["jobId"]) for e in settled] == [job_id]
        assert self.m.paid[job_id] == 0, f"job {job_id} paid twice"

    @invariant()
    def books_balance(self) -> None:
        m = self.m
        held = 0
        accounts, wallets, market_holds, job_state = self.w.books(self.everyone, self.wallets, self.touched)
        if self.touched is not None:
            assert job_state == m.jobs[self.touched].state, f"job {self.touched}: {job_state} on chain"
            self.touched = None
        for a, acct in zip(self.everyone, accounts, strict=True):
            want = (m.balance[a.address], m.stake[a.address], m.open_jobs[a.address], m.status.get(a.address, "None"))
            assert (acct.balance, acct.stake, acct.open_jobs, acct.status) == want, f"{a.address}: {acct} != {want}"
            held += acct.balance + acct.stake
        assert wallets == [m.wallet[a.address] for a in self.wallets], "a wallet moved unlike the model"
        assert market_holds == held + m.escrow(), "market holds != balances + stakes + escrow"
        assert all(n == 1 for n in m.paid.values()), "a job was paid twice"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = World(AnvilBackend())
    yield w
    w.b.close()


def test_state_machine(world: World) -> None:
    global WORLD
    WORLD = world
    COUNTS.clear()
    run_state_machine_as_test(MarketMachine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    print("\ntransition counts:", dict(sorted(COUNTS.items())))
    short = {k: COUNTS[k] for k in TRANSITIONS if COUNTS[k] < MIN_COUNT}
    assert not short, f"transitions reached fewer than {MIN_COUNT} times: {short}"
