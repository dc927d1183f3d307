"""The journal: a corrupt or foreign file is a ConfigError naming the file and what to do (the
CLI prints it as one line, no traceback), attempts are counted durably across reopenings, and a
posted job's CIDs are kept as text and parsed once when read back."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from eth_utils import keccak
from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.dev.localnet import Localnet
from hearth.errors import ConfigError
from hearth.formats.cid import CID, cid_of_bytes
from hearth_node.journal import Journal, JournalError, posted_from_dict, posted_to_dict

MODEL = CID.parse("QmR58njnbf5NUQQ6uF9vkbHL4N1h3kFnkFcXdASEa8hQvY")
SPEC = cid_of_bytes(b"a spec")


def test_not_sqlite_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not a database, just some text that happens to be here\n" * 64)
    with pytest.raises(ConfigError) as info:
        Journal(path)
    assert isinstance(info.value, JournalError)
    assert str(path) in str(info.value) and "move it aside" in (info.value.hint or "")


def test_corrupt_pages_are_found_at_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    for i in range(300):
        j.add(i, {"job_id": i, "pad": "x" * 200})
    j.close()
    with sqlite3.connect(path) as db:  # fold the WAL back so the pages live in the main file
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(path.read_bytes())
    page = 4096
    for at in range(2 * page, len(raw), page):  # scribble over every page after the schema's
        raw[at:at + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    with pytest.raises(JournalError, match="not a usable SQLite database"):
        Journal(path)


def test_attempts_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    j.add(7, {"job_id": 7})
    assert j.count_attempt(7) == 1
    j.note(7, last_error="boom")
    j.close()
    j = Journal(path)
    assert j.count_attempt(7) == 2
    rec = j.get(7)
    assert rec is not None and rec.step == "seen" and rec.data == {"attempts": 2, "last_error": "boom"}
    assert [t["step"] for t in j.timeline(7)] == ["seen"]  # counting is not a step
    j.close()


def test_node_cli_reports_a_corrupt_journal_in_one_line(env: Localnet) -> None:
    from hearth.dev.devnet import dev_account

    address = dev_account(1).address.lower()
    path = env.home / "node" / f"journal-{env.deployment.chain_id}-{env.market.address.lower()}-{address}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage" * 1000)
    r = env.hearth("node", "run", "--api-port", "0", "--dev-account", "1", account=None, timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert str(path) in r.stderr and "move it aside" in r.stderr


def _job() -> PostedJob:
    return PostedJob(job_id=9, client="0x" + "22" * 20, provider=ZERO_ADDRESS, model_key=keccak(MODEL.to_bytes()),
                     model_cid=MODEL, spec_cid=SPEC, payment=10**16, claim_deadline=2**40, completion_window=600,
                     fee_bps=25, block_number=3, tx_hash="0x" + "ab" * 32, fee_recipient="0x" + "33" * 20, salt=5)


def test_a_posted_job_is_kept_with_cids_as_text_and_read_back_parsed(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    job = _job()
    j.add(job.job_id, posted_to_dict(job))
    rec = j.get(job.job_id)
    assert rec is not None and (rec.posted["model_cid"], rec.posted["spec_cid"]) == (str(MODEL), str(SPEC))
    assert posted_from_dict(rec.posted) == job
    j.close()


def test_a_journal_from_before_cids_were_text_is_converted_once(tmp_path: Path) -> None:
    """Format 1 kept a posted job's CIDs as the hex of their bytes: opening converts them (0x-hex
    where the bytes were never a CID), so an open job resumes after the upgrade."""
    path = tmp_path / "journal.db"
    Journal(path).close()
    old = {**posted_to_dict(_job()), "model_cid": MODEL.to_bytes().hex(), "spec_cid": SPEC.to_bytes().hex()}
    bad = {**old, "job_id": 10, "spec_cid": "c0ffee"}
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM kv WHERE key='format'")
        for posted, step in ((old, "claimed"), (bad, "skipped")):
            db.execute("INSERT INTO jobs(job_id, step, posted, updated) VALUES (?, ?, ?, 0)",
                       (posted["job_id"], step, json.dumps(posted)))
    j = Journal(path)
    rec, skipped = j.get(9), j.get(10)
    assert rec is not None and skipped is not None
    assert posted_from_dict(rec.posted) == _job() and [r.job_id for r in j.open_jobs()] == [9]
    assert (skipped.posted["model_cid"], skipped.posted["spec_cid"]) == (str(MODEL), "0xc0ffee")
    assert j.get_kv("format") == "2"
    j.close()


def test_unpaid_lists_every_completed_job_without_a_payout_oldest_first(tmp_path: Path) -> None:
    """The audits loop reads only these: however long the history, no paid job is read again,
    and no unpaid one is left out (a newest-first page of 1,000 would drop the oldest)."""
    j = Journal(tmp_path / "journal.db")
    for i in range(1, 1206):
        j.add(i, posted_to_dict(replace(_job(), job_id=i)))
        j.advance(i, "completed")
        if i % 300 != 1:  # 1, 301, 601, 901, 1201 are still waiting for their window or an audit
            j.note(i, payout="Settled")
    j.add(2000, posted_to_dict(replace(_job(), job_id=2000)))  # seen, not completed
    assert [r.job_id for r in j.unpaid()] == [1, 301, 601, 901, 1201]
    j.note(301, payout="Refunded")
    assert [r.job_id for r in j.unpaid()] == [1, 601, 901, 1201]
    j.close()
