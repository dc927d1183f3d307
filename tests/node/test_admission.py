"""Admission control: the node claims only what it can finish before each job's deadline,
counting the work already claimed, at most max_open_jobs at once and within its free stake; jobs
that do not fit now wait and are claimed as work finishes.

The guardian's formula is checked as a table and in a simulated burst; the processor is checked
end to end against stand-ins (tests/node/test_retries.py uses the same harness): a chain that
applies claims and completes when broadcast, an in-memory IPFS, and real runners over a fake
llama.cpp that takes a set time per token."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from hearth.chain.sender import Prepared
from hearth.chain.types import ZERO_ADDRESS, Account, JobSlot, JobTerms, PostedJob
from hearth.dev.devnet import dev_account
from hearth.errors import ContractError, IPFSError
from hearth.formats.cid import CID, cid_of_bytes
from hearth.formats.jobspec import Params, make_spec
from hearth_node import guardian
from hearth_node.admission import Ledger
from hearth_node.journal import TERMINAL, JobRecord, Journal
from hearth_node.processor import Processor
from hearth_node.runner import Runner, RunnerPool

MODEL = "QmR58njnbf5NUQQ6uF9vkbHL4N1h3kFnkFcXdASEa8hQvY"
SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SPEC_CID = cid_of_bytes(b"a spec")
ACCOUNT = dev_account(1)
ME = ACCOUNT.address
POLICY = guardian.Policy(ME, {CID.parse(MODEL): SHA}, min_price=1, max_tokens=1024, max_spec_bytes=4096,
                         n_ctx=2048, tokens_per_second=20.0)


def posted(job_id: int, window: int = 8, claim_deadline: int = 2**40, payment: int = 10**16,
           spec_cid: CID = SPEC_CID) -> PostedJob:
    return PostedJob(job_id=job_id, client=dev_account(2).address, provider=ZERO_ADDRESS, model_key=b"k" * 32,
                     model_cid=CID.parse(MODEL), spec_cid=spec_cid, payment=payment,
                     claim_deadline=claim_deadline, completion_window=window, fee_bps=0, block_number=1, tx_hash="0x")


# ---------------------------------------------------------------------------- the formula


@pytest.mark.parametrize(("work", "load", "collateral", "best", "kind", "reason"), [
    (0.5, guardian.Load(0.0, 0, 100), 10, 0.5, guardian.Accepted, ""),
    (6.0, guardian.Load(0.0, 0, 100), 10, 5.5, guardian.Rejected, "too short"),  # 5.5+3 > 8 even at best
    (3.0, guardian.Load(0.0, 0, 100), 10, 3.0, guardian.Deferred, "at the current speed"),  # 3*2+3 > 8 today
    (3.0, guardian.Load(0.0, 0, 100), 10, None, guardian.Deferred, "at the current speed"),  # not measured yet
    (0.5, guardian.Load(0.5, 8, 100), 10, 0.5, guardian.Deferred, "8 jobs open"),
    (0.5, guardian.Load(2.0, 3, 100), 10, 0.5, guardian.Accepted, ""),  # (2+0.5)*2+3 = 8: fits, just
    (0.5, guardian.Load(2.1, 3, 100), 10, 0.5, guardian.Deferred, "busy"),
    (0.5, guardian.Load(0.0, 0, 9), 10, 0.5, guardian.Deferred, "free stake"),
])
def test_admit_table(work: float, load: guardian.Load, collateral: int, best: float | None, kind: type,
                     reason: str) -> None:
    d = guardian.admit(posted(1), work, load, collateral, POLICY, best)
    assert isinstance(d, kind) and reason in getattr(d, "reason", ""), d


def test_estimate_uses_measurements_else_the_floor() -> None:
    assert guardian.estimate_seconds(80, 64, POLICY) == pytest.approx(80 / 80 + 64 / 20)
    assert guardian.estimate_seconds(80, 64, POLICY, 0.01, 0.002, load_seconds=1.5) == pytest.approx(1.5 + 0.16 + 0.64)


def test_burst_simulation_every_claimed_job_meets_its_deadline() -> None:
    """24 jobs of 64 tokens with 8 s windows arrive at once; the runner was measured at 90
    tokens/s but runs 1.8x slower under contention. Simulated time: the node admits what fits,
    and whenever a job finishes it looks at the waiting ones again."""
    ledger = Ledger(POLICY)
    gen = 1 / 90
    work = guardian.estimate_seconds(40, 64, POLICY, gen, gen / 4)
    actual = 1.8 * work
    waiting, queue, done = list(range(24)), [], []
    t = 0.0
    runner: Any = object()
    while waiting or queue:
        for j in list(waiting):
            if ledger.admit(posted(j), work, 0, 10**20, runner, work) == guardian.Accepted():
                queue.append((j, t + 8))  # claimed now: the deadline is now + the window
                waiting.remove(j)
        assert queue, "nothing admitted on an idle node"
        j, deadline = queue.pop(0)
        t += actual
        done.append(j)
        assert t + 1.0 <= deadline, f"job {j} finished at {t:.2f}s, deadline {deadline}s"  # 1 s to deliver
        ledger.release(j)
    assert sorted(done) == list(range(24))


# ---------------------------------------------------------------------------- the harness


class FakeLlama:
    """llama_cpp.Llama stand-in: `seconds_per_token` of sleep per generated token; prompts in
    `fail` raise."""

    seconds_per_token = 0.003
    fail: set[str] = set()

    def __init__(self, **kw: Any) -> None:
        self._model = self
        self.metadata: dict[str, str] = {}

    def token_cls(self) -> int:
        return -1

    def token_sep(self) -> int:
        return -1

    def add_bos_token(self) -> bool:
        return True

    def add_eos_token(self) -> bool:
        return False

    def token_bos(self) -> int:
        return 1

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [1] * (len(text.split()) + int(add_bos))

    def reset(self) -> None:
        pass

    def set_seed(self, seed: int) -> None:
        pass

    def create_completion(self, prompt: str, max_tokens: int = 16, **kw: Any) -> dict[str, Any]:
        if prompt in self.fail:
            raise RuntimeError(f"llama_decode failed on {prompt!r}")
        time.sleep(max_tokens * self.seconds_per_token)
        return {"choices": [{"text": f"out {prompt}", "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": max_tokens}}

    def close(self) -> None:
        pass


class FakeChain:
    """The market and the provider's sender in one: claims and completes take effect when
    broadcast, with the contract's checks; `fail[name]` holds errors to raise on the next calls
    of `name` (account, claim_prepare, claim_broadcast, complete_prepare, complete_broadcast)."""

    address = "0x" + "11" * 20

    def __init__(self, stake: int) -> None:
        self.stake = stake
        self.jobs: dict[int, dict[str, Any]] = {}
        self.fail: dict[str, list[Exception]] = defaultdict(list)
        self.calls: Counter[str] = Counter()
        self.max_open = 0
        self._lock = threading.Lock()
        self._nonce = 0

    def _maybe_fail(self, what: str) -> None:
        self.calls[what] += 1
        if self.fail[what]:
            raise self.fail[what].pop(0)

    def open_jobs(self) -> int:
        return sum(1 for j in self.jobs.values() if j["state"] == "Claimed")

    # market reads
    def fn(self, name: str, *args: Any) -> tuple[str, tuple[Any, ...]]:
        return name, args

    def account(self, address: str) -> Account:
        self._maybe_fail("account")
        return Account(0, self.stake, self.open_jobs(), 0, "Active")

    def collateral_for(self, payment: int) -> int:
        return payment // 10

    def job(self, job_id: int) -> JobSlot:
        j = self.jobs[job_id]
        return JobSlot(j["state"], j["deadline"], 0)

    def current_terms(self, job_id: int) -> JobTerms:
        j = self.jobs[job_id]
        return j["job"].terms.with_provider(j.get("provider", ZERO_ADDRESS))

    # sender
    def _check(self, name: str, job_id: int) -> None:
        j, now = self.jobs[job_id], time.time()
        if name == "claim" and j["state"] != "Posted":
            raise ContractError("InvalidState", {})
        if name == "claim" and now > j["job"].claim_deadline:
            raise ContractError("DeadlinePassed", {})
        if name == "complete" and (j["state"] != "Claimed" or now > j["deadline"]):
            raise ContractError("DeadlinePassed", {})

    def prepare(self, fn: tuple[str, tuple[Any, ...]]) -> Prepared:
        name, args = fn
        self._maybe_fail(f"{name}_prepare")
        with self._lock:
            self._check(name, args[0])
            self._nonce += 1
            return Prepared(f"0x{self._nonce:064x}", json.dumps([name, args[0]]).encode(), self._nonce)

    def broadcast(self, p: Prepared) -> None:
        name, job_id = json.loads(p.raw)
        self._maybe_fail(f"{name}_broadcast")
        with self._lock:
            j = self.jobs[job_id]
            if p.tx_hash in j.setdefault("txs", set()):
                return  # the same bytes again: no second effect
            j["txs"].add(p.tx_hash)
            self._check(name, job_id)
            now = time.time()
            collateral = self.collateral_for(j["job"].payment)
            if name == "claim":
                j.update(state="Claimed", provider=ME, claimed_at=now, deadline=int(now) + j["job"].completion_window)
                self.stake -= collateral
            else:
                j.update(state="Completed", completed_at=now)
                self.stake += collateral
            self.max_open = max(self.max_open, self.open_jobs())

    def wait(self, tx_hash: str, fn: Any = None) -> dict[str, int]:
        return {"gasUsed": 21_000, "blockNumber": 1}

    def send(self, tx: Prepared, deadline: float | None = None, on_signed: Any = None, **_: Any) -> dict[str, Any]:
        """Sender.send: (re-)broadcast and see it mined; this chain never needs a replacement."""
        self.broadcast(tx)
        return {"gasUsed": 21_000, "blockNumber": 1, "transactionHash": bytes.fromhex(tx.tx_hash[2:])}

    def resync(self) -> None:
        pass


class FakeIPFS:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fail: dict[str, list[Exception]] = defaultdict(list)
        self.calls: Counter[str] = Counter()

    def put(self, data: bytes) -> CID:
        cid = cid_of_bytes(data)
        self.blobs[str(cid)] = data
        return cid

    def cat(self, cid: CID, max_size: int | None = None) -> bytes:
        self.calls["cat"] += 1
        if self.fail["cat"]:
            raise self.fail["cat"].pop(0)
        data = self.blobs[str(cid)]
        if max_size is not None and len(data) > max_size:
            raise IPFSError(f"{cid} is {len(data)} bytes, over the limit of {max_size}")
        return data

    def add(self, data: bytes, pin: bool = True) -> CID:
        self.calls["add"] += 1
        if self.fail["add"]:
            raise self.fail["add"].pop(0)
        return cid_of_bytes(data)


class FakeModels:
    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self, cid: CID, sha256: str, size: int = 0) -> Path:
        return self.path


class Node:
    """A Processor wired to the stand-ins."""

    def __init__(self, tmp_path: Path, stake: int = 10**21, **policy: Any) -> None:
        self.tmp_path = tmp_path
        self.chain = FakeChain(stake)
        self.ipfs = FakeIPFS()
        model = tmp_path / "m.gguf"
        model.write_bytes(b"GGUF")
        self.pool = RunnerPool(2**30, 512, 1, 0, factory=lambda p: Runner(p, 512, 1, 0, warmup=True))
        self.policy = guardian.Policy(**{**POLICY.__dict__, **policy})
        self.journal = Journal(tmp_path / "journal.db")
        self.proc = self._processor()

    def _processor(self) -> Processor:
        proc = Processor(self.chain, ACCOUNT, self.chain, self.ipfs, self.journal, FakeModels(self.tmp_path / "m.gguf"),  # type: ignore[arg-type]
                         self.pool, self.policy, {CID.parse(MODEL): (SHA, 0)}, 31337)
        proc.retry_first, proc.recheck_every, proc.measure_every = 0.02, 0.05, 0.2
        return proc

    def restart(self) -> None:
        """A new process on the same journal and chain."""
        self.proc.stop()
        self.pool.close()
        self.pool = RunnerPool(2**30, 512, 1, 0, factory=lambda p: Runner(p, 512, 1, 0, warmup=True))
        self.proc = self._processor()
        self.proc.recover()

    def post(self, job_id: int, max_tokens: int = 64, window: int = 8, claim_in: float = 60,
             prompt: str = "hello there", payment: int = 10**16) -> PostedJob:
        spec = make_spec(MODEL, SHA, prompt=prompt, params=Params(max_tokens=max_tokens))
        job = posted(job_id, window, int(time.time() + claim_in), payment, self.ipfs.put(spec.to_bytes()))
        self.chain.jobs[job_id] = {"state": "Posted", "deadline": 0, "job": job}
        return job

    def wait(self, job_id: int, steps: tuple[str, ...] = TERMINAL, timeout: float = 60) -> JobRecord:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rec = self.journal.get(job_id)
            if rec is not None and rec.step in steps:
                return rec
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} not in {steps}: {self.journal.get(job_id)}")

    def close(self) -> None:
        self.proc.stop()
        self.pool.close()
        self.journal.close()


def running_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Iterator[Node]:
    """A Node over fake llama.cpp, closed after the test."""
    monkeypatch.setattr(llama_cpp, "Llama", FakeLlama)
    monkeypatch.setattr(FakeLlama, "fail", set())
    monkeypatch.setattr(FakeLlama, "seconds_per_token", 0.003)
    n = Node(tmp_path, **kw)
    yield n
    n.close()


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    yield from running_node(tmp_path, monkeypatch)


# ---------------------------------------------------------------------------- end to end


def test_burst_claims_only_what_finishes_in_time_and_the_rest_later(node: Node) -> None:
    jobs = [node.post(i, max_tokens=64, window=8) for i in range(1, 21)]
    for j in jobs:
        node.proc.on_posted(j)
    for j in jobs:
        assert node.wait(j.job_id).step == "completed", node.journal.get(j.job_id)
    for j in jobs:
        slot = node.chain.jobs[j.job_id]
        assert slot["completed_at"] <= slot["deadline"], f"job {j.job_id} completed after its deadline"
    assert 1 <= node.chain.max_open <= node.policy.max_open_jobs


def test_window_too_short_even_when_idle_is_skipped(node: Node) -> None:
    node.proc.on_posted(node.post(1, max_tokens=16, window=30))
    node.wait(1)  # measured speed first
    job = node.post(2, max_tokens=1000, window=5)  # 3 s of margin alone leaves 2 s: 1000 tokens take 3 s
    node.proc.on_posted(job)
    rec = node.wait(2)
    assert rec.step == "skipped" and "too short" in (rec.reason or "")
    assert node.chain.jobs[2]["state"] == "Posted"  # no claim, no gas


def test_collateral_headroom_limits_open_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in running_node(tmp_path, monkeypatch, stake=3 * 10**15):  # collateral is payment / 10: three jobs' worth
        jobs = [n.post(i, max_tokens=32, window=60) for i in range(1, 8)]
        for j in jobs:
            n.proc.on_posted(j)
        assert all(n.wait(j.job_id).step == "completed" for j in jobs)
        assert n.chain.max_open <= 3 and n.chain.stake == 3 * 10**15


def test_a_slow_moment_defers_and_the_idle_node_measures_again(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hearth.node")
    node.proc.on_posted(node.post(1, max_tokens=4, window=60))
    node.wait(1)  # measured fast at warm-up and on this job
    FakeLlama.seconds_per_token = 0.2  # a slow moment: this run drags the average down
    node.proc.on_posted(node.post(2, max_tokens=20, window=60))
    node.wait(2)
    FakeLlama.seconds_per_token = 0.003  # fast again, but the average does not know yet
    job = node.post(3, max_tokens=40, window=8)
    node.proc.on_posted(job)
    rec = node.wait(3, ("claimed", "completed", "skipped"))
    assert rec.step != "skipped"  # it waited instead (it fits at the best speed measured)
    assert node.wait(3).step == "completed"
    assert "job 3 waits: completion window 8s too short at the current speed" in caplog.text
