"""The watcher tells a lagging endpoint from a reorg, and skips (journals, never stalls on) a job
whose CID bytes are not a CID."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_utils import keccak
from hearth.chain.types import PostedJob, posted_from_event, posted_record
from hearth.errors import InvalidCID
from hearth.formats.cid import CID, cid_of_bytes
from hearth_node.journal import Journal
from hearth_node.views import job_view
from hearth_node.watcher import Watcher


class FakeEth:
    def __init__(self, head: int) -> None:
        self.block_number = head
        self.asked: list[int] = []

    def get_block(self, n: int) -> dict[str, Any]:
        self.asked.append(n)
        if n > self.block_number:
            raise ValueError(f"block {n} not found")
        return {"hash": n.to_bytes(32, "big")}


def _watcher(tmp_path: Path, head: int) -> tuple[Watcher, FakeEth, Journal, list[tuple[int, int]]]:
    eth = FakeEth(head)
    scanned: list[tuple[int, int]] = []
    market = SimpleNamespace(w3=SimpleNamespace(eth=eth), deploy_block=0,
                             logs=lambda ev, a, b: scanned.append((a, b)) or [])
    journal = Journal(tmp_path / "j.db")
    return Watcher(market, journal, lambda job: None), eth, journal, scanned  # type: ignore[arg-type]


def test_head_behind_the_cursor_is_lag_not_a_reorg(tmp_path: Path) -> None:
    w, eth, journal, scanned = _watcher(tmp_path, head=100)
    w.poll_once()
    assert journal.get_kv("cursor") == "100" and scanned == [(0, 100)]
    eth.block_number = 98  # a load-balanced endpoint answers from a node two blocks behind
    w.poll_once()
    assert journal.get_kv("cursor") == "100", "the cursor must not rewind on lag"
    assert 100 not in eth.asked[1:] and len(scanned) == 1, "no reorg rescan, no logs asked beyond the answer"
    eth.block_number = 103
    w.poll_once()
    assert journal.get_kv("cursor") == "103" and scanned[-1] == (101, 103)
    journal.close()


def test_changed_hash_at_the_cursor_is_a_reorg(tmp_path: Path) -> None:
    w, eth, journal, scanned = _watcher(tmp_path, head=100)
    w.poll_once()
    journal.set_kv("cursor_hash", "00" * 32)  # what a replaced block looks like
    w.poll_once()
    assert scanned[1][0] < 100, "rescanned from below the cursor"
    journal.close()


MODEL = CID.parse("QmR58njnbf5NUQQ6uF9vkbHL4N1h3kFnkFcXdASEa8hQvY")
SPEC = cid_of_bytes(b"a spec")


def _posted_log(job_id: int, block: int, model: bytes = MODEL.to_bytes(), spec: bytes = SPEC.to_bytes()) -> dict[str, Any]:
    """A decoded JobPosted log; the market takes any bytes as a CID."""
    args = {"jobId": job_id, "client": "0x" + "22" * 20, "provider": "0x" + "00" * 20, "modelCid": model,
            "specCid": spec, "payment": 10**16, "claimDeadline": 2**40, "completionWindow": 600, "feeBps": 0,
            "feeRecipient": "0x" + "00" * 20, "salt": 1}
    return {"args": args, "blockNumber": block, "transactionHash": bytes([job_id]) * 32}


def test_a_job_whose_cid_bytes_are_not_a_cid_is_skipped_and_the_watcher_goes_on(tmp_path: Path) -> None:
    """The contract accepts any bytes as a CID: such a job is journaled skipped with its reason,
    the cursor moves past it, later jobs still arrive, and a rescan does not add it twice."""
    garbage = b"\x01\x02 not a cid"
    events = [_posted_log(1, 60, model=garbage), _posted_log(2, 61, spec=b""), _posted_log(3, 62)]
    seen: list[PostedJob] = []
    market = SimpleNamespace(w3=SimpleNamespace(eth=FakeEth(100)), deploy_block=0, logs=lambda ev, a, b: [
        e for e in events if a <= e["blockNumber"] and (b == "latest" or e["blockNumber"] <= b)])
    journal = Journal(tmp_path / "j.db")
    w = Watcher(market, journal, seen.append)  # type: ignore[arg-type]
    w.poll_once()
    assert journal.get_kv("cursor") == "100"
    assert [(j.job_id, j.model_cid, j.spec_cid) for j in seen] == [(3, MODEL, SPEC)], "parsed once, as CIDs"
    one, two = journal.get(1), journal.get(2)
    assert one is not None and two is not None and one.step == two.step == "skipped"
    assert one.reason == f"job 1: its model CID is not a CID: 0x{garbage.hex()}"
    assert two.reason == "job 2: its spec CID is not a CID: 0x"
    assert (one.posted["model_cid"], one.posted["spec_cid"]) == ("0x" + garbage.hex(), str(SPEC))
    view = job_view(one)  # the dashboard shows it (raw hex where the bytes are not a CID)
    assert view["spec_cid"] == str(SPEC) and view["step"] == "skipped"
    assert journal.open_jobs() == [], "never resumed"
    journal.set_kv("cursor_hash", "00" * 32)  # a reorg: rescan the same logs
    w.poll_once()
    assert [t["step"] for t in journal.timeline(1)] == ["seen", "skipped"]
    assert [j.job_id for j in seen] == [3, 3]  # the processor's journal dedupes a valid job
    journal.close()


def test_posted_from_event_refuses_bytes_that_are_not_a_cid() -> None:
    job = posted_from_event(_posted_log(4, 1))
    assert (job.model_cid, job.spec_cid, job.model_key) == (MODEL, SPEC, keccak(MODEL.to_bytes()))
    with pytest.raises(InvalidCID, match="job 5: its spec CID is not a CID: 0x1220"):
        posted_from_event(_posted_log(5, 1, spec=b"\x12\x20" + b"x" * 31))  # one byte short
    record = posted_record(_posted_log(5, 1, spec=b"\x12\x20"))
    assert (record["model_cid"], record["spec_cid"], record["job_id"]) == (str(MODEL), "0x1220", 5)
