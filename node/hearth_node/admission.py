"""The processor's ledger of work: jobs claimed (or being claimed) and not yet delivered, with
their estimated seconds of running (until they have run), collateral and runner lease, and the
jobs waiting for capacity.

The guardian decides (pure); the ledger holds the state it decides on, and reads it and reserves
an admitted job's entry under one lock, so two admissions can never both take the last slot."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hearth.chain.types import PostedJob
from hearth.formats.jobspec import JobSpec

from hearth_node import guardian
from hearth_node.runner import Runner, Speed

MAX_WAITING = 256  # jobs waiting for capacity, each holding its spec (<= max_spec_bytes)


@dataclass
class Pending:
    """A job fetched and checked, waiting to be admitted."""

    job: PostedJob
    spec: JobSpec
    spec_size: int
    path: Path
    tokens: int | None = None  # prompt tokens, once counted
    speed: Speed | None = None  # its runner's live measurements, once it had a runner
    why: str = ""

    def work(self, policy: guardian.Policy) -> float | None:
        """Estimated seconds at today's measured speed; None if unknown."""
        gen, prompt = self.speed.snapshot() if self.speed else (None, None)
        if self.tokens is None or gen is None:
            return None
        return guardian.estimate_seconds(self.tokens, self.spec.params.max_tokens, policy, gen, prompt)


@dataclass
class Work:
    """A ledger entry."""

    seconds: float
    collateral: int
    claimed: bool = False
    started: float | None = None  # monotonic time its run started
    ran: bool = False  # run over: only its delivery is left (the margin covers that)


class Ledger:
    """Claimed-but-unfinished work per job, runner leases, and jobs waiting (thread-safe)."""

    def __init__(self, policy: guardian.Policy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._work: dict[int, Work] = {}
        self._leases: dict[int, Runner] = {}
        self._waiting: dict[int, Pending] = {}

    def _load(self, stake: int) -> guardian.Load:
        """All runners share the CPU, so all queued work counts; a run already slower than its
        estimate shows the node is slower than measured, and scales it all."""
        now = time.monotonic()
        running = [w for w in self._work.values() if not w.ran]
        slow = max([(now - w.started) / w.seconds for w in running if w.started and w.seconds > 0], default=1.0)
        queued = sum(w.seconds for w in running) * max(slow, 1.0)
        in_flight = sum(w.collateral for w in self._work.values() if not w.claimed)
        return guardian.Load(queued, len(self._work), stake - in_flight)

    def load(self, stake: int = 0) -> guardian.Load:
        """The node's load now (free_stake: `stake` less the collateral of claims in flight)."""
        with self._lock:
            return self._load(stake)

    def admit(self, job: PostedJob, work: float, collateral: int, stake: int, runner: Runner,
              best: float | None) -> guardian.Decision:
        """Ask the guardian against the load now; on Accepted the job's entry and lease are held."""
        with self._lock:
            decision = guardian.admit(job, work, self._load(stake), collateral, self.policy, best)
            if isinstance(decision, guardian.Accepted):
                self._work[job.job_id] = Work(work, collateral)
                self._leases[job.job_id] = runner
            return decision

    def resume(self, job_id: int, runner: Runner, estimate: float) -> None:
        """A claimed job not admitted in this process (resumed after a restart, or run again
        after a failure) takes its lease and an entry before it runs."""
        with self._lock:
            self._leases[job_id] = runner
            self._work[job_id] = Work(estimate, 0, claimed=True)

    def lease(self, job_id: int) -> Runner | None:
        """The runner a job holds, if any."""
        with self._lock:
            return self._leases.get(job_id)

    def mark(self, job_id: int, claimed: bool = False, started: bool = False) -> None:
        """The claim landed (its collateral is now off the on-chain stake) / the run started."""
        with self._lock:
            w = self._work.get(job_id)
            if w is not None:
                w.claimed = w.claimed or claimed
                if started:
                    w.started = time.monotonic()

    def ran(self, job_id: int) -> Runner | None:
        """The job's run is over: its seconds stop counting; the runner lease to give back."""
        with self._lock:
            w = self._work.get(job_id)
            if w is not None:
                w.ran = True
            return self._leases.pop(job_id, None)

    def release(self, job_id: int) -> tuple[bool, Runner | None]:
        """Drop a job's entry; whether it had one, and the runner lease to give back."""
        with self._lock:
            return self._work.pop(job_id, None) is not None, self._leases.pop(job_id, None)

    def wait(self, p: Pending, why: str) -> Pending | None:
        """Keep a job for a later look. When MAX_WAITING wait, the lowest payment gives way:
        returns the job pushed out (maybe `p` itself), for the caller to end."""
        p.why = why
        with self._lock:
            out: Pending | None = None
            if p.job.job_id not in self._waiting and len(self._waiting) >= MAX_WAITING:
                out = min(self._waiting.values(), key=lambda w: w.job.payment)
                if out.job.payment >= p.job.payment:
                    return p
                del self._waiting[out.job.job_id]
            self._waiting[p.job.job_id] = p
            return out

    def due(self, now: float) -> list[Pending]:
        """Waiting jobs to look at again, taken out of the wait: those past their claim deadline
        (to end them), then, earliest claim deadline first, as many as free slots allow and as
        look like they fit (by their last estimate) beside the work now queued."""
        with self._lock:
            queued = self._load(0).queued_seconds
            slots = self.policy.max_open_jobs - len(self._work)
            chosen = []
            for p in sorted(self._waiting.values(), key=lambda w: (w.job.claim_deadline, w.job.job_id)):
                if p.job.claim_deadline <= now:
                    chosen.append(p)
                    continue
                work = p.work(self.policy)
                need = None if work is None else (queued + work) * self.policy.safety_factor + self.policy.margin_seconds
                if slots > 0 and (need is None or need <= p.job.completion_window):
                    chosen.append(p)
                    slots -= 1
                    queued += work or 0.0
            for p in chosen:
                del self._waiting[p.job.job_id]
            return chosen

    def stale(self) -> set[Path]:
        """Models whose waiting jobs might fit if the speed measured were fresher: only asked
        when nothing runs, so measuring costs no job any time."""
        with self._lock:
            if any(not w.ran for w in self._work.values()):
                return set()
            return {p.path for p in self._waiting.values() if p.speed is not None}
