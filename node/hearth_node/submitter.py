"""The submitter: sends the node's claim and complete transactions through the one injected
Sender, journaling each signed transaction before it leaves, and re-sending those bytes after a
crash so a restart never sends a second transaction for the same step. Also what retries need:
which errors are transient, and one thread that runs retries later without holding a worker."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hearth.chain.market import Market
from hearth.chain.sender import Prepared, Sender
from hearth.chain.types import PostedJob
from hearth.errors import ChainError, ContractError, IPFSError, VerificationError
from hearth.settings import crash_point_name
from web3.logs import DISCARD
from web3.types import TxReceipt

from hearth_node.journal import JobRecord, Journal, posted_from_dict

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
DONE = ("Settled", "Completed", "Disputed")  # on-chain states of a job whose result was accepted
DECLINE_MARGIN = 10  # seconds before the last moment to decline an assigned job that the node acts by
# IPFSErrors about the content itself (hearth.ipfs.fetch): the same bytes fail the same way again.
_CONTENT = ("limit", "not a file")


def first_line(e: BaseException) -> str:
    """An error's message without its hint or traceback lines, for logs and journal reasons."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def is_transient(e: BaseException) -> bool:
    """Whether trying again later may succeed: the RPC or IPFS daemon was down, refused or timed
    out. A revert, content failing its hash, an oversized or malformed spec or an invalid CID
    end the job instead."""
    if isinstance(e, ContractError | VerificationError):
        return False
    if isinstance(e, IPFSError):
        return not any(m in str(e) for m in _CONTENT)
    return isinstance(e, ChainError)



