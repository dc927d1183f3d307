"""The audits loop reads an own completed job's slot once, then not again before its dispute
window ends unless an AuditStarted or JobDisputed log names it: it used to read every unpaid job
every second, which cost a node draining a queue more CPU than its claims and completes. Jobs due
for payment are paid together by one settleMany once the first has waited settle_delay.

The market here is a stand-in that counts reads (the loop's behaviour on a real chain, through
audits, disputes and settlement, is what tests/e2e/test_audits.py runs); the journal is real."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hearth.chain.types import ZERO_ADDRESS, Completion, PostedJob
from hearth.errors import ChainError, ContractError
from hearth.formats.cid import CID, cid_of_bytes
from hearth_node import audits
from hearth_node.audits import Audits
from hearth_node.journal import Journal, posted_to_dict

ME = "0x" + "11" * 20
JOB = PostedJob(job_id=1, client="0x" + "22" * 20, provider=ME, model_key=b"\x01" * 32,
                model_cid=CID.parse("QmR58njnbf5NUQQ6uF9vkbHL4N1h3kFnkFcXdASEa8hQvY"), spec_cid=cid_of_bytes(b"spec"),
                payment=10**16, claim_deadline=2**40, completion_window=600, fee_bps=0, block_number=3,
                tx_hash="0x" + "ab" * 32, fee_recipient=ZERO_ADDRESS, salt=5)


@dataclass
class _Slot:
    state: str
    deadline: float


class _Market:
    deploy_block = 0

    def __init__(self) -> None:
        self.head = 1
        self.slots: dict[int, _Slot] = {}
        self.events: list[tuple[int, str, int]] = []  # (block, event, job id)
        self.reads: Counter[int] = Counter()
        self.drawn: set[int] = set()  # jobs the draw selected for audit
        self.mined = 0  # blocks mined: the draw needs a block after the completion's
        self.w3 = SimpleNamespace(provider=SimpleNamespace(make_request=self._request))

    def _request(self, method: str, params: list[Any]) -> None:
        assert method == "evm_mine"
        self.mined += 1

    def head_number(self) -> int:
        return self.head

    def logs(self, name: str, a: int, b: int | str, **topics: Any) -> list[dict[str, Any]]:
        return [{"args": {"jobId": j, "round": 0, "providerAmount": 0}}
                for blk, ev, j in self.events if ev == name and a <= blk <= int(b)]

    def job(self, job_id: int) -> _Slot:
        self.reads[job_id] += 1
        return self.slots[job_id]

    def completion(self, job_id: int) -> Completion:
        return Completion(bytes(32), 2)

    def audit_selected(self, job_id: int, terms: Any, completion: Any) -> bool:
        if not self.mined:  # an idle automining devnet: the completion block is still the latest
            raise ContractError("RandomnessNotReady", {"blockNumber": 2, "currentBlock": 2})
        return job_id in self.drawn


def _loop_over(market: _Market, journal: Journal, jobs: dict[int, float], settle_delay: float = 0.0) -> Audits:
    """An audits loop over own completed jobs (id -> end of its window) on the stand-in market."""
    for j, deadline in jobs.items():
        journal.add(j, posted_to_dict(replace(JOB, job_id=j)))
        journal.advance(j, "completed")
        market.slots[j] = _Slot("Completed", deadline)
    processor = SimpleNamespace(market=market, address=ME, journal=journal, metrics=SimpleNamespace(earnings=0))
    return Audits(processor, devnet=True, settle_delay=settle_delay)  # type: ignore[arg-type]


def test_own_jobs_are_read_once_in_their_window_then_on_a_log_or_when_it_ends(tmp_path: Path) -> None:
    market, journal = _Market(), Journal(tmp_path / "journal.db")
    now = time.time()
    loop = _loop_over(market, journal, {1: now + 3600, 2: now + 3600, 3: now + 1.0})

    for _ in range(3):
        loop.tick()
    assert market.reads == {1: 1, 2: 1, 3: 1}

    # an audit of job 2 and one of another provider's job 99 start in block 2
    market.head = 2
    market.events += [(2, "AuditStarted", 2), (2, "AuditStarted", 99)]
    loop.tick()
    loop.tick()
    assert market.reads == {1: 1, 2: 2, 3: 1}
    assert 99 not in loop._touched

    # job 3's window ends (+1 s, the settling block must be later); meanwhile someone settled it
    market.slots[3] = _Slot("Settled", now + 1.0)
    time.sleep(max(0.0, now + 2.1 - time.time()))
    loop.tick()
    assert market.reads == {1: 1, 2: 2, 3: 2}
    assert [r.job_id for r in journal.unpaid()] == [1, 2]
    journal.close()


class _Clock:
    """The loop's time.time(), moved by hand: no test here depends on how busy the machine is."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


