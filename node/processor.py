"""The provider pipeline: watcher -> guardian -> claim -> fetch -> run -> put result -> complete,
every step journaled, and crash recovery that finishes each open job exactly once."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from client.chain import Market, PostedJob, Prepared, Sender, posted_from_event
from client.cid import CID
from client.errors import ChainError, ContractError, HearthError, IPFSError
from client.ipfs import KuboClient
from client.jobspec import JobSpec, output_hash, parse_spec, result_body
from client.signing import sign_result
from node import guardian
from node.journal import JobRecord, Journal
from node.runner import ModelStore, RunnerPool, RunResult, engine_info

log = logging.getLogger("hearth.node")

def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: HEARTH_TEST_CRASH_AT=<name> makes the node
    die here exactly as `kill -9` would (no cleanup, no flush beyond what is already durable)."""
    if os.environ.get("HEARTH_TEST_CRASH_AT") == name:
        os._exit(137)


class _Lost(Exception):
    """Another provider's claim won."""


# Contract errors that mean "someone else got there first" or "too late": expected, not failures.
LOST = {"InvalidState", "NotProvider"}
LATE = {"DeadlinePassed"}


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
        ipfs: KuboClient,
        journal: Journal,
        models: ModelStore,
        runners: RunnerPool,
        policy: guardian.Policy,
        model_shas: dict[bytes, tuple[str, int]],
        chain_id: int,
        confirmations: int = 0,
        poll_interval: float = 0.05,
        log_range: int = 2000,
        ws_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.market = market
        self.w3 = market.w3
        self.account = account
        self.address = to_checksum_address(account.address)
        self.sender = Sender(self.w3, account)
        self.ipfs = ipfs
        self.journal = journal
        self.models = models
        self.runners = runners
        self.policy = policy
        self.model_shas = model_shas  # model CID bytes -> (sha256, size)
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.poll_interval = poll_interval
        self.log_range = log_range
        self.ws_url = ws_url
        self.clock = clock
        self.metrics = Metrics()
        self._prepare = ThreadPoolExecutor(4, thread_name_prefix="prepare")
        self._deliver = ThreadPoolExecutor(2, thread_name_prefix="deliver")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inflight: set[int] = set()
        self._inflight_lock = threading.Lock()
        self.engine = engine_info()
        self.rpc_ok = True
        self._ws_live = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Recover open jobs, then watch the chain."""
        self.recover()
        for target, name in ((self._watch_loop, "watcher"), (self._ws_loop, "ws")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop watching and let in-flight work finish."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        self._prepare.shutdown(wait=True, cancel_futures=False)
        self._deliver.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------ watcher

    def _ws_loop(self) -> None:
        """New-block pushes over WebSocket: they only wake the get_logs poller early."""
        if not self.ws_url:
            return
        from websockets.sync.client import connect

        delay = 0.5
        while not self._stop.is_set():
            try:
                with connect(self.ws_url, open_timeout=5) as ws:
                    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
                    delay = 0.5
                    self._ws_live = True
                    while not self._stop.is_set():
                        try:
                            ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        self._wake.set()
            except Exception as e:  # noqa: BLE001  (no WS: polling still works)
                self._ws_live = False
                log.debug("websocket unavailable (%s); polling", e)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _cursor(self) -> int:
        v = self.journal.get_kv("cursor")
        if v is not None:
            return int(v)
        head = self.w3.eth.block_number
        start = max(self.market.deploy_block, head - 5000)
        return start - 1

    def _watch_loop(self) -> None:
        delay = self.poll_interval
        while not self._stop.is_set():
            try:
                self.poll_once()
                if not self.rpc_ok:
                    log.info("RPC is back")
                self.rpc_ok = True
                delay = self.poll_interval
            except Exception as e:  # noqa: BLE001  (RPC down: keep the cursor, retry with backoff)
                if self.rpc_ok:
                    log.warning("RPC error while watching (%s); retrying", type(e).__name__)
                self.rpc_ok = False
                self.metrics.rpc_errors += 1
                delay = min(max(delay * 2, 0.25), 5.0)
            # With new-block pushes, polling is only a safety net: idle polls would steal CPU
            # (and the GIL) from inference running in this process.
            self._wake.wait(max(delay, 1.0) if self._ws_live else delay)
            self._wake.clear()

    def poll_once(self) -> None:
        """Catch up from the persisted cursor to the confirmed head (one pass)."""
        cursor = self._cursor()
        cursor = self._check_reorg(cursor)
        head = self.w3.eth.block_number - self.confirmations
        a = cursor + 1
        while a <= head and not self._stop.is_set():
            b = min(a + self.log_range - 1, head)
            for ev in self.market.logs("JobPosted", a, b):
                self.on_posted(posted_from_event(ev))
            block = self.w3.eth.get_block(b)
            self.journal.set_kv("cursor", str(b))
            self.journal.set_kv("cursor_hash", bytes(block["hash"]).hex())
            a = b + 1

    def _check_reorg(self, cursor: int) -> int:
        """If the cursor's block changed hash, rewind and drop jobs whose post vanished."""
        saved = self.journal.get_kv("cursor_hash")
        if saved is None or cursor < 0:
            return cursor
        try:
            block = self.w3.eth.get_block(cursor)
            if bytes(block["hash"]).hex() == saved:
                return cursor
        except Exception as e:
            if "not found" not in str(e).lower():
                raise
        rewind = max(self.market.deploy_block - 1, cursor - 64)
        log.warning("reorg detected at block %d; rescanning from %d", cursor, rewind + 1)
        live = {int(ev["args"]["jobId"]) for ev in self.market.logs("JobPosted", rewind + 1, "latest")}
        for rec in self.journal.open_jobs():
            if rec.posted["block_number"] > rewind and rec.job_id not in live and rec.step == "seen":
                self.journal.advance(rec.job_id, "skipped", "its JobPosted log was removed by a reorg")
        self.journal.set_kv("cursor", str(rewind))
        self.journal.set_kv("cursor_hash", bytes(self.w3.eth.get_block(rewind)["hash"]).hex())
        return rewind

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

    def _prepare_or_end(self, job_id: int, fn: Any, end_step: str) -> Prepared | None:
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
        tx = self._prepare_or_end(job.job_id, self.market.fn("claim", job.job_id, job.terms.as_tuple()), "lost")
        if tx is None:
            return
        try:
            self._send_step(job.job_id, "claim", tx)
        except _Lost:
            return
        crash_point("claimed")
        self._claimed(job, spec)

    def _send_step(self, job_id: int, what: str, tx: Prepared) -> None:
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
                raise _Lost() from None
            raise
        self.journal.advance_with(job_id, "claimed" if what == "claim" else "completed", None,
                                  {f"{what}_gas": int(receipt["gasUsed"]), f"{what}_block": int(receipt["blockNumber"])})

    def _claimed(self, job: PostedJob, spec: JobSpec | None = None) -> None:
        spec = spec or self._load_spec(job)[0]
        sha, size = self.model_shas[job.model_cid]
        runner = self.runners.get(self.models.ensure(str(CID.parse(job.model_cid)), sha, size))
        fut = runner.submit(spec)
        if os.environ.get("HEARTH_TEST_CRASH_AT") == "inference":
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
        tx = self._prepare_or_end(job.job_id, fn, "expired")
        if tx is None:
            return
        self._send_step(job.job_id, "complete", tx)
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
                self._resend(job.job_id, "claim", rec)
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
            self._resend(job.job_id, "complete", rec)
            final = self.market.job(job.job_id).state
            if final in ("Settled", "Completed"):
                self.journal.advance(job.job_id, "completed")

    def _resend(self, job_id: int, what: str, rec: JobRecord) -> None:
        raw = bytes.fromhex(rec.data[f"{what}_raw"])
        tx = Prepared(rec.data[f"{what}_tx"], raw, int(rec.data[f"{what}_nonce"]))
        try:
            self.sender.broadcast(tx)
            receipt = self.sender.wait(tx.tx_hash)
            self.journal.advance_with(job_id, rec.step, f"re-sent {what} transaction {tx.tx_hash}",
                                      {f"{what}_gas": int(receipt["gasUsed"])})
        except (ChainError, IPFSError) as e:
            log.info("job %d: re-sending %s gave %s", job_id, what, e)
