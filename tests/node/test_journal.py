"""The journal: a corrupt or foreign file is a ConfigError naming the file and what to do (the
CLI prints it as one line, no traceback), and attempts are counted durably across reopenings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hearth.dev.localnet import Localnet
from hearth.errors import ConfigError
from hearth_node.journal import Journal, JournalError


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