def test_jobs_due_together_are_paid_by_one_settle_many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(audits, "time", clock)
    market, journal = _Market(), Journal(tmp_path / "journal.db")
    market.drawn = {3}
    t0 = clock.now
    # windows end 0.2 s and 0.9 s from now; job 3 was drawn for audit; job 4's ends in an hour
    loop = _loop_over(market, journal, {1: t0 + 0.2, 2: t0 + 0.9, 3: t0 + 0.2, 4: t0 + 3600}, settle_delay=2.0)
    sent: list[tuple[str, Any]] = []

    def send(name: str, *args: Any) -> None:
        sent.append((name, args[0]))
        if name == "startAudit":  # nobody to audit it: skipped, and paid
            market.slots[3] = _Slot("Settled", t0 + 0.2)

    loop._send = send  # type: ignore[method-assign]
    while clock.now < t0 + 3.15:  # job 1 is due at its window's end + 1 s (a later block) + 2 s
        loop.tick()
        clock.now += 0.05
    assert sent == [("startAudit", 3)]  # at once: an audit has deadlines of its own
    assert market.mined == 1  # the devnet was idle: one block, and the draw could be read
    assert sorted(loop._due) == [1, 2]
    clock.now = t0 + 3.25
    loop.tick()
    assert sent == [("startAudit", 3), ("settleMany", [1, 2])]  # job 2, due 0.7 s later, in the same call
    assert not loop._due
    for j in (1, 2):
        market.slots[j] = _Slot("Settled", market.slots[j].deadline)
    loop.tick()
    assert [r.job_id for r in journal.unpaid()] == [4]
    journal.close()


def test_a_dispute_takes_a_job_out_of_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's clock is past the window, the chain's last block was not: a client disputed."""
    clock = _Clock()
    monkeypatch.setattr(audits, "time", clock)
    market, journal = _Market(), Journal(tmp_path / "journal.db")
    market.mined = 1
    loop = _loop_over(market, journal, {1: clock.now - 5, 2: clock.now - 5}, settle_delay=60)
    sent: list[tuple[str, Any]] = []
    loop._send = lambda name, *args: sent.append((name, args[0]))  # type: ignore[method-assign]
    loop.tick()
    assert sorted(loop._due) == [1, 2] and sent == []
    market.head = 2
    market.events.append((2, "JobDisputed", 2))
    market.slots[2] = _Slot("Disputed", clock.now + 100)
    reads = market.reads[2]
    loop._own = lambda posted, data: market.job(posted.job_id)  # type: ignore[method-assign]
    loop.tick()
    assert market.reads[2] == reads + 1 and sorted(loop._due) == [1]  # read at once, out of the batch
    journal.close()


def test_one_job_in_trouble_does_not_hold_up_the_others(tmp_path: Path) -> None:
    market, journal = _Market(), Journal(tmp_path / "journal.db")
    market.mined = 1
    now = time.time()
    loop = _loop_over(market, journal, {1: now - 5, 2: now - 5, 3: now - 5})
    sent: list[tuple[str, Any]] = []
    loop._send = lambda name, *args: sent.append((name, args[0]))  # type: ignore[method-assign]
    real_completion = market.completion

    def completion(job_id: int) -> Completion:
        if job_id == 2:
            raise ChainError("RPC endpoint timed out")
        return real_completion(job_id)

    market.completion = completion  # type: ignore[method-assign]
    loop.tick()
    assert sent == [("settleMany", [1, 3])]
    journal.close()


def test_a_refused_settle_many_settles_each_job_on_its_own(tmp_path: Path) -> None:
    market, journal = _Market(), Journal(tmp_path / "journal.db")
    now = time.time()
    loop = _loop_over(market, journal, {1: now - 5, 2: now - 5, 3: now - 5})
    sent: list[tuple[str, Any]] = []

    def send(name: str, *args: Any) -> None:
        sent.append((name, args[0]))
        if name == "settleMany" or args[0] == 2:  # the client settled job 2 a moment ago
            raise ContractError("InvalidState", {"jobId": 2, "state": 6}, "job 2 is settled")

    loop._send = send  # type: ignore[method-assign]
    loop.tick()
    assert sent == [("settleMany", [1, 2, 3]), ("settle", 1), ("settle", 2), ("settle", 3)]
    journal.close()
