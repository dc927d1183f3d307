"""Property-based tests: random sequences of operations by several clients and providers, with
time passing. After every operation the market's token balance equals what it owes; every
internal balance and stake equals an independent model's; no job is paid twice; and at the end
everyone can withdraw exactly what they are owed, leaving the market empty."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hearth.chain import artifacts
from hearth.errors import ContractError
from hearth.formats.units import TOKEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backends import AnvilBackend, EthTesterBackend
from tests.contracts.harness import Harness, make_harness

N_CLIENTS, N_PROVIDERS = 2, 2


@dataclass
class Model:
    """What each account should hold, computed without the contract."""

    balance: dict[str, int] = field(default_factory=dict)
    stake: dict[str, int] = field(default_factory=dict)
    paid: dict[int, int] = field(default_factory=dict)  # job -> times the provider was paid


op = st.one_of(
    st.tuples(st.just("post"), st.integers(0, N_CLIENTS - 1), st.integers(1, 40), st.sampled_from([30, 300, 3000]),
              st.sampled_from([30, 600])),
    st.tuples(st.just("claim"), st.integers(0, N_PROVIDERS - 1), st.integers(0, 9)),
    st.tuples(st.just("complete"), st.integers(0, N_PROVIDERS - 1), st.integers(0, 9)),
    st.tuples(st.just("cancel"), st.integers(0, N_CLIENTS - 1), st.integers(0, 9)),
    st.tuples(st.just("expire"), st.integers(0, 9)),
    st.tuples(st.just("settle"), st.integers(0, 9)),
    st.tuples(st.just("dispute"), st.integers(0, N_CLIENTS - 1), st.integers(0, 9)),
    st.tuples(st.just("resolve"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("withdraw"), st.integers(0, N_CLIENTS + N_PROVIDERS - 1), st.integers(1, 50)),
    st.tuples(st.just("deposit"), st.integers(0, N_CLIENTS + N_PROVIDERS - 1), st.integers(1, 50)),
    st.tuples(st.just("advance"), st.sampled_from([10, 100, 1000, 5000])),
)


class World:
    """A deployed market with funded actors, reset to a snapshot before each example."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        a = h.b.accounts
        self.clients = [a[1], a[2]]
        self.providers = [a[3], a[4]]
        self.everyone = self.clients + self.providers
        for c in self.clients:
            h.fund(c, 1000, 200)
        for p in self.providers:
            h.register(p, 50)
        self.arbiter = h.b.w3.eth.contract(address=h.arbiter_address, abi=artifacts.load("SimpleArbiter")["abi"])
        self.snap = h.b.snapshot()
        self.jobs0 = dict(h.jobs)

    def reset(self) -> Model:
        self.h.b.revert(self.snap)
        self.snap = self.h.b.snapshot()  # anvil's snapshots are single use
        self.h.jobs = dict(self.jobs0)
        for s in self.h.senders.values():
            s.resync()
        m = Model()
        for x in self.everyone:
            acct = self.h.market.account(x.address)
            m.balance[x.address], m.stake[x.address] = acct.balance, acct.stake
        return m


