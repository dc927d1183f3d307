"""Transient IPFS and RPC errors are retried with backoff until the job's deadline, in prepare
(spec fetch) and in deliver (upload, complete); content errors end a job at once; a job that
keeps failing, crashes included, is quarantined after MAX_ATTEMPTS attempts counted in the
journal. Runs the processor against the stand-ins of test_admission.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hearth.errors import ChainError, IPFSError, VerificationError
from hearth_node.journal import Journal, posted_to_dict
from hearth_node.processor import MAX_ATTEMPTS
from hearth_node.submitter import Submitter

from tests.node.test_admission import FakeLlama, Node, posted, running_node

TIMEOUT = IPFSError("IPFS API at http://127.0.0.1:5001 timed out on /block/get")
DOWN = IPFSError("IPFS API at http://127.0.0.1:5001 is not reachable (connection refused)")


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    yield from running_node(tmp_path, monkeypatch)


def test_spec_fetch_timeouts_are_retried(node: Node) -> None:
    job = node.post(1)
    node.ipfs.fail["cat"] += [TIMEOUT, DOWN, TIMEOUT]
    node.proc.on_posted(job)
    rec = node.wait(1)
    assert rec.step == "completed" and node.ipfs.calls["cat"] == 4
    assert rec.data["attempts"] == 0  # transient retries are no failed attempts; reading the spec resets them


def test_upload_and_complete_failures_are_retried(node: Node) -> None:
    job = node.post(1)
    node.ipfs.fail["add"] += [DOWN, TIMEOUT]
    node.chain.fail["complete_prepare"] += [ChainError("simulation failed: connection reset")]
    node.proc.on_posted(job)
    rec = node.wait(1)
    assert rec.step == "completed", rec
    assert node.ipfs.calls["add"] == 3 and node.chain.jobs[1]["state"] == "Completed"
    assert [t["step"] for t in node.journal.timeline(1)] == [
        "seen", "claim_signed", "claimed", "ran", "uploaded", "complete_signed", "completed"]


@pytest.mark.parametrize("what", ["claim", "complete"])
def test_a_failed_broadcast_is_resent_with_the_same_bytes(node: Node, what: str) -> None:
    job = node.post(1)
    node.chain.fail[f"{what}_broadcast"] += [ChainError("broadcast failed: connection refused")] * 2
    node.proc.on_posted(job)
    assert node.wait(1).step == "completed"
    assert node.chain.jobs[1]["state"] == "Completed" and len(node.chain.jobs[1]["txs"]) == 2  # one each


def test_a_complete_whose_nonce_was_taken_is_signed_again(node: Node) -> None:
    """The operator sent a transaction with the node's key: the journaled complete can never
    land. Re-sending it forever would run into the deadline and lose the collateral."""
    job = node.post(1)
    dead: list[str] = []
    broadcast = node.chain.broadcast

    def taken_once(p: Any) -> None:  # the first complete's nonce is gone for good
        if json.loads(p.raw)[0] == "complete" and (not dead or p.tx_hash == dead[0]):
            dead.append(p.tx_hash)
            raise ChainError(f"nonce {p.nonce} already used by another transaction")
        broadcast(p)

    node.chain.broadcast = taken_once  # type: ignore[method-assign]
    node.proc.on_posted(job)
    rec = node.wait(1)
    assert rec.step == "completed", rec
    assert node.chain.jobs[1]["state"] == "Completed" and len(set(dead)) == 1
    steps = [t["step"] for t in node.journal.timeline(1)]
    assert steps.count("complete_signed") == 2 and "uploaded" in steps[steps.index("complete_signed"):]


@pytest.mark.parametrize(("error", "reason"), [
    (VerificationError("block Qm... failed verification"), "failed verification"),
    (IPFSError("Qm... is 70000 bytes, over the limit of 4096"), "over the limit"),
])
def test_content_errors_end_the_job_at_once(node: Node, error: IPFSError, reason: str) -> None:
    job = node.post(1)
    node.ipfs.fail["cat"] += [error]
    node.proc.on_posted(job)
    rec = node.wait(1)
    assert rec.step == "skipped" and reason in (rec.reason or "")
    assert node.ipfs.calls["cat"] == 1 and node.chain.jobs[1]["state"] == "Posted"


def test_ipfs_down_until_the_claim_deadline_skips(node: Node) -> None:
    job = node.post(1, claim_in=1.5)
    node.ipfs.fail["cat"] += [DOWN] * 1000
    node.proc.on_posted(job)
    rec = node.wait(1)
    assert rec.step == "skipped" and "deadline passed while retrying" in (rec.reason or "")
    assert node.chain.jobs[1]["state"] == "Posted"


def test_ipfs_down_until_the_completion_deadline_expires(node: Node) -> None:
    job = node.post(1, window=5, max_tokens=4)
    node.ipfs.fail["add"] += [DOWN] * 1000
    node.proc.on_posted(job)
    rec = node.wait(1)
    assert rec.step == "expired" and "deadline passed while retrying" in (rec.reason or "")


def test_inference_that_always_fails_is_quarantined(node: Node) -> None:
    FakeLlama.fail.add("poison")
    job = node.post(1, prompt="poison", window=120)
    node.proc.on_posted(job)
    rec = node.wait(1)
    assert rec.step == "failed"
    assert rec.reason == f"quarantined after {MAX_ATTEMPTS} attempts: inference failed: llama_decode failed on 'poison'"
    assert rec.data["attempts"] == MAX_ATTEMPTS + 1  # the refused start is counted too
    healthy = node.post(2)  # the node goes on
    node.proc.on_posted(healthy)
    assert node.wait(2).step == "completed"


def test_a_job_that_crashed_the_node_is_quarantined_at_restart(node: Node) -> None:
    """Attempts are journaled before the work starts: three crashes in prepare leave three
    counted attempts, and recovery quarantines the job without touching it again."""
    job = node.post(1)
    node.journal.add(1, posted_to_dict(job))
    for _ in range(MAX_ATTEMPTS):
        node.journal.count_attempt(1)  # as three starts that each died (no last_error written)
    node.restart()
    rec = node.wait(1)
    assert rec.step == "failed" and rec.reason is not None
    assert rec.reason.startswith(f"quarantined after {MAX_ATTEMPTS} attempts: the node stopped")
    assert node.ipfs.calls["cat"] == 0


def test_recovery_counts_the_attempt_before_the_work(node: Node) -> None:
    job = node.post(1)
    node.journal.add(1, posted_to_dict(job))
    seen: list[int] = []
    cat = node.ipfs.cat

    def counting_cat(cid, max_size=None):  # type: ignore[no-untyped-def]
        rec = node.journal.get(1)
        assert rec is not None
        seen.append(rec.data.get("attempts", 0))
        return cat(cid, max_size)

    node.ipfs.cat = counting_cat  # type: ignore[method-assign]
    node.restart()
    assert node.wait(1).step == "completed"
    assert seen == [1]


def test_stopping_leaves_a_queued_claimed_job_for_the_restart(node: Node) -> None:
    FakeLlama.seconds_per_token = 0.05  # the fixture restores it
    first, second = node.post(1, max_tokens=20, window=60), node.post(2, max_tokens=20, window=60)
    node.proc.on_posted(first)
    node.proc.on_posted(second)
    node.wait(1, ("claimed",))
    node.wait(2, ("claimed",))
    FakeLlama.seconds_per_token = 0.003
    node.restart()  # the pool closes: the queued job fails with RunnerClosed, and is not failed
    assert node.wait(1).step == "completed" and node.wait(2).step == "completed"


def test_restarts_while_a_job_waits_do_not_quarantine_it(node: Node) -> None:
    """Attempts count failures in a row: a job that was fetched and read, then waits (here for
    stake to cover its collateral), survives any number of restarts."""
    node.chain.stake = 0
    job = node.post(1, window=60)
    node.proc.on_posted(job)
    for _ in range(MAX_ATTEMPTS + 1):
        end = time.monotonic() + 30
        while (rec := node.journal.get(1)) is None or rec.data.get("attempts") != 0:
            assert time.monotonic() < end, rec
            time.sleep(0.02)
        node.restart()
    node.chain.stake = 10**21
    assert node.wait(1).step == "completed"


def test_an_assigned_jobs_spec_is_tried_until_its_fetch_bound_unless_it_can_no_longer_be_declined(
        tmp_path: Path) -> None:
    """Submitter.fetch_until: an open job's spec is tried until its claim deadline; an assigned
    one's until `fetch_seconds` after the node first saw it, except past its last moment to
    decline, when it can only run (or expire), so its spec is tried as long as it could run."""
    journal = Journal(tmp_path / "journal.db")
    sub = Submitter(None, SimpleNamespace(address="0x" + "11" * 20), journal, fetch_seconds=60)  # type: ignore[arg-type]
    open_job, assigned = posted(1, claim_deadline=1_000), posted(2, claim_deadline=1_000)
    journal.add(1, posted_to_dict(open_job))
    journal.add(2, posted_to_dict(assigned), assigned=True, deadline=1_300, decline_by=500, fetch_by=160)
    assert sub.fetch_until(open_job, now=100) == 1_000
    assert sub.fetch_until(assigned, now=100) == 160
    assert sub.fetch_until(assigned, now=500) == 1_000  # past the last moment to decline: no bound
    journal.close()
