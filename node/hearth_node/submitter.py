"""The submitter: sends the node's claim and complete transactions through the one injected
Sender, journaling each signed transaction before it leaves, and re-sending those bytes after a
crash so a restart never sends a second transaction for the same step."""

from __future__ import annotations

import logging
import os
from typing import Any

from hearth.chain.market import Market
from hearth.chain.sender import Prepared, Sender
from hearth.errors import ChainError, ContractError, IPFSError
from hearth.settings import crash_point_name

from hearth_node.journal import JobRecord, Journal

log = logging.getLogger("hearth.node")

def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: HEARTH_TEST_CRASH_AT=<name> makes the node
    die here exactly as `kill -9` would (no cleanup, no flush beyond what is already durable)."""
    if crash_point_name() == name:
        os._exit(137)


class Lost(Exception):
    """Another provider's claim won."""


# Contract errors that mean "someone else got there first" or "too late": expected, not failures.
LOST = {"InvalidState", "NotProvider"}
LATE = {"DeadlinePassed"}



class Submitter:
    """Claim and complete transactions of one provider account."""

    def __init__(self, market: Market, sender: Sender, journal: Journal) -> None:
        self.market = market
        self.sender = sender
        self.journal = journal
        self.address = sender.address

    def prepare_or_end(self, job_id: int, fn: Any, end_step: str) -> Prepared | None:
        """Sign `fn` after simulating it; a lost race or a passed deadline ends the job at
        `end_step` (expected, logged at info) instead of raising."""
        try:
            return self.sender.prepare(fn)
        except ContractError as e:
            if e.name in LOST or e.name in LATE:
                log.info("job %d: %s, now %s", job_id, e.name, end_step)
                self.journal.advance(job_id, end_step, e.name)
                return None
            raise

    def send_step(self, job_id: int, what: str, tx: Prepared) -> None:
        # Journal the signed transaction before it leaves: a restart re-sends these bytes.
        self.journal.advance_with(job_id, f"{what}_signed", None,
                                  {f"{what}_tx": tx.tx_hash, f"{what}_raw": tx.raw.hex(), f"{what}_nonce": tx.nonce})
        crash_point(f"{what}_signed")
        self.sender.broadcast(tx)
        crash_point(f"{what}_sent")
        try:
            receipt = self.sender.wait(tx.tx_hash)
        except ChainError:
            # Two providers can both pass simulation within one block; the later claim reverts.
            if what == "claim" and self.market.current_terms(job_id).provider != self.address:
                log.info("job %d: another provider claimed it first", job_id)
                self.journal.advance(job_id, "lost", "another provider claimed it first")
                raise Lost() from None
            raise
        self.journal.advance_with(job_id, "claimed" if what == "claim" else "completed", None,
                                  {f"{what}_gas": int(receipt["gasUsed"]), f"{what}_block": int(receipt["blockNumber"])})

    def resend(self, job_id: int, what: str, rec: JobRecord) -> None:
        raw = bytes.fromhex(rec.data[f"{what}_raw"])
        tx = Prepared(rec.data[f"{what}_tx"], raw, int(rec.data[f"{what}_nonce"]))
        try:
            self.sender.broadcast(tx)
            receipt = self.sender.wait(tx.tx_hash)
            self.journal.advance_with(job_id, rec.step, f"re-sent {what} transaction {tx.tx_hash}",
                                      {f"{what}_gas": int(receipt["gasUsed"])})
        except (ChainError, IPFSError) as e:
            log.info("job %d: re-sending %s gave %s", job_id, what, e)
