"""The provider pipeline after the watcher: guardian -> fetch -> admit -> claim -> run -> put
result -> complete, every step journaled, and crash recovery that finishes each open job once.

Admission asks the guardian whether a job still finishes before its deadline; one that does
not fit now waits for a later look. Transient IPFS and RPC errors are retried with backoff until
the job's deadline (an assigned job's spec: Submitter.fetch_until); other failures are attempts
counted in the journal, and a job that fails MAX_ATTEMPTS times is quarantined."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.chain.types import PostedJob, result_commitment
from hearth.errors import ChainError, HearthError
from hearth.formats.cid import CID
from hearth.formats.jobspec import JobSpec, output_hash, parse_spec, result_body
from hearth.formats.receipt import sign_result
from hearth.ipfs.kubo import KuboClient
from hearth.settings import crash_point_name

from hearth_node import guardian
from hearth_node.admission import Ledger, Pending
from hearth_node.audits import delivered_output, secret_salt
from hearth_node.journal import TERMINAL, Journal, posted_to_dict
from hearth_node.modelstore import ModelStore
from hearth_node.privacy import JobKeys
from hearth_node.remotepin import Publisher
from hearth_node.runner import PoolBusy, RunnerPool, RunResult, Unrunnable, engine_info
from hearth_node.submitter import DONE, Later, Lost, Submitter, crash_point, is_transient
from hearth_node.submitter import first_line as _first_line

log = logging.getLogger("hearth.node")

MAX_ATTEMPTS = 3  # failed starts of a job's step in a row (crashes included) before it is quarantined
RETRY_FIRST, RETRY_MAX = 0.5, 30.0  # backoff of transient errors, seconds
RECHECK_EVERY = 1.0  # seconds between looks at waiting jobs (also on every job finished)
MEASURE_EVERY = 10.0  # seconds between speed measurements of an idle node with jobs waiting


@dataclass
class Metrics:
    """Counters for /metrics."""

    tokens_generated: int = 0
    last_tokens_per_second: float = 0.0
    earnings: int = 0
    errors: int = 0
    rpc_errors: int = 0
    inference_seconds: float = 0.0
    jobs_run: int = 0
    overheads: list[float] = field(default_factory=list)

    def count_rpc_error(self) -> None:  # one failed watcher poll
        self.rpc_errors += 1


class Processor:
    """Runs jobs for one provider account."""

    def __init__(
        self, market: Market, account: LocalAccount, sender: Sender, ipfs: KuboClient, journal: Journal,
        models: ModelStore, runners: RunnerPool, policy: guardian.Policy, model_shas: dict[CID, tuple[str, int]],
        chain_id: int, clock: Callable[[], float] = time.time,
    ) -> None:
        self.market, self.account, self.sender, self.ipfs, self.journal = market, account, sender, ipfs, journal
        self.models, self.runners, self.policy = models, runners, policy
        self.address = to_checksum_address(account.address)
        self.submitter = Submitter(market, sender, journal, policy.assigned_fetch_seconds)
        self.model_shas = model_shas  # model CID -> (sha256, size)
        self.chain_id = chain_id
        self.clock = clock
        self.metrics = Metrics()
        self.publisher: Publisher | None = None  # remote pins of specs and results, when configured
        self.keys = JobKeys(market, account, ipfs, chain_id, policy.max_spec_bytes)  # of private jobs
        # Fetches may be slow (hostile specs); admissions and claims get threads of their own.
        self._prepare = ThreadPoolExecutor(4, thread_name_prefix="prepare")
        self._claims = ThreadPoolExecutor(2, thread_name_prefix="claim")
        self._deliver = ThreadPoolExecutor(policy.max_open_jobs + 2, thread_name_prefix="deliver")
        self._later = Later()
        self.ledger = Ledger(policy)
        self._measured = time.monotonic()
        self._stopping = False
        self.engine = engine_info()
        self.retry_first, self.recheck_every, self.measure_every = RETRY_FIRST, RECHECK_EVERY, MEASURE_EVERY
        self._later.call(RECHECK_EVERY, self._tick)

    def stop(self) -> None:
        """Let in-flight work finish; what has not started resumes after a restart."""
        self._stopping = True
        self._later.stop()
        self._prepare.shutdown(wait=True, cancel_futures=True)
        self._claims.shutdown(wait=True, cancel_futures=True)
        self._deliver.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------ starting and failing

    def on_posted(self, job: PostedJob) -> None:  # a JobPosted log: journal it, ask the guardian, prepare
        mine = self.submitter.assigned(job, self.clock()) if self.journal.get(job.job_id) is None else None
        job, extra = mine or (job, {})  # an offer gave it to us: no claim; run it, or decline it in time
        if not self.journal.add(job.job_id, posted_to_dict(job), **extra):
            return
        decision = guardian.check_event(job, self.policy, int(self.clock()))
        if not isinstance(decision, guardian.Accepted):
            self._end(job.job_id, "skipped", decision.reason)
            return
        self._start(job)

    def _start(self, job: PostedJob) -> None:
        """Start (or resume) work on a job from its journaled step, counting the attempt durably
        first: a job that crashes the node is counted too, and quarantined instead of looping."""
        rec = self.journal.get(job.job_id)
        if rec is None or rec.step in TERMINAL or self._stopping:
            return
        n = self.journal.count_attempt(job.job_id)
        if n > MAX_ATTEMPTS:
            last = rec.data.get("last_error") or "the node stopped while working on it"
            log.error("job %d quarantined after %d attempts: %s", job.job_id, MAX_ATTEMPTS, last)
            self._end(job.job_id, "failed", f"quarantined after {MAX_ATTEMPTS} attempts: {last}")
            return
        if rec.step == "seen":
            self._submit(self._prepare, self.prepare, job)
        elif rec.step == "claim_signed":
            self._submit(self._claims, self._confirm_claim, job)
        elif rec.step == "claimed":
            self._submit(self._prepare, self._run, job)
        else:  # ran, uploaded, complete_signed
            self._submit(self._deliver, self.deliver, job)

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., None], job: PostedJob, *args: Any) -> None:
        def run() -> None:
            try:
                fn(job, *args)
            except Exception as e:  # noqa: BLE001  (one job's failure never stops the node)
                self._failed(job, e)

        try:
            pool.submit(run)
        except RuntimeError:  # shutting down: the journal keeps the step for the restart
            log.info("job %d left for the next start", job.job_id)

    def _failed(self, job: PostedJob, e: BaseException) -> None:  # note why, free capacity, retry later
        self.metrics.errors += 1
        log.error("job %d failed: %s", job.job_id, _first_line(e), exc_info=e)
        self._release(job.job_id)
        self.journal.note(job.job_id, last_error=_first_line(e))
        if not self._stopping:
            self._later.call(self.retry_first * 4, lambda: self._start(job))

    def _end(self, job_id: int, step: str, reason: str) -> None:
        log.info("job %d %s: %s", job_id, step, reason)
        self.journal.advance(job_id, step, reason)
        if step in ("skipped", "failed"):  # after the journal: a restart re-sends an unsent decline
            self.submitter.decline_if_assigned(job_id, reason, self.clock())  # ours already: give it back
        self._release(job_id)

    def _retry(self, job: PostedJob, e: Exception, delay: float, until: float, end: str,
               again: Callable[[float], None]) -> None:
        """A transient error: call `again(next delay)` after `delay`, unless that passes `until`."""
        if self._stopping:
            return
        delay = delay or self.retry_first
        now = self.clock()
        if now >= until:
            self._end(job.job_id, end, f"deadline passed while retrying: {_first_line(e)}")
            return
        delay = min(delay, until - now)  # a last try right at the deadline, never a give-up before it
        log.warning("job %d: %s; retrying in %.1fs", job.job_id, _first_line(e), delay)
        self._later.call(delay, lambda: again(min(delay * 2, RETRY_MAX)))

    # ------------------------------------------------------------------ prepare and admit

    def _load_spec(self, job: PostedJob) -> tuple[JobSpec, int]:
        """The spec (CID-verified, size-capped, decrypted if private: unreadable ones are skipped) and its size."""
        data = self.ipfs.cat(job.spec_cid, max_size=self.policy.max_spec_bytes)
        return parse_spec(self.keys.open_spec(job, data)), len(data)

    def _model_path(self, job: PostedJob) -> Path:
        return self.models.ensure(job.model_cid, *self.model_shas[job.model_cid])

    def prepare(self, job: PostedJob, delay: float = 0.0) -> None:
        """Fetch and check the spec and the model, then ask for admission."""
        until = self.submitter.fetch_until(job, self.clock())
        try:
            spec, spec_size = self._load_spec(job)
            until = job.claim_deadline  # a large model takes its time on first use, whoever posted the job
            path = self._model_path(job)
        except HearthError as e:
            if is_transient(e):
                self._retry(job, e, delay, until, "skipped",
                            lambda d: self._submit(self._prepare, self.prepare, job, d))
            else:  # tampered or malformed spec or model: skip, no gas spent
                self._end(job.job_id, "skipped", _first_line(e))
            return
        self._submit(self._claims, self._admit, job, Pending(job, spec, spec_size, path))

    def _admit(self, job: PostedJob, p: Pending) -> None:
        """Claim the job if it fits the node now; else wait for capacity (or skip it for good)."""
        now = self.clock()
        rec = self.journal.get(job.job_id)
        if rec is None or rec.step != "seen" or rec.posted.get("tx_hash") != job.tx_hash:
            # ended meanwhile, or a reorg removed it (its id may name another job by now)
            return
        if p.why and job.claim_deadline <= now:
            self._end(job.job_id, "skipped", f"claim deadline passed while waiting ({p.why})")
            return
        try:
            runner = self.runners.acquire(p.path)
        except PoolBusy as e:
            self._wait(p, str(e))
            return
        decision: guardian.Decision = guardian.Deferred("not decided")
        try:
            if p.tokens is None:
                p.tokens = runner.count_tokens(p.spec)
                self.journal.note(job.job_id, attempts=0)  # fetched and read: attempts count failures in a row
            decision = guardian.check_spec(job, p.spec, p.spec_size, p.tokens, self.policy, int(now))
            if isinstance(decision, guardian.Accepted):
                p.speed = runner.speed
                work = guardian.estimate_seconds(p.tokens, p.spec.params.max_tokens, self.policy, *runner.speed.snapshot())
                gen, prompt = runner.speed.fastest()
                best = None if gen is None else guardian.estimate_seconds(
                    p.tokens, p.spec.params.max_tokens, self.policy, gen, prompt)
                collateral, fit = self.submitter.to_admit(job, now)
                stake = self.market.account(self.address).stake
                decision = self.ledger.admit(fit, work, collateral, stake, runner, best)
        except ChainError as e:  # stake unreadable now: look again later
            decision = guardian.Deferred(f"RPC: {_first_line(e)}")
        except Unrunnable as e:  # it would fail after the claim: never claim it
            decision = guardian.Rejected(_first_line(e))
        finally:
            if not isinstance(decision, guardian.Accepted):
                self.runners.release(runner)
        if isinstance(decision, guardian.Rejected):
            self._end(job.job_id, "skipped", decision.reason)
        elif isinstance(decision, guardian.Deferred):
            self._wait(p, decision.reason)
        else:
            self._claim(job, p)

    def _wait(self, p: Pending, why: str) -> None:
        if why != p.why:  # once per reason, not on every look
            log.info("job %d waits: %s", p.job.job_id, why)
        out = self.ledger.wait(p, why)
        if out is not None:
            self._end(out.job.job_id, "skipped", "node busy: too many jobs already waiting")

    def _tick(self) -> None:
        try:
            self._recheck()
        finally:
            if not self._stopping:
                self._later.call(self.recheck_every, self._tick)

    def _recheck(self) -> None:
        """Hand the waiting jobs that may fit now back to admission; when nothing runs, have the
        runners they wait for measure themselves again now and then (else a speed measured in a
        slow moment would keep them waiting for good)."""
        for p in self.ledger.due(self.clock()):
            self._submit(self._claims, self._admit, p.job, p)
        if time.monotonic() - self._measured > self.measure_every:
            self._measured = time.monotonic()
            for path in self.ledger.stale():
                if (runner := self.runners.peek(path)) is not None:
                    runner.measure()

    def _release(self, job_id: int) -> None:
        """The job is over here (delivered, ended, never claimed): free its ledger entry, lease, key."""
        had, runner = self.ledger.release(job_id)
        self.keys.forget(job_id)
        if runner is not None:
            self.runners.release(runner)
        if had and not self._stopping:
            self._later.call(0, self._recheck)

    # ------------------------------------------------------------------ claim and run

    def _claim(self, job: PostedJob, p: Pending) -> None:
        if self.submitter.is_assigned(job.job_id):  # an offer gave it to us: nothing to claim
            self.journal.advance(job.job_id, "claimed")
            return self._claimed(job, p.spec)
        try:
            tx = self.submitter.prepare_or_end(job.job_id, self.market.fn("claim", job.job_id, job.terms.as_tuple()),
                                               "lost")
        except ChainError as e:  # nothing signed: admit again later
            self._release(job.job_id)
            self._wait(p, f"RPC: {_first_line(e)}")
            return
        if tx is None:
            self._release(job.job_id)
            return
        try:
            self.submitter.send_step(job.job_id, "claim", tx)
        except Lost:
            self._release(job.job_id)
            return
        except ChainError as e:  # signed and journaled: re-send those bytes until it lands
            log.warning("job %d: claim not confirmed (%s); re-sending", job.job_id, _first_line(e))
            self._later.call(self.retry_first, lambda: self._submit(self._claims, self._confirm_claim, job, p.spec))
            return
        self._claimed(job, p.spec)

    def _confirm_claim(self, job: PostedJob, spec: JobSpec | None = None, delay: float = 0.0) -> None:
        """A claim signed but not known to have landed: re-send it and read the chain."""
        rec = self.journal.get(job.job_id)
        if rec is None or rec.step != "claim_signed":
            return
        self.submitter.resend(job.job_id, "claim", rec)
        try:
            state = self.market.job(job.job_id).state
            mine = state != "Posted" and self.market.current_terms(job.job_id).provider == self.address
        except ChainError as e:
            self._retry(job, e, delay, job.claim_deadline + 60, "lost",
                        lambda d: self._submit(self._claims, self._confirm_claim, job, spec, d))
            return
        if state == "Posted":
            self._retry(job, ChainError("claim transaction not mined yet"), delay, job.claim_deadline, "lost",
                        lambda d: self._submit(self._claims, self._confirm_claim, job, spec, d))
        elif not mine:
            self._end(job.job_id, "lost", "another provider claimed it")
        else:
            self.journal.advance(job.job_id, "claimed")
            self._claimed(job, spec)

    def _claimed(self, job: PostedJob, spec: JobSpec | None) -> None:
        self.ledger.mark(job.job_id, claimed=True)
        crash_point("claimed")
        self._run(job, spec)

    def _run(self, job: PostedJob, spec: JobSpec | None = None, delay: float = 0.0) -> None:
        """Queue a claimed job on its runner, holding a lease and a ledger entry until it ends
        (an admitted job has both; one resumed after a restart or a failure takes them here)."""
        runner = self.ledger.lease(job.job_id)
        try:
            spec = spec or self._load_spec(job)[0]
            if runner is None:
                runner = self.runners.acquire(self._model_path(job))
                est = guardian.estimate_seconds(0, spec.params.max_tokens, self.policy, *runner.speed.snapshot())
                self.ledger.resume(job.job_id, runner, est)
        except (HearthError, PoolBusy) as e:
            if not isinstance(e, PoolBusy) and not is_transient(e):
                raise
            self._retry(job, e, delay, self.submitter.deadline(job, self.clock()), "expired",
                        lambda d: self._submit(self._prepare, self._run, job, spec, d))
            return
        fut = runner.submit(spec, on_start=lambda: self.ledger.mark(job.job_id, started=True))
        if crash_point_name() == "inference":
            threading.Timer(0.05, crash_point, ("inference",)).start()  # dies while the model runs
        run_spec = spec
        fut.add_done_callback(lambda f: self._submit(self._deliver, self._ran, job, run_spec, f))

    def _ran(self, job: PostedJob, spec: JobSpec, fut: Future[RunResult]) -> None:
        runner = self.ledger.ran(job.job_id)
        if runner is not None:
            self.runners.release(runner)
            self._later.call(0, self._recheck)
        exc = fut.exception()
        if exc is not None:
            if self._stopping:
                log.info("job %d not run before stopping; it runs after the restart", job.job_id)
                return
            self._failed(job, RuntimeError(f"inference failed: {_first_line(exc)}"))
            return
        r = fut.result()
        m = self.metrics
        m.tokens_generated, m.last_tokens_per_second = m.tokens_generated + r.completion_tokens, r.tokens_per_second
        m.inference_seconds, m.jobs_run = m.inference_seconds + r.seconds, m.jobs_run + 1
        self.journal.advance(job.job_id, "ran", run=asdict(r), attempts=0)
        self.deliver(job, spec)

    # ------------------------------------------------------------------ deliver

    def deliver(self, job: PostedJob, spec: JobSpec | None = None, delay: float = 0.0) -> None:
        """Sign the result, put it on IPFS (pinned) and complete on-chain, retrying transient
        errors until the completion deadline."""
        try:
            self._deliver_once(job, spec)
        except HearthError as e:
            if not is_transient(e):
                raise
            self._retry(job, e, delay, self.submitter.deadline(job, self.clock()), "expired",
                        lambda d: self._submit(self._deliver, self.deliver, job, spec, d))

    def _deliver_once(self, job: PostedJob, spec: JobSpec | None) -> None:
        rec = self.journal.get(job.job_id)
        assert rec is not None
        r = RunResult(**rec.data["run"])
        if rec.step == "ran":
            spec = spec or self._load_spec(job)[0]
            body = result_body(
                job_id=job.job_id, chain_id=self.chain_id, market=self.market.address,
                spec_cid=str(job.spec_cid), output=delivered_output(r.output), finish_reason=r.finish_reason,
                usage={"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens},
                model_sha256=spec.model_sha256, engine=self.engine, params=spec.params.as_dict(),
                timings={"inference_seconds": round(r.seconds, 4), "tokens_per_second": round(r.tokens_per_second, 2)},
                provider=self.address, commit_salt=secret_salt(self.account, job.job_id, "result"),
            )
            # a private job's result is sealed under its key (to the client)
            result_cid = self.ipfs.add(self.keys.seal_result(job, sign_result(self.account, body).to_bytes()), pin=True)
            self.journal.advance(job.job_id, "uploaded", result_cid=str(result_cid))
            crash_point("uploaded")
            rec = self.journal.get(job.job_id)
            assert rec is not None
        if rec.step == "uploaded" and self.publisher is not None:  # before complete: the result outlives us
            self.publisher.publish(job, rec.data["result_cid"], self.submitter.deadline(job, self.clock()))
        if rec.step == "complete_signed":  # re-send those very bytes, then read the outcome
            usable = self.submitter.resend(job.job_id, "complete", rec)
            state = self.market.job(job.job_id).state
            if state in DONE:
                self._end(job.job_id, "completed", f"on-chain state {state}")
                return
            if state != "Claimed":
                self._end(job.job_id, "expired", f"on-chain state {state}")
                return
            if usable:
                raise ChainError("complete transaction not mined yet")
            # its nonce went to another transaction: sign a new complete (simulation stops a
            # second one if the first landed after all; only one can succeed on chain)
            self.journal.advance(job.job_id, "uploaded", "complete's nonce taken by another transaction; re-signing")
            self.sender.resync()
            rec = self.journal.get(job.job_id)
            assert rec is not None
        result_cid_bytes = CID.parse(rec.data["result_cid"]).to_bytes()
        terms = job.terms.with_provider(self.address)
        commitment = result_commitment(job.job_id, self.address, output_hash(delivered_output(r.output)),
                                       secret_salt(self.account, job.job_id, "result"))
        fn = self.market.fn("complete", job.job_id, terms.as_tuple(), result_cid_bytes, commitment)
        tx = self.submitter.prepare_or_end(job.job_id, fn, "expired")
        if tx is None:
            self._release(job.job_id)
            return
        self.submitter.send_step(job.job_id, "complete", tx)
        self._release(job.job_id)

    # ------------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Resume each open job from its last durable step, checking the chain first (the
        submitter re-sends signed transactions in nonce order, then hands jobs to `_start`)."""
        self.submitter.recover(self._start)