def run_sequence(w: World, ops: list[tuple]) -> None:
    h, m = w.h, w.reset()
    coll = h.collateral
    job_ids: list[int] = []

    def job_at(i: int) -> int | None:
        return job_ids[i % len(job_ids)] if job_ids else None

    for o in ops:
        kind = o[0]
        try:
            if kind == "post":
                _, ci, pay, claim_in, window = o
                c = w.clients[ci]
                job = h.post(c, payment=pay * TOKEN // 10, claim_in=claim_in, window=window)
                job_ids.append(job)
                m.balance[c.address] -= pay * TOKEN // 10
            elif kind in ("claim", "complete"):
                _, pi, ji = o
                job, p = job_at(ji), w.providers[pi]
                if job is None:
                    continue
                t = h.jobs[job]
                if kind == "claim":
                    h.claim(p, job)
                    m.stake[p.address] -= coll(t.payment)
                else:
                    h.complete(p, job)
                    if h.dispute_window == 0:
                        m.balance[p.address] += t.payment
                        m.stake[p.address] += coll(t.payment)
                        m.paid[job] = m.paid.get(job, 0) + 1
            elif kind == "cancel":
                _, ci, ji = o
                job = job_at(ji)
                if job is None:
                    continue
                t = h.jobs[job]
                h.op(w.clients[ci], "cancel", job, t.as_tuple())
                m.balance[t.client] += t.payment
            elif kind == "expire":
                job = job_at(o[1])
                if job is None:
                    continue
                t, state = h.jobs[job], h.state(job)
                h.op(w.clients[0], "expire", job, t.as_tuple())
                m.balance[t.client] += t.payment
                if state == "Claimed":
                    m.balance[t.client] += coll(t.payment)
                elif state == "Disputed":
                    m.stake[t.provider] += coll(t.payment)
            elif kind == "settle":
                job = job_at(o[1])
                if job is None:
                    continue
                t = h.jobs[job]
                h.op(w.clients[0], "settle", job, t.as_tuple())
                m.balance[t.provider] += t.payment
                m.stake[t.provider] += coll(t.payment)
                m.paid[job] = m.paid.get(job, 0) + 1
            elif kind == "dispute":
                _, ci, ji = o
                job = job_at(ji)
                if job is None:
                    continue
                h.op(w.clients[ci], "dispute", job, h.jobs[job].as_tuple())
            elif kind == "resolve":
                _, ji, provider_wins = o
                job = job_at(ji)
                if job is None:
                    continue
                t = h.jobs[job]
                h.s(h.owner).transact(w.arbiter.functions.decide(h.market.address, job, t.as_tuple(), provider_wins))
                h.check_invariant()
                if provider_wins:
                    m.balance[t.provider] += t.payment
                    m.stake[t.provider] += coll(t.payment)
                    m.paid[job] = m.paid.get(job, 0) + 1
                else:
                    m.balance[t.client] += t.payment + coll(t.payment)
            elif kind == "withdraw":
                _, ai, amt = o
                a = w.everyone[ai]
                h.op(a, "withdraw", amt * TOKEN)
                m.balance[a.address] -= amt * TOKEN
            elif kind == "deposit":
                _, ai, amt = o
                a = w.everyone[ai]
                h.op(a, "deposit", amt * TOKEN)
                m.balance[a.address] += amt * TOKEN
            elif kind == "advance":
                h.b.advance(o[1])
        except ContractError:
            for s in h.senders.values():
                s.resync()
            h.check_invariant()  # a refused operation moves nothing
        for x in w.everyone:
            acct = h.market.account(x.address)
            assert acct.balance == m.balance[x.address], f"balance of {x.address} after {o}"
            assert acct.stake == m.stake[x.address], f"stake of {x.address} after {o}"
        assert all(n == 1 for n in m.paid.values()), "a job was paid twice"

    # Everyone takes out everything they are owed; nothing more can leave, nothing is stuck
    # except the escrow of jobs still open.
    for x in w.everyone:
        bal = h.market.account(x.address).balance
        if bal:
            h.op(x, "withdraw", bal)
        with pytest.raises(ContractError):
            h.s(x).transact(h.market.fn("withdraw", 1))
        h.s(x).resync()
    settled = sum(len(h.market.logs("JobSettled", h.market.deploy_block, "latest", jobId=j)) for j in job_ids)
    assert settled == len(m.paid)


@pytest.fixture(scope="module")
def worlds() -> Iterator[dict[str, World]]:
    made: dict[str, World] = {}
    backends = []

    def get(name: str, window: int) -> World:
        key = f"{name}-{window}"
        if key not in made:
            b = EthTesterBackend() if name == "eth-tester" else AnvilBackend()
            backends.append(b)
            made[key] = World(make_harness(b, dispute_window=window))
        return made[key]

    yield get  # type: ignore[misc]
    for b in backends:
        b.close()


SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(ops=st.lists(op, min_size=3, max_size=14))
def test_random_sequences_pay_at_once(worlds, ops) -> None:  # type: ignore[no-untyped-def]
    run_sequence(worlds("eth-tester", 0), ops)


@SETTINGS
@given(ops=st.lists(op, min_size=3, max_size=14))
def test_random_sequences_with_dispute_window(worlds, ops) -> None:  # type: ignore[no-untyped-def]
    run_sequence(worlds("eth-tester", 300), ops)


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=3, max_size=15))
def test_random_sequences_on_anvil(worlds, ops) -> None:  # type: ignore[no-untyped-def]
    run_sequence(worlds("anvil", 300), ops)
