"""The provider pipeline after the watcher: guardian -> fetch -> claim -> run -> put result ->
complete, every step journaled, and crash recovery that finishes each open job exactly once.
Transactions go through the Submitter; the watcher (watcher.py) feeds `on_posted`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.chain.types import PostedJob
from hearth.errors import HearthError
from hearth.formats.cid import CID
from hearth.formats.jobspec import JobSpec, output_hash, parse_spec, result_body
from hearth.formats.receipt import sign_result
from hearth.ipfs.kubo import KuboClient
from hearth.settings import crash_point_name

from hearth_node import guardian
from hearth_node.journal import JobRecord, Journal
from hearth_node.modelstore import ModelStore
from hearth_node.runner import RunnerPool, RunResult, engine_info
from hearth_node.submitter import Lost, Submitter, crash_point

log = logging.getLogger("hearth.node")

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

    def count_rpc_error(self) -> None:
        """One failed watcher poll."""
        self.rpc_errors += 1


def _posted_dict(job: PostedJob) -> dict[str, Any]:
    d = asdict(job)
    for k in ("model_key", "model_cid", "spec_cid"):
        d[k] = d[k].hex()
    return d


def _posted_from_dict(d: dict[str, Any]) -> PostedJob:
    d = dict(d)
    for k in ("model_key", "model_cid", "spec_cid"):
        d[k] = bytes.fromhex(d[k])
    return PostedJob(**d)


class Processor:
    """Runs jobs for one provider account."""

    def __init__(
        self,
        market: Market,
        account: LocalAccount,
        sender: Sender,
        ipfs: KuboClient,
        journal: Journal,
        models: ModelStore,
        runners: RunnerPool,
        policy: guardian.Policy,
        model_shas: dict[bytes, tuple[str, int]],
        chain_id: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.market = market
        self.account = account
        self.address = to_checksum_address(account.address)
        self.sender = sender
        self.submitter = Submitter(market, sender, journal)
        self.ipfs = ipfs
        self.journal = journal
        self.models = models
        self.runners = runners
        self.policy = policy
        self.model_shas = model_shas  # model CID bytes -> (sha256, size)
        self.chain_id = chain_id
        self.clock = clock
        self.metrics = Metrics()
        self._prepare = ThreadPoolExecutor(4, thread_name_prefix="prepare")
        self._deliver = ThreadPoolExecutor(2, thread_name_prefix="deliver")
        self.engine = engine_info()

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Let in-flight work finish."""
        self._prepare.shutdown(wait=True, cancel_futures=False)
        self._deliver.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------ decide

    def on_posted(self, job: PostedJob) -> None:
        """A JobPosted log: journal it, ask the guardian, start preparing."""
        if not self.journal.add(job.job_id, _posted_dict(job)):
            return
        decision = guardian.check_event(job, self.policy, int(self.clock()))
        if isinstance(decision, guardian.Rejected):
            log.info("job %d skipped: %s", job.job_id, decision.reason)
            self.journal.advance(job.job_id, "skipped", decision.reason)
            return
        self._submit(self._prepare, self.prepare, job)

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001  (one job's failure never stops the node)
                self.metrics.errors += 1
                job_id = args[0].job_id if hasattr(args[0], "job_id") else args[0]
                log.exception("job %s failed: %s", job_id, e)
                rec = self.journal.get(int(job_id))
                if rec and rec.step in ("seen",):
                    self.journal.advance(int(job_id), "failed", str(e))
                elif rec:
                    self.journal.advance(int(job_id), rec.step, f"error, will retry on restart: {e}")

        pool.submit(run)

    # ------------------------------------------------------------------ steps

    def _load_spec(self, job: PostedJob) -> tuple[JobSpec, int]:
        """The job's spec, verified against its CID and size-capped, and its size in bytes."""
        data = self.ipfs.cat(CID.parse(job.spec_cid), max_size=self.policy.max_spec_bytes)
        return parse_spec(data), len(data)

    def prepare(self, job: PostedJob) -> None:
        """Fetch and check the spec and the model, then claim (simulated first)."""
        try:
            spec, spec_size = self._load_spec(job)
            sha, size = self.model_shas[job.model_cid]
            path = self.models.ensure(str(CID.parse(job.model_cid)), sha, size)
        except HearthError as e:  # tampered spec or model, unknown CID, bad spec: skip, no gas spent
            log.info("job %d skipped: %s", job.job_id, e)
            self.journal.advance(job.job_id, "skipped", str(e).splitlines()[0])
            return
        runner = self.runners.get(path)
        decision = guardian.check_spec(
            job, spec, spec_size, runner.count_tokens(spec), self.policy, int(self.clock())
        )
        if isinstance(decision, guardian.Rejected):
            log.info("job %d skipped: %s", job.job_id, decision.reason)
            self.journal.advance(job.job_id, "skipped", decision.reason)
            return
        tx = self.submitter.prepare_or_end(job.job_id, self.market.fn("claim", job.job_id, job.terms.as_tuple()), "lost")
        if tx is None:
            return
        try:
            self.submitter.send_step(job.job_id, "claim", tx)
        except Lost:
            return
        crash_point("claimed")
        self._claimed(job, spec)

    def _claimed(self, job: PostedJob, spec: JobSpec | None = None) -> None:
        spec = spec or self._load_spec(job)[0]
        sha, size = self.model_shas[job.model_cid]
        runner = self.runners.get(self.models.ensure(str(CID.parse(job.model_cid)), sha, size))
        fut = runner.submit(spec)
        if crash_point_name() == "inference":
            threading.Timer(0.05, crash_point, ("inference",)).start()  # dies while the model runs
        fut.add_done_callback(lambda f: self._ran(job, spec, f))

    def _ran(self, job: PostedJob, spec: JobSpec, fut: Future[RunResult]) -> None:
        exc = fut.exception()
        if exc is not None:
            self.metrics.errors += 1
            log.error("job %d inference failed: %s", job.job_id, exc)
            self.journal.advance(job.job_id, "failed", f"inference failed: {exc}")
            return
        r = fut.result()
        self.metrics.tokens_generated += r.completion_tokens
        self.metrics.last_tokens_per_second = r.tokens_per_second
        self.metrics.inference_seconds += r.seconds
        self.metrics.jobs_run += 1
        self.journal.advance(job.job_id, "ran", run=asdict(r))
        self._submit(self._deliver, self.deliver, job, spec)

    def deliver(self, job: PostedJob, spec: JobSpec | None = None) -> None:
        """Sign the result, put it on IPFS (pinned), and complete on-chain."""
        rec = self.journal.get(job.job_id)
        assert rec is not None
        r = RunResult(**rec.data["run"])
        if rec.step == "ran":
            spec = spec or self._load_spec(job)[0]
            body = result_body(
                job_id=job.job_id, chain_id=self.chain_id, market=self.market.address,
                spec_cid=str(CID.parse(job.spec_cid)), output=r.output, finish_reason=r.finish_reason,
                usage={"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens},
                model_sha256=spec.model_sha256, engine=self.engine, params=spec.params.as_dict(),
                timings={"inference_seconds": round(r.seconds, 4), "tokens_per_second": round(r.tokens_per_second, 2)},
                provider=self.address,
            )
            result_cid = self.ipfs.add(sign_result(self.account, body).to_bytes(), pin=True)
            self.journal.advance(job.job_id, "uploaded", result_cid=str(result_cid))
            crash_point("uploaded")
            rec = self.journal.get(job.job_id)
            assert rec is not None
        result_cid_bytes = CID.parse(rec.data["result_cid"]).to_bytes()
        terms = job.terms.with_provider(self.address)
        fn = self.market.fn("complete", job.job_id, terms.as_tuple(), result_cid_bytes, output_hash(r.output))
        tx = self.submitter.prepare_or_end(job.job_id, fn, "expired")
        if tx is None:
            return
        self.submitter.send_step(job.job_id, "complete", tx)
        self.metrics.earnings += job.payment - job.payment * job.fee_bps // 10_000

    # ------------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Resume each open job from its last durable step, checking the chain first.

        Signed-but-unconfirmed transactions are re-sent first, in nonce order and before any
        new transaction is signed, so no new transaction can take their nonce."""
        open_jobs = self.journal.open_jobs()
        signed = [r for r in open_jobs if r.step.endswith("_signed")]
        signed.sort(key=lambda r: int(r.data.get(r.step.replace("_signed", "_nonce"), 0)))
        for rec in signed + [r for r in open_jobs if not r.step.endswith("_signed")]:
            try:
                self._recover_one(rec)
            except Exception as e:  # noqa: BLE001
                log.exception("recovering job %d failed: %s", rec.job_id, e)
            if rec in signed and rec is signed[-1]:
                self.sender.resync()
        self.sender.resync()

    def _recover_one(self, rec: JobRecord) -> None:
        job = _posted_from_dict(rec.posted)
        slot = self.market.job(job.job_id)
        state = slot.state
        log.info("recovering job %d at step %s (on-chain: %s)", job.job_id, rec.step, state)
        if rec.step == "seen":
            if state == "Posted":
                self._submit(self._prepare, self.prepare, job)
            else:
                self.journal.advance(job.job_id, "lost", f"on-chain state {state} at restart")
            return
        if rec.step == "claim_signed":
            if state == "Posted":
                self.submitter.resend(job.job_id, "claim", rec)
                state = self.market.job(job.job_id).state
            if state == "Posted":
                return  # nothing landed; the job is still open for a later claim
            if self.market.current_terms(job.job_id).provider != self.address:
                self.journal.advance(job.job_id, "lost", "another provider claimed it")
                return
            self.journal.advance(job.job_id, "claimed")
            rec.step = "claimed"
        if state in ("Settled", "Completed", "Disputed"):
            self.journal.advance(job.job_id, "completed", f"on-chain state {state} at restart")
            return
        if state != "Claimed":
            self.journal.advance(job.job_id, "expired", f"on-chain state {state} at restart")
            return
        if rec.step == "claimed":
            self._submit(self._prepare, self._claimed, job)
        elif rec.step in ("ran", "uploaded"):
            self._submit(self._deliver, self.deliver, job)
        elif rec.step == "complete_signed":
            self.submitter.resend(job.job_id, "complete", rec)
            final = self.market.job(job.job_id).state
            if final in ("Settled", "Completed"):
                self.journal.advance(job.job_id, "completed")

