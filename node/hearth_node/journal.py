"""The node's journal (SQLite): every step of every job is durable before the next begins.

Steps of a job, in order:
    seen -> claim_signed -> claimed -> ran -> uploaded -> complete_signed -> completed
with terminal side exits: skipped (guardian said no), lost (another provider claimed first),
expired (deadline passed), failed (an error we cannot retry, or quarantined after too many
attempts). A signed transaction is stored (raw bytes and hash) before it is broadcast, so after a
crash the very same transaction is re-sent, never a second one. Each start of work on a job is
counted (`attempts`) before the work begins, so a job that crashes the node is seen at restart.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hearth.chain.types import PostedJob, cid_text
from hearth.errors import ConfigError
from hearth.formats.cid import CID

STEPS = ("seen", "claim_signed", "claimed", "ran", "uploaded", "complete_signed", "completed")
TERMINAL = ("completed", "skipped", "lost", "expired", "failed")
FORMAT = 2  # 2: a posted job's CIDs are kept as text (1: as the hex of their bytes)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    step TEXT NOT NULL,
    posted TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    reason TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    job_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS timeline_job ON timeline(job_id);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JournalError(ConfigError):
    """The journal file cannot be used (not SQLite, corrupt, or locked by another node)."""


@dataclass
class JobRecord:
    """One journaled job."""

    job_id: int
    step: str
    posted: dict[str, Any]
    data: dict[str, Any]
    reason: str | None
    updated: float


class Journal:
    """Thread-safe SQLite journal with synchronous=FULL commits."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # A damaged file can open and still fail later, mid-job: check it all now.
            problems = [str(r[0]) for r in self._db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            self._db.executescript(SCHEMA)
            _cids_as_text(self._db)
        except sqlite3.DatabaseError as e:
            self._db.close()
            if "locked" in str(e).lower() or "busy" in str(e).lower():
                raise JournalError(f"the journal {path} is locked ({e})",
                                   hint="is another node running with the same data_dir? stop it first") from None
            raise JournalError(
                f"the journal {path} is not a usable SQLite database ({e})",
                hint=f"move it aside (mv {path} {path}.corrupt) and start the node again: it rescans the "
                     "chain for open jobs; jobs it had claimed and not completed are not resumed",
            ) from None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def add(self, job_id: int, posted: dict[str, Any], skipped: str | None = None, **data: Any) -> bool:
        """Record a newly seen job (with `data`); False if it was already known. With a `skipped`
        reason it is recorded as seen and skipped in one transaction (a job that must never be
        resumed)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs(job_id, step, posted, reason, updated, data) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, "skipped" if skipped else "seen", json.dumps(posted), skipped, now, json.dumps(data)),
            )
            if cur.rowcount:
                self._db.execute("INSERT INTO timeline VALUES (?, 'seen', ?, NULL)", (job_id, now))
                if skipped:
                    self._db.execute("INSERT INTO timeline VALUES (?, 'skipped', ?, ?)", (job_id, now, skipped))
            self._db.execute("COMMIT")
            return bool(cur.rowcount)

    def advance(self, job_id: int, step: str, reason: str | None = None, **data: Any) -> None:
        """Move a job to `step`, merging `data` into its record, in one transaction."""
        self.advance_with(job_id, step, reason, data)

    def advance_with(self, job_id: int, step: str, reason: str | None, data: dict[str, Any]) -> None:
        """`advance` with the data as a dict (for computed keys)."""
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT data FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            merged = {**json.loads(row[0]), **data} if row else data
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE jobs SET step=?, data=?, reason=COALESCE(?, reason), updated=? WHERE job_id=?",
                (step, json.dumps(merged), reason, now, job_id),
            )
            self._db.execute("INSERT INTO timeline VALUES (?, ?, ?, ?)", (job_id, step, now, reason))
            self._db.execute("COMMIT")

    def count_attempt(self, job_id: int) -> int:
        """Count one more start of work on a job, durably, before the work begins; the count."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT data FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            data = json.loads(row[0]) if row else {}
            data["attempts"] = int(data.get("attempts", 0)) + 1
            self._db.execute("UPDATE jobs SET data=? WHERE job_id=?", (json.dumps(data), job_id))
            self._db.execute("COMMIT")
            return int(data["attempts"])

    def note(self, job_id: int, **data: Any) -> None:
        """Merge `data` into a job's record without moving it (no timeline entry)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT data FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row:
                merged = {**json.loads(row[0]), **data}
                self._db.execute("UPDATE jobs SET data=? WHERE job_id=?", (json.dumps(merged), job_id))
            self._db.execute("COMMIT")

    def forget_unclaimed(self, job_id: int, tx_hash: str) -> bool:
        """Drop the record of a job posted by `tx_hash` if nothing was signed for it (step seen or
        skipped): a reorg replaced that posting, and the id may now name another job. True if dropped."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT step, posted FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            gone = bool(row) and row[0] in ("seen", "skipped") and json.loads(row[1]).get("tx_hash") == tx_hash
            if gone:
                self._db.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))
                self._db.execute("DELETE FROM timeline WHERE job_id=?", (job_id,))
            self._db.execute("COMMIT")
            return gone

    def get(self, job_id: int) -> JobRecord | None:
        """One job's record."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, step, posted, data, reason, updated FROM jobs WHERE job_id=?", (job_id,)
            ).fetchone()
        return _record(row) if row else None

    def jobs(self, step: str | None = None, limit: int = 1000) -> list[JobRecord]:
        """Jobs, newest first, optionally in one step."""
        q = "SELECT job_id, step, posted, data, reason, updated FROM jobs"
        args: tuple[Any, ...] = ()
        if step:
            q += " WHERE step=?"
            args = (step,)
        q += " ORDER BY job_id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(q, (*args, limit)).fetchall()
        return [_record(r) for r in rows]

    def unpaid(self) -> list[JobRecord]:
        """Completed jobs whose payout (settled or refunded) is not known yet, oldest first; all
        of them, however long the history (a busy node's list of completed jobs only grows)."""
        q = ("SELECT job_id, step, posted, data, reason, updated FROM jobs"
             " WHERE step='completed' AND json_extract(data, '$.payout') IS NULL ORDER BY job_id")
        with self._lock:
            rows = self._db.execute(q).fetchall()
        return [_record(r) for r in rows]

    def undeclined(self) -> list[JobRecord]:
        """Jobs an offer assigned that ended here (skipped or failed) with their decline not seen
        through yet, however long the history (every other provider's job is journaled too)."""
        q = ("SELECT job_id, step, posted, data, reason, updated FROM jobs WHERE step IN ('skipped', 'failed')"
             " AND json_extract(data, '$.assigned') AND json_extract(data, '$.decline_done') IS NULL ORDER BY job_id")
        with self._lock:
            rows = self._db.execute(q).fetchall()
        return [_record(r) for r in rows]

    def open_jobs(self) -> list[JobRecord]:
        """Jobs not in a terminal step, oldest first (what a restart resumes)."""
        marks = ",".join("?" * len(TERMINAL))
        with self._lock:
            rows = self._db.execute(
                f"SELECT job_id, step, posted, data, reason, updated FROM jobs WHERE step NOT IN ({marks}) "  # noqa: S608
                "ORDER BY job_id",
                TERMINAL,
            ).fetchall()
        return [_record(r) for r in rows]

    def timeline(self, job_id: int) -> list[dict[str, Any]]:
        """Every step a job went through, with times."""
        with self._lock:
            rows = self._db.execute(
                "SELECT step, at, detail FROM timeline WHERE job_id=? ORDER BY rowid", (job_id,)
            ).fetchall()
        return [{"step": s, "at": at, "detail": d} for s, at, d in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per step."""
        with self._lock:
            rows = self._db.execute("SELECT step, COUNT(*) FROM jobs GROUP BY step").fetchall()
        return {s: int(n) for s, n in rows}

    def get_kv(self, key: str) -> str | None:
        """A stored value (cursor, ...)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_kv(self, key: str, value: str) -> None:
        """Store a value durably."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))


def _record(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(int(row[0]), row[1], json.loads(row[2]), json.loads(row[3]), row[4], float(row[5]))


def posted_to_dict(job: PostedJob) -> dict[str, Any]:
    """A JobPosted event as the journal stores it: CIDs as text, the model key as hex (the same
    shape as `posted_record`, which journals a job whose CIDs do not parse)."""
    d = {f.name: getattr(job, f.name) for f in fields(job)}
    d.update(model_key=job.model_key.hex(), model_cid=str(job.model_cid), spec_cid=str(job.spec_cid))
    return d


def posted_from_dict(d: dict[str, Any]) -> PostedJob:
    """The JobPosted event back from the journal, its CIDs parsed once here (only a job that was
    parsed when it was seen is ever resumed)."""
    d = dict(d)
    d.update(model_key=bytes.fromhex(d["model_key"]), model_cid=CID.parse(d["model_cid"]),
             spec_cid=CID.parse(d["spec_cid"]))
    return PostedJob(**d)


_OLD_HEX = re.compile(r"[0-9a-f]*")  # no CID text is all lowercase hex (Qm..., bafy..., bafk..., 0x...)


def _cids_as_text(db: sqlite3.Connection) -> None:
    """Journals written before format 2 kept the CIDs of a posted job as the hex of their bytes:
    rewrite them as text, once."""
    if db.execute("SELECT value FROM kv WHERE key='format'").fetchone():
        return
    db.execute("BEGIN IMMEDIATE")
    for job_id, text in db.execute("SELECT job_id, posted FROM jobs").fetchall():
        posted = json.loads(text)
        for k in ("model_cid", "spec_cid"):
            if isinstance(posted.get(k), str) and _OLD_HEX.fullmatch(posted[k]):
                posted[k] = cid_text(bytes.fromhex(posted[k]))
        db.execute("UPDATE jobs SET posted=? WHERE job_id=?", (json.dumps(posted), job_id))
    db.execute("INSERT INTO kv VALUES ('format', ?)", (str(FORMAT),))
    db.execute("COMMIT")
