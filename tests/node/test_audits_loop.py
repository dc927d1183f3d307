"""The audits loop reads an own completed job's slot once, then not again before its dispute
window ends unless an AuditStarted or JobDisputed log names it: it used to read every unpaid job
every second, which cost a node draining a queue more CPU than its claims and completes.

The market here is a stand-in that counts reads (the loop's behaviour on a real chain, through
audits, disputes and settlement, is what tests/e2e/test_audits.py runs); the journal is real."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.formats.cid import CID, cid_of_bytes
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

    def head_number(self) -> int:
        return self.head

    def logs(self, name: str, a: int, b: int | str, **topics: Any) -> list[dict[str, Any]]:
        return [{"args": {"jobId": j, "round": 0, "providerAmount": 0}}
                for blk, ev, j in self.events if ev == name and a <= blk <= int(b)]

    def job(self, job_id: int) -> _Slot:
        self.reads[job_id] += 1
        return self.slots[job_id]

    def completion(self, job_id: int) -> None:
        return None


def test_own_jobs_are_read_once_in_their_window_then_on_a_log_or_when_it_ends(tmp_path: Path) -> None:
    market, journal = _Market(), Journal(tmp_path / "journal.db")
    now = time.time()
    for j, deadline in ((1, now + 3600), (2, now + 3600), (3, now + 1.0)):
        journal.add(j, posted_to_dict(replace(JOB, job_id=j)))
        journal.advance(j, "completed")
        market.slots[j] = _Slot("Completed", deadline)
    processor = SimpleNamespace(market=market, address=ME, journal=journal, metrics=SimpleNamespace(earnings=0))
    loop = Audits(processor, devnet=True)  # type: ignore[arg-type]

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
