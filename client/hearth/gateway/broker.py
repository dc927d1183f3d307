"""A request as a paid market job, run in a worker thread of the broker's own, not of the request.

The job is posted from the serving account's deposit exactly as `hearth job submit` posts it,
followed on chain, and its result fetched and verified (CID, on-chain output hash, provider's
signature) before anything is answered. A client that hangs up does not stop the worker: the
job is still answered (its result stays fetchable with `hearth job result ID`) or, when nobody
takes it in time, expired so its payment returns to the deposit.

Failover: a job nobody claims before its claim deadline is expired (refunded) and posted again,
up to `Terms.attempts` jobs in all, before the request fails with NoProvider."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from hearth import jobs
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.errors import ContractError, HearthError
from hearth.formats.jobspec import JobSpec
from hearth.ipfs.kubo import KuboClient

log = logging.getLogger(__name__)
EXPIRE_TRIES = 30  # a chain whose clock lags ours refuses expire for a while; then give up


class NoProvider(HearthError):
    """No provider took the job (or the one that did never delivered) before its deadline; every
    job posted for the request was expired and its payment refunded."""


@dataclass(frozen=True)
class Connections:
    """The serving account and what it talks to (from the same settings as the CLI's)."""

    network: str
    market: Market
    sender: Sender
    account: LocalAccount
    ipfs: KuboClient


@dataclass(frozen=True)
class Terms:
    """What each job offers: payment (token wei), seconds to claim, seconds to complete, and how
    many jobs to post in all when nobody claims (2: one repost)."""

    payment: int
    claim_timeout: int
    completion_window: int
    attempts: int = 2


@dataclass(frozen=True)
class Answer:
    """A verified answer and the job that produced it."""

    job_id: int
    jobs: tuple[int, ...]  # every job posted for the request, the answering one last
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    provider: str
    result_cid: str


class Broker:
    """Runs jobs in its own threads; `submit` returns at once with a future of the answer."""

    def __init__(self, conn: Connections, terms: Terms, workers: int = 16) -> None:
        self.conn = conn
        self.terms = terms
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hearth-job")
        # one post at a time: the balance check in jobs.post and the post itself must not interleave
        # with another request's, or the second post reverts instead of answering 402
        self._post_lock = threading.Lock()
        self._active: set[int] = set()
        self._active_lock = threading.Lock()

    def submit(self, spec: JobSpec) -> Future[Answer]:
        """Start a job for `spec`; the future holds the Answer or the error."""
        fut = self._pool.submit(self._run, spec)
        fut.add_done_callback(_log_outcome)
        return fut

    def close(self) -> None:
        """Stop taking work; wait for the jobs already paid for to be answered or refunded."""
        with self._active_lock:
            active = sorted(self._active)
        if active:
            log.warning("waiting for paid jobs %s to be answered or refunded", active)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, spec: JobSpec) -> Answer:
        c, t = self.conn, self.terms
        posted_ids: list[int] = []
        reasons: list[str] = []
        for _ in range(t.attempts):
            with self._post_lock:
                posted = jobs.post(c.market, c.sender, c.account, c.ipfs, spec, t.payment, t.claim_timeout,
                                   t.completion_window)
            posted_ids.append(posted.job_id)
            log.info("job %d posted (tx %s)", posted.job_id, posted.tx_hash)
            with self._active_lock:
                self._active.add(posted.job_id)
            try:
                outcome = self._await(posted.job_id)
            finally:
                with self._active_lock:
                    self._active.discard(posted.job_id)
            if isinstance(outcome, jobs.VerifiedResult):
                return _answer(outcome, tuple(posted_ids))
            reasons.append(f"job {posted.job_id} {outcome}")
            if outcome != "was not claimed in time":
                break  # a claimer that never delivered already held the job its whole window
        raise NoProvider("no provider answered in time: " + "; ".join(reasons) +
                         "; every payment was refunded to the deposit",
                         hint="check that a provider serves this model, or allow more time (--claim-timeout)")

    def _await(self, job_id: int) -> jobs.VerifiedResult | str:
        """Follow a job to its result, or expire it past its deadline (saying why)."""
        c = self.conn
        for _ in range(EXPIRE_TRIES):
            history: list[tuple[str, Any]] = []  # follow() replays the whole history each time
            passed: str | None = None
            for u in jobs.follow(c.market, job_id):
                if u.event is not None:
                    history.append(("Job" + u.state, u.event))
                if u.state == "DeadlinePassed":
                    passed = str(u.detail["state"])
            names = [n for n, _ in history]
            if passed is None:
                if "JobCompleted" in names:
                    return jobs.fetch_result(c.market, c.ipfs, job_id, history)
                if names[-1:] == ["JobExpired"] and "JobClaimed" not in names:
                    return "was not claimed in time"  # someone else expired it first: refunded all the same
                return f"ended as {names[-1].removeprefix('Job') if names else 'unknown'} (refunded)"
            try:
                self._expire(job_id)
            except ContractError as e:
                # claimed or completed at the very deadline, or a chain clock behind ours: look again
                log.info("job %d: expire refused (%s); following it again", job_id, e.name)
                time.sleep(1.0)
                continue
            log.info("job %d expired and refunded (%s past its deadline)", job_id, passed.lower())
            return "was not claimed in time" if passed == "Posted" else "was claimed but not delivered in time"
        raise HearthError(f"job {job_id} is past its deadline but could not be expired",
                          hint=f"get the refund later: hearth job expire {job_id}")

    def _expire(self, job_id: int) -> None:
        """The market's expire, as `hearth job expire` sends it."""
        c = self.conn
        fn = c.market.fn("expire", job_id, c.market.current_terms(job_id).as_tuple())
        try:
            c.sender.transact(fn)
        except ContractError as e:
            # An idle automining devnet mines no blocks, so its clock stands still: when the
            # deadline has passed in real time, mine one empty block and try again.
            if e.name != "DeadlineNotPassed" or c.network != "devnet" or time.time() <= e.error_args["deadline"]:
                raise
            c.market.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            c.sender.transact(fn)


def _answer(vr: jobs.VerifiedResult, posted: tuple[int, ...]) -> Answer:
    body = vr.result.body
    usage = body.get("usage") or {}
    finish = str(body.get("finish_reason") or "stop")
    return Answer(vr.job_id, posted, vr.result.output, finish if finish in ("stop", "length") else "stop",
                  int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), vr.provider,
                  vr.result_cid)


def _log_outcome(fut: Future[Answer]) -> None:
    """What became of a job, for the operator: its client may have hung up long ago."""
    if fut.cancelled():
        return
    err = fut.exception()
    if err is None:
        a = fut.result()
        log.info("job %d answered by %s (result %s, %d tokens)", a.job_id, a.provider, a.result_cid,
                 a.completion_tokens)
    else:
        log.warning("request failed: %s", err)
