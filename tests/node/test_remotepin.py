"""The node's remote pins of a job's spec and result: the wait is bounded by the deadline, a pinned
result is not asked for again, and a remote's failure never stops delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.formats.cid import cid_of_bytes
from hearth_node.journal import Journal, posted_to_dict
from hearth_node.remotepin import Publisher

SPEC, RESULT = cid_of_bytes(b"spec"), cid_of_bytes(b"result")


class FakePins:
    def __init__(self, answer: str = "pinned") -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.answer = answer

    def pin(self, source: Any, cid: Any, name: str, wait: float = 0.0, meta: Any = None) -> dict[str, str]:
        self.calls.append((str(cid), name, wait))
        return {"service": self.answer}

    def close(self) -> None:
        pass


def _job() -> PostedJob:
    return PostedJob(job_id=7, client=ZERO_ADDRESS, provider=ZERO_ADDRESS, model_key=b"k" * 32, model_cid=RESULT,
                     spec_cid=SPEC, payment=1, claim_deadline=0, completion_window=60, fee_bps=0,
                     block_number=1, tx_hash="0x", fee_recipient=ZERO_ADDRESS, salt=0)


def test_wait_bounded_by_the_deadline_and_not_repeated(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.add(7, posted_to_dict(_job()))
    pins = FakePins()
    p = Publisher(pins, None, journal, wait_seconds=30, margin_seconds=3, clock=lambda: 1000.0)  # type: ignore[arg-type]
    out = p.publish(_job(), str(RESULT), deadline=1010.0)
    assert out == {"spec": {"service": "pinned"}, "result": {"service": "pinned"}}
    assert pins.calls == [(str(SPEC), "hearth job 7 spec", 0.0), (str(RESULT), "hearth job 7 result", 7.0)]
    rec = journal.get(7)
    assert rec is not None and rec.data["remote_pin"] == out
    p.publish(_job(), str(RESULT), deadline=1010.0)  # a retry after a crash: already pinned
    assert len(pins.calls) == 2
    late = Publisher(FakePins(), None, journal, 30, 3, clock=lambda: 2000.0)  # type: ignore[arg-type]
    journal.note(7, remote_pin={})
    late.publish(_job(), str(RESULT), deadline=1010.0)
    assert late.pins.calls[-1][2] == 0.0, "past the deadline: ask, never wait"  # type: ignore[attr-defined]
    journal.close()


def test_a_failed_remote_is_noted_and_asked_again_next_time(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.add(7, posted_to_dict(_job()))
    pins = FakePins("failed: connection refused")
    p = Publisher(pins, None, journal, 30, 3, clock=lambda: 0.0)  # type: ignore[arg-type]
    assert p.publish(_job(), str(RESULT), deadline=100.0)["result"]["service"].startswith("failed")
    p.publish(_job(), str(RESULT), deadline=100.0)
    assert len(pins.calls) == 4
    journal.close()
