"""After `complete`: getting paid, and auditing others.

A provider is paid only after its job's window (`settle`) or once an audit upholds its result,
and when audited it must open its commitment. It is also drawn as an auditor of other providers'
jobs of its reproducibility class. This loop does both from the chain's state on every pass, so
a restart loses nothing (the salts are derived from the key, the assigned audits kept in the
journal's key-value table):
- own completed jobs: settle after the window (all that are due in one settleMany, which costs
  less per job), or startAudit when drawn; reveal once the auditor has committed; finalize when a
  tiebreaker can be drawn or a phase ran out of time;
- assigned audits: re-run the job exactly as its provider should have, commit, then reveal."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hearth import settings
from hearth.chain.types import Completion, JobTerms, PostedJob, result_commitment
from hearth.dev.devnet import transact_past_deadline
from hearth.errors import ContractError, HearthError
from hearth.formats.jobspec import canonical, output_hash
from hearth.formats.sealed import NotAReader

from hearth_node.journal import posted_from_dict
from hearth_node.privacy import share_with_auditor

if TYPE_CHECKING:
    from hearth_node.processor import Processor

REVEAL_GAS = 250_000  # at least: a reveal that ends a tiebreak round pays four parties (gas table: ~100k for two)
log = logging.getLogger("hearth.node.audits")
ZERO = bytes(32)
DUTIES_KEY = "audit_duties"
CURSOR_KEY = "audit_cursor"
SETTLE_BATCH_MAX = 50  # jobs per settleMany: ~14.5k gas each after the first (README, Gas), far inside a block


def secret_salt(account: LocalAccount, job_id: int, role: str) -> bytes:
    """A salt only this key can produce, the same after a restart: no journal needed to reveal."""
    return bytes(keccak(bytes(account.key) + job_id.to_bytes(32, "big") + role.encode()))


def delivered_output(output: str) -> str:
    """What the node delivers for its own job: the output, or, under HEARTH_TEST_WRONG_OUTPUT=1,
    a corrupted one (a cheater the audits must catch)."""
    return output[::-1] + " (corrupted)" if settings.wrong_output() else output


def repro_class(engine: dict[str, str], n_ctx: int, n_threads: int, n_gpu_layers: int) -> bytes:
    """The hash of what makes this node's outputs reproducible: the llama.cpp build and what it
    reports of the machine (instruction sets, backend), and the settings that can change an
    output. Thread count is in it: it should not change results on the CPU, but two honest
    nodes that differ in anything not shown to be harmless must not judge each other."""
    return bytes(keccak(canonical({"engine": engine, "n_ctx": n_ctx, "n_threads": n_threads,
                                   "n_gpu_layers": n_gpu_layers})))


class Audits:
    """The after-completion loop of one provider node."""

    def __init__(self, processor: Processor, devnet: bool, poll: float = 1.0, settle_delay: float = 0.0) -> None:
        self.p = processor
        self.devnet = devnet
        self.settle_delay = settle_delay
        self.market = processor.market
        self.me = processor.address
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outputs: dict[int, bytes] = {}  # audited job -> our output hash
        self._completions: dict[int, tuple[JobTerms, Completion]] = {}
        self._shared: set[tuple[int, str]] = set()  # (job, auditor) given a private job's key
        # Own completed jobs inside their window are not read again before it ends unless an
        # audit or a dispute of them shows up in the logs: one read per job per second had the
        # node spend more CPU on this loop than on claiming and completing.
        self._quiet_until: dict[int, float] = {}
        self._touched: set[int] = set()  # own jobs an AuditStarted or JobDisputed log named
        # Own jobs past their window, not drawn for audit, waiting to be paid with the others:
        # job -> (terms, completion, end of its window).
        self._due: dict[int, tuple[JobTerms, Completion, int]] = {}
        raw = processor.journal.get_kv(DUTIES_KEY)
        self.duties: set[int] = set(json.loads(raw)) if raw else set()
        cursor = processor.journal.get_kv(CURSOR_KEY)
        self.cursor = int(cursor) if cursor else self.market.deploy_block

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="audits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except HearthError as e:  # RPC trouble: the next pass reads the chain again
                log.warning("audits: %s", str(e).splitlines()[0])
            except Exception:  # noqa: BLE001  (the loop must outlive any one job)
                log.exception("audits: unexpected error")
            self._stop.wait(self.poll)

    def tick(self) -> None:
        """One pass over assigned audits and own completed jobs."""
        head = self.market.head_number()
        self._scan(head)
        now = time.time()
        unpaid = self.p.journal.unpaid()
        unpaid_ids = {rec.job_id for rec in unpaid}
        self._touched &= unpaid_ids  # the logs name other providers' jobs too
        for rec in unpaid:
            job_id = rec.job_id
            touched = job_id in self._touched
            if job_id in self._due and not touched:  # waits for the batch (a dispute in a late block: not)
                continue
            if touched or now >= self._quiet_until.get(job_id, 0.0):
                self._due.pop(job_id, None)
                try:
                    self._own(posted_from_dict(rec.posted), rec.data)
                except HearthError as e:  # one job's trouble must not hold up the others' payment
                    log.warning("audits: job %d: %s", job_id, str(e).splitlines()[0])
                    self._completions.pop(job_id, None)  # read afresh next time (a reorg may have moved it)
                else:
                    self._touched.discard(job_id)
        self._settle_due(unpaid_ids)
        for job_id in sorted(self.duties):
            self._duty(job_id, head)

    # ---------------------------------------------------------------- own jobs

    def _done(self, job_id: int, terms: JobTerms) -> tuple[JobTerms, Completion]:
        if job_id not in self._completions:
            self._completions[job_id] = (terms, self.market.completion(job_id))
        return self._completions[job_id]

    def _own(self, posted: PostedJob, data: dict[str, Any]) -> None:
        job_id, terms = posted.job_id, posted.terms.with_provider(self.me)
        slot = self.market.job(job_id)
        self._quiet_until.pop(job_id, None)
        if slot.state in ("Settled", "Refunded"):
            self.p.journal.note(job_id, payout=slot.state)
            self._completions.pop(job_id, None)
            if slot.state == "Settled":  # what JobSettled paid, which the window and audits decide
                settled = self.market.logs("JobSettled", self.market.deploy_block, "latest", jobId=job_id)
                self.p.metrics.earnings += sum(int(ev["args"]["providerAmount"]) for ev in settled)
            log.info("job %d %s", job_id, "paid" if slot.state == "Settled" else "REFUNDED to the client (audit)")
            return
        terms, done = self._done(job_id, terms)
        if slot.state == "Completed":
            if time.time() <= slot.deadline + 1:  # the block that settles must be later than it
                self._quiet_until[job_id] = slot.deadline + 1.0
                return
            if self._drawn(job_id, terms, done):
                log.info("job %d drawn for audit", job_id)
                self._send("startAudit", job_id, terms.as_tuple(), done.as_tuple())
            else:
                self._due[job_id] = (terms, done, slot.deadline)
        elif slot.state in ("Audited", "Disputed"):
            au = self.market.audit(job_id)
            auditor = au.auditors[au.round]
            if slot.state == "Audited" and au.phase == "Commit" and (job_id, auditor) not in self._shared:
                # a private job: the auditor needs its key, which only client and provider hold
                share_with_auditor(self.market, self.p.sender, self.p.account, self.p.ipfs, posted, auditor)
                self._shared.add((job_id, auditor))
            elif slot.state == "Audited" and au.phase == "Reveal" and au.provider_output == ZERO:
                out = output_hash(delivered_output(str(data["run"]["output"])))
                self._send("reveal", job_id, terms.as_tuple(), done.as_tuple(), self.me, out,
                           secret_salt(self.p.account, job_id, "result"))
            else:
                self._move(job_id, slot.state, slot.deadline, au.phase, terms, done)

    def _drawn(self, job_id: int, terms: JobTerms, done: Completion) -> bool:
        """Whether the job was drawn for audit. The draw reads the hash of the completion block,
        which an idle automining devnet may not have followed with another block yet: mine one
        (as transact_past_deadline does); a public chain's next block comes by itself."""
        try:
            return self.market.audit_selected(job_id, terms, done)
        except ContractError as e:
            if not self.devnet or e.name != "RandomnessNotReady":
                raise
        self.market.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        return self.market.audit_selected(job_id, terms, done)

    def _settle_due(self, unpaid: set[int]) -> None:
        """Pay the jobs due, all at once, when the first of them has waited settle_delay past its
        window: one settleMany costs less per job than a settle each, and a longer delay gathers
        more jobs into it. If the batch is refused (someone settled one of them first), each is
        settled on its own; either way the next pass reads what happened to them."""
        for job_id in set(self._due) - unpaid:  # paid, or refunded, as another pass noted
            del self._due[job_id]
        if not self._due or time.time() < min(end for _, _, end in self._due.values()) + 1 + self.settle_delay:
            return
        due = sorted(self._due.items())[:SETTLE_BATCH_MAX]
        for job_id, _ in due:
            del self._due[job_id]
        if len(due) > 1:
            try:
                self._send("settleMany", [j for j, _ in due], [t.as_tuple() for _, (t, _, _) in due],
                           [c.as_tuple() for _, (_, c, _) in due])
                return
            except ContractError as e:
                log.info("settleMany of %d jobs refused (%s): settling them one by one", len(due), e)
        for job_id, (terms, done, _) in due:
            try:
                self._send("settle", job_id, terms.as_tuple(), done.as_tuple())
            except ContractError as e:
                log.info("job %d: settle refused (%s)", job_id, e)

    def _move(self, job_id: int, state: str, deadline: int, phase: str, terms: JobTerms, done: Completion) -> None:
        """finalize, when it can do something: draw a tiebreaker (from the hash of the block of the
        last reveal, so in any later block), or end a phase past its deadline."""
        if (state == "Audited" and phase == "Draw") or time.time() > deadline:
            try:
                self._send("finalize", job_id, terms.as_tuple(), done.as_tuple())
            except ContractError as e:  # another party moved it first, or the clock is ahead of the chain
                log.info("job %d: finalize not yet (%s)", job_id, e.name)

    # ---------------------------------------------------------------- audits of others

    def _scan(self, head: int) -> None:
        if head < self.cursor:
            return
        for ev in self.market.logs("AuditorAssigned", self.cursor, head, auditor=self.me):
            self.duties.add(int(ev["args"]["jobId"]))
            log.info("drawn to audit job %d (round %d)", ev["args"]["jobId"], ev["args"]["round"])
        for name in ("AuditStarted", "JobDisputed"):  # own jobs leaving their quiet window early
            self._touched.update(int(ev["args"]["jobId"]) for ev in self.market.logs(name, self.cursor, head))
        self.cursor = head + 1
        self.p.journal.set_kv(DUTIES_KEY, json.dumps(sorted(self.duties)))
        self.p.journal.set_kv(CURSOR_KEY, str(self.cursor))

    def _duty(self, job_id: int, head: int) -> None:
        slot = self.market.job(job_id)
        if slot.state not in ("Audited", "Disputed"):
            self.duties.discard(job_id)
            self._outputs.pop(job_id, None)
            self.p.journal.set_kv(DUTIES_KEY, json.dumps(sorted(self.duties)))
            return
        au = self.market.audit(job_id)
        if self.me not in au.auditors:
            return
        i = au.auditors.index(self.me)
        terms, done = self._done(job_id, self.market.current_terms(job_id))
        salt = secret_salt(self.p.account, job_id, "audit")
        if slot.state == "Audited" and au.phase == "Commit" and i == au.round:
            try:
                out = self._rerun(job_id)
            except NotAReader:  # a private job whose provider has not shared its key with us yet
                return
            self._send("commitAudit", job_id, result_commitment(job_id, self.me, out, salt))
        elif slot.state == "Audited" and au.phase == "Reveal" and au.outputs[i] == ZERO and au.commits[i] != ZERO:
            self._send("reveal", job_id, terms.as_tuple(), done.as_tuple(), self.me, self._rerun(job_id), salt)
        else:
            self._move(job_id, slot.state, slot.deadline, au.phase, terms, done)

    def _rerun(self, job_id: int) -> bytes:
        """Our output hash for an audited job: the job run as any provider of the class runs it."""
        if job_id not in self._outputs:
            posted = self.market.posted(job_id)
            spec, _ = self.p._load_spec(posted)  # a private job: opened with the key its provider shared
            self.p.keys.forget(job_id)
            runner = self.p.runners.acquire(self.p._model_path(posted))
            try:
                r = runner.submit(spec).result()
            finally:
                self.p.runners.release(runner)
            self._outputs[job_id] = output_hash(r.output)
            log.info("audit of job %d: re-ran it (%d tokens)", job_id, r.completion_tokens)
        return self._outputs[job_id]

    def _send(self, name: str, *args: Any) -> None:
        # The last reveal of a round ends it and pays everyone: estimated while another party's
        # reveal is pending in the same block, ours would be the first (cheap) one and run out.
        transact_past_deadline(self.p.sender, self.market.fn(name, *args), self.devnet,
                               REVEAL_GAS if name == "reveal" else 0)
        log.info("%s job %s", name, args[0])
