"""Reorgs of depth 2 and 3 (anvil_reorg) against the watcher on a real anvil: with a confirmation
depth at least the reorg's, a job from a replaced block is never handed on; with less, the reorg
lands below the cursor, is detected, and the posting that replaced the old one is read again."""

from __future__ import annotations

from pathlib import Path

import pytest
from hearth.chain.sender import Sender
from hearth.chain.types import PostedJob
from hearth_node.journal import Journal, posted_to_dict
from hearth_node.watcher import Watcher

from tests.chain.conftest import MODEL, SPEC, Chain, rpc

OTHER_SPEC = bytes.fromhex("1220") + bytes(range(32))


def _post(chain: Chain, sender: Sender, spec: bytes) -> str:
    """Post a job; its transaction hash."""
    m = chain.market()
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    receipt = sender.transact(m.fn("postJob", m.post_params(MODEL, spec, 10**15, now + 3600, 600)))
    return "0x" + bytes(receipt["transactionHash"]).hex()


def _reorg_with_other_job(chain: Chain, depth: int, sender: Sender) -> str:
    """Replace the last `depth` blocks by a branch whose first block posts a job with OTHER_SPEC
    from `sender`; that job's transaction hash."""
    m = chain.market()
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    tx = sender.prepare(m.fn("postJob", m.post_params(MODEL, OTHER_SPEC, 10**15, now + 3600, 600)), gas=500_000)
    head = chain.w3.eth.block_number
    rpc(chain.w3, "anvil_reorg", depth, [["0x" + tx.raw.hex(), 0]])
    assert chain.w3.eth.block_number == head
    receipt = chain.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
    assert receipt["blockNumber"] == head - depth + 1
    return tx.tx_hash


def _watcher(chain: Chain, tmp_path: Path, confirmations: int) -> tuple[Watcher, Journal, list[PostedJob]]:
    journal = Journal(tmp_path / "j.db")
    seen: list[PostedJob] = []

    def on_posted(job: PostedJob) -> None:  # what the processor does first
        if journal.add(job.job_id, posted_to_dict(job)):
            seen.append(job)

    head = chain.w3.eth.block_number  # the module's chain is shared: start from now
    journal.set_kv("cursor", str(head))
    journal.set_kv("cursor_hash", bytes(chain.w3.eth.get_block(head)["hash"]).hex())
    return Watcher(chain.market(), journal, on_posted, confirmations=confirmations), journal, seen


@pytest.mark.parametrize("depth", [2, 3])
def test_confirmations_at_least_the_depth_never_see_the_replaced_job(
        chain: Chain, tmp_path: Path, depth: int, caplog: pytest.LogCaptureFixture) -> None:
    poster, other = chain.client(3), chain.client(4)
    w, journal, seen = _watcher(chain, tmp_path, confirmations=3)
    old = _post(chain, poster, SPEC)
    for _ in range(depth - 1):  # the job's block gets depth - 1 blocks above it: still unconfirmed
        rpc(chain.w3, "evm_mine")
        w.poll_once()
    assert seen == []
    poster.resync()  # its posting is gone with the old branch: so is its nonce
    new = _reorg_with_other_job(chain, depth, other)
    for _ in range(3):
        rpc(chain.w3, "evm_mine")
        w.poll_once()
    assert [j.tx_hash for j in seen] == [new], "only the posting of the surviving branch"
    assert seen[0].spec_cid.to_bytes() == OTHER_SPEC and old != new
    assert "reorg detected" not in caplog.text, "the reorg stayed above the cursor"
    journal.close()


@pytest.mark.parametrize("depth", [2, 3])
def test_reorg_below_the_cursor_reads_the_replacing_job(
        chain: Chain, tmp_path: Path, depth: int, caplog: pytest.LogCaptureFixture) -> None:
    """Confirmations 1, reorg deeper: the old job was seen (and nothing signed for it yet); the
    new branch posts another job under the same id. The watcher notices the cursor's block
    changed, forgets the old posting, and hands on the new one."""
    poster, other = chain.client(5), chain.client(6)
    w, journal, seen = _watcher(chain, tmp_path, confirmations=1)
    old = _post(chain, poster, SPEC)
    rpc(chain.w3, "evm_mine")
    w.poll_once()
    assert [j.tx_hash for j in seen] == [old]
    job_id = seen[0].job_id
    for _ in range(depth - 2):
        rpc(chain.w3, "evm_mine")
        w.poll_once()
    poster.resync()
    new = _reorg_with_other_job(chain, depth, other)
    rpc(chain.w3, "evm_mine")
    w.poll_once()
    assert "reorg detected" in caplog.text
    # the rescan goes 64 blocks back, so this fresh journal also meets the module's earlier jobs
    hashes = [j.tx_hash for j in seen]
    assert hashes.count(old) == 1 and hashes.count(new) == 1
    assert next(j for j in seen if j.tx_hash == new).job_id == job_id
    rec = journal.get(job_id)
    assert rec is not None and rec.posted["tx_hash"] == new and rec.step == "seen"
    journal.close()


def test_a_vanished_job_already_seen_is_skipped(chain: Chain, tmp_path: Path) -> None:
    """A reorg of depth 3 below the cursor whose branch posts nothing: the job seen from the old
    branch is skipped, never claimed."""
    poster = chain.client(7)
    w, journal, seen = _watcher(chain, tmp_path, confirmations=0)
    _post(chain, poster, SPEC)
    w.poll_once()
    assert len(seen) == 1
    rpc(chain.w3, "anvil_reorg", 3, [])
    rpc(chain.w3, "evm_mine")
    w.poll_once()
    rec = journal.get(seen[0].job_id)
    assert rec is not None and rec.step == "skipped" and "removed by a reorg" in (rec.reason or "")
    journal.close()