class Submitter:
    """Claim and complete transactions of one provider account."""

    def __init__(self, market: Market, sender: Sender, journal: Journal, fetch_seconds: float = 60.0) -> None:
        self.market = market
        self.sender = sender
        self.journal = journal
        self.fetch_seconds = fetch_seconds  # see fetch_until
        self.address = sender.address
        self._collateral: dict[int, int] = {}

    def collateral_for(self, payment: int) -> int:
        """The contract's collateralFor(payment): it depends on immutable settings only, so each
        payment is read once (the cache is bounded: payments are chosen by strangers)."""
        if payment not in self._collateral:
            if len(self._collateral) >= 1024:
                self._collateral.clear()
            self._collateral[payment] = self.market.collateral_for(payment)
        return self._collateral[payment]

    def deadline(self, job: PostedJob, now: float) -> float:
        """A claimed job's completion deadline, read from the chain once and journaled."""
        rec = self.journal.get(job.job_id)
        if rec is not None and "deadline" in rec.data:
            return float(rec.data["deadline"])
        try:
            deadline = self.market.job(job.job_id).deadline
        except ChainError:
            return now + job.completion_window  # an upper bound: the claim is in the past
        self.journal.note(job.job_id, deadline=deadline)
        return float(deadline)

    def assigned(self, job: PostedJob, now: float) -> tuple[PostedJob, dict[str, Any]] | None:
        """If a provider offer gave `job` to us in its post transaction (JobClaimed for us in the
        same receipt): the job as the pipeline must treat it (`act_by`) and what to journal with
        it; else None. Read before the job is journaled, so an RPC error leaves it unjournaled
        for the watcher to hand over again."""
        if job.provider.lower() != self.address.lower():
            return None
        receipt = self.market.w3.eth.get_transaction_receipt(job.tx_hash)  # type: ignore[arg-type]
        claims = self.market.contract.events.JobClaimed().process_receipt(receipt, errors=DISCARD)
        mine = [e for e in claims if int(e["args"]["jobId"]) == job.job_id and e["args"]["provider"] == self.address]
        if not mine:
            return None
        deadline = int(mine[0]["args"]["completionDeadline"])
        job, last = self.act_by(job, deadline, now)
        return job, {"assigned": True, "deadline": deadline, "decline_by": last, "fetch_by": now + self.fetch_seconds}

    def fetch_until(self, job: PostedJob, now: float) -> float:
        """Until when a transient failure to fetch a job's spec is tried again: its claim deadline,
        or for a job an offer assigned, `fetch_seconds` after the node first saw it (then it
        declines: a client posting specs nobody can fetch holds the node's open-job slots, which
        the offers count on chain, no longer). One fetch may itself take up to its timeout. Past
        the last moment to decline there is no bound: the job can only run or expire."""
        rec = self.journal.get(job.job_id)
        data = rec.data if rec is not None else {}
        if "fetch_by" not in data or now >= float(data.get("decline_by", 0)):
            return job.claim_deadline
        return min(job.claim_deadline, float(data["fetch_by"]))

    @staticmethod
    def act_by(job: PostedJob, deadline: int, now: float) -> tuple[PostedJob, int]:
        """An assigned job as the pipeline must treat it, and the last moment the node declines
        it by. Until that moment (the contract's, less a margin) its claim deadline is that
        moment: the node runs it or gives it back by then. A job first seen after it (the node
        was down, or behind) can no longer be given back, only run or left to expire: its claim
        deadline is then its completion deadline less the margin, so it still runs if it fits."""
        last = deadline - job.completion_window // 2 - DECLINE_MARGIN
        return replace(job, claim_deadline=last if now < last else deadline - DECLINE_MARGIN), last

    def decline_if_assigned(self, job_id: int, reason: str, now: float | None = None) -> None:
        """Give back an assigned job the node will not run (the client is refunded, our
        collateral freed) on a thread of its own, retrying until the last moment to decline."""
        rec = self.journal.get(job_id)
        if rec is None or not rec.data.get("assigned"):
            return
        job = posted_from_dict(rec.posted)
        decline_by = float(rec.data.get("decline_by", job.claim_deadline))
        if (time.time() if now is None else now) > decline_by + DECLINE_MARGIN:  # the contract would refuse
            self.journal.note(job_id, decline_done=True)  # nothing left to send
            log.warning("job %d: too late to decline; it will expire", job_id)
            return
        job = replace(job, claim_deadline=int(decline_by))
        threading.Thread(target=self._decline, args=(job, reason), name=f"decline-{job_id}", daemon=True).start()

    def _decline(self, job: PostedJob, reason: str) -> None:
        fn = self.market.fn("decline", job.job_id, job.terms.with_provider(self.address).as_tuple())
        crash_point("decline")
        delay = 1.0
        while True:
            try:
                self.sender.transact(fn)
                self.journal.note(job.job_id, decline_done=True)
                log.info("job %d declined: %s", job.job_id, reason)
                return
            except ContractError as e:  # too late, or already moved on: it can only expire now
                self.journal.note(job.job_id, decline_done=True)
                log.warning("job %d: could not decline (%s)", job.job_id, e.name)
                return
            except ChainError as e:
                if time.time() + delay > job.claim_deadline + DECLINE_MARGIN:
                    log.warning("job %d: could not decline before its last moment (%s)", job.job_id, first_line(e))
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def to_admit(self, job: PostedJob, now: float) -> tuple[int, PostedJob]:
        """The collateral a claim of `job` would lock, and the job as admission must fit it. An
        assigned job's collateral is locked already, and its window runs from its post: it must
        fit the time left, not the whole window."""
        if not self.is_assigned(job.job_id):
            return self.collateral_for(job.payment), job
        return 0, replace(job, completion_window=int(self.deadline(job, now) - now))

    def is_assigned(self, job_id: int) -> bool:
        rec = self.journal.get(job_id)
        return rec is not None and bool(rec.data.get("assigned"))

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
        self.journal.advance_with(job_id, f"{what}_signed", None, {
            f"{what}_tx": tx.tx_hash, f"{what}_raw": tx.raw.hex(), f"{what}_nonce": tx.nonce,
            f"{what}_versions": [[tx.tx_hash, tx.raw.hex()]],
        })
        crash_point(f"{what}_signed")
        self.sender.broadcast(tx)
        crash_point(f"{what}_sent")
        try:
            receipt = self._see_mined(job_id, what, tx)
        except ChainError:
            # Two providers can both pass simulation within one block; the later claim reverts.
            if what == "claim" and self.market.current_terms(job_id).provider != self.address:
                log.info("job %d: another provider claimed it first", job_id)
                self.journal.advance(job_id, "lost", "another provider claimed it first")
                raise Lost() from None
            raise
        self.journal.advance_with(job_id, "claimed" if what == "claim" else "completed", None,
                                  {f"{what}_gas": int(receipt["gasUsed"]), f"{what}_block": int(receipt["blockNumber"])})

    def _see_mined(self, job_id: int, what: str, tx: Prepared, previous: list[Prepared] | None = None) -> TxReceipt:
        """Wait for `tx` (or an earlier version) to be mined, re-signing it with bumped fees
        while it is not (public chains: a rising base fee strands an under-priced transaction
        past the job's deadline); every new version is journaled before it is broadcast."""
        rec = self.journal.get(job_id)
        deadline: float | None = None
        if rec is not None and what == "claim":
            deadline = float(rec.posted["claim_deadline"])
        elif rec is not None:  # the completion deadline drives how hard a stuck complete is bumped
            deadline = rec.data.get("deadline")
            if deadline is None:
                try:
                    deadline = float(self.market.job(job_id).deadline)
                    self.journal.note(job_id, deadline=deadline)
                except ChainError:
                    deadline = None  # unknown: bump at the normal pace

        def journal_version(v: Prepared) -> None:
            cur = self.journal.get(job_id)
            versions = list(cur.data.get(f"{what}_versions", [])) if cur is not None else []
            self.journal.note(job_id, **{f"{what}_tx": v.tx_hash, f"{what}_raw": v.raw.hex(), f"{what}_nonce": v.nonce,
                                         f"{what}_versions": [*versions, [v.tx_hash, v.raw.hex()]]})

        return self.sender.send(tx, deadline, on_signed=journal_version, previous=previous or [])

    def resend(self, job_id: int, what: str, rec: JobRecord) -> bool:
        """Re-send a journaled transaction (every signed version) until mined; False when its
        nonce was taken by another transaction of this account (e.g. the operator's own, sent
        with the same key while the node ran): those bytes can never land and must be re-signed."""
        nonce = int(rec.data[f"{what}_nonce"])
        versions = [Prepared(h, bytes.fromhex(raw), nonce) for h, raw in rec.data.get(f"{what}_versions", [])]
        if not versions:  # journals written before replacement existed hold one version
            versions = [Prepared(rec.data[f"{what}_tx"], bytes.fromhex(rec.data[f"{what}_raw"]), nonce)]
        try:
            receipt = self._see_mined(job_id, what, versions[-1], versions[:-1])
            self.journal.advance_with(job_id, rec.step, f"re-sent {what} transaction 0x{bytes(receipt['transactionHash']).hex()}",
                                      {f"{what}_gas": int(receipt["gasUsed"])})
        except (ChainError, IPFSError) as e:
            log.info("job %d: re-sending %s gave %s", job_id, what, e)
            return "already used by another transaction" not in str(e)
        return True

    def recover(self, start: Callable[[PostedJob], None]) -> None:
        """After a restart: settle each open job against the chain and hand those still ours
        to do to `start`. Signed-but-unconfirmed transactions are re-sent first, in nonce
        order and before any new transaction is signed, so no new transaction takes their nonce."""
        open_jobs = self.journal.open_jobs()
        signed = [r for r in open_jobs if r.step.endswith("_signed")]
        signed.sort(key=lambda r: int(r.data.get(r.step.replace("_signed", "_nonce"), 0)))
        for rec in signed + [r for r in open_jobs if not r.step.endswith("_signed")]:
            try:
                self._recover_one(rec, start)
            except Exception as e:  # noqa: BLE001
                log.exception("recovering job %d failed: %s", rec.job_id, e)
            if rec in signed and rec is signed[-1]:
                self.sender.resync()
        self.sender.resync()
        # Declines go out on threads of their own after the job is journaled as ended: one the
        # last run did not see through is sent again while the contract still takes it.
        for rec in self.journal.undeclined():
            self.decline_if_assigned(rec.job_id, rec.reason or rec.step)

    def _recover_one(self, rec: JobRecord, start: Callable[[PostedJob], None]) -> None:
        job = posted_from_dict(rec.posted)
        slot = self.market.job(job.job_id)
        log.info("recovering job %d at step %s (on-chain: %s)", job.job_id, rec.step, slot.state)
        if rec.step.endswith("_signed"):
            self.resend(job.job_id, rec.step.removesuffix("_signed"), rec)  # in nonce order
            slot = self.market.job(job.job_id)
        state = slot.state
        if rec.step in ("seen", "claim_signed") and state == "Posted":
            start(job)  # not claimed (yet): prepare it, or keep confirming the claim
            return
        if rec.step == "seen" and state == "Claimed" and self.market.current_terms(job.job_id).provider == self.address:
            # ours with no claim of ours: an offer assigned it, and it was not started yet
            job, last = self.act_by(job, slot.deadline, time.time())
            bound = {} if "fetch_by" in rec.data else {"fetch_by": time.time() + self.fetch_seconds}  # not one per restart
            self.journal.note(job.job_id, assigned=True, deadline=slot.deadline, decline_by=last, **bound)
            start(job)  # prepare it: run it, or decline it in time (or, too late for that, run it)
            return
        if rec.step == "seen":
            self.journal.advance(job.job_id, "lost", f"on-chain state {state} at restart")
            return
        if rec.step == "claim_signed":
            if self.market.current_terms(job.job_id).provider != self.address:
                self.journal.advance(job.job_id, "lost", "another provider claimed it")
                return
            self.journal.advance(job.job_id, "claimed")
        if state in DONE:
            self.journal.advance(job.job_id, "completed", f"on-chain state {state} at restart")
        elif state != "Claimed":
            self.journal.advance(job.job_id, "expired", f"on-chain state {state} at restart")
        else:
            self.journal.note(job.job_id, deadline=slot.deadline)
            start(job)



class Later:
    """Runs callables after a delay on one thread (retry backoff, periodic looks), so waiting
    for a retry never holds a worker thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="later", daemon=True)
        self._thread.start()

    def call(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` in `delay` seconds (never, once stopped)."""
        with self._cond:
            if not self._stopped:
                heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
                self._cond.notify()

    def stop(self) -> None:
        """Drop what is scheduled and end the thread."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stopped:
                    return
                fn = heapq.heappop(self._heap)[2]
            try:
                fn()
            except Exception:  # noqa: BLE001  (one callback's failure never stops the others)
                log.exception("scheduled call failed")
