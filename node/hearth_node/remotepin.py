"""Remote pins of each job's spec and result (hearth.ipfs.pinning), so a client, an auditor or an
arbiter that comes after this home node went offline can still fetch and verify them.

Asked for once the result is on the local IPFS and before `complete` is sent: the spec's pin is
requested, the result's is waited for up to `wait_seconds` (never past the completion deadline
less the margin the complete transaction needs). A remote's failure is logged and noted on the job,
never fatal: the collateral is worth more than the copy. The outcome is journaled (`remote_pin`),
so a retry or a restart does not ask again once the result is pinned."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hearth.chain.types import PostedJob
from hearth.ipfs.kubo import KuboClient
from hearth.ipfs.pinning import RemotePins

from hearth_node.journal import Journal

log = logging.getLogger("hearth.node")


class Publisher:
    """Pins jobs' specs and results on the configured remotes."""

    def __init__(self, pins: RemotePins, ipfs: KuboClient, journal: Journal, wait_seconds: float,
                 margin_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.pins, self.ipfs, self.journal = pins, ipfs, journal
        self.wait_seconds, self.margin_seconds, self.clock = wait_seconds, margin_seconds, clock

    def publish(self, job: PostedJob, result_cid: str, deadline: float) -> dict[str, dict[str, str]]:
        """Pin the job's spec and result remotely (see the module docstring); what each remote said."""
        rec = self.journal.get(job.job_id)
        done = rec.data.get("remote_pin") if rec is not None else None
        if isinstance(done, dict) and all(v == "pinned" for v in done.get("result", {"": ""}).values()):
            return done
        wait = max(0.0, min(self.wait_seconds, deadline - self.clock() - self.margin_seconds))
        meta = {"hearth.job": str(job.job_id)}
        spec = str(job.spec_cid)  # parsed where the event entered
        out = {
            "spec": self.pins.pin(self.ipfs, spec, f"hearth job {job.job_id} spec", meta=meta),
            "result": self.pins.pin(self.ipfs, result_cid, f"hearth job {job.job_id} result", wait=wait, meta=meta),
        }
        self.journal.note(job.job_id, remote_pin=out)
        failed = {f"{what} {remote}": v for what, d in out.items() for remote, v in d.items() if v.startswith("failed")}
        if failed:
            log.warning("job %d: remote pin failed (%s); completing anyway", job.job_id, failed)
        else:
            log.info("job %d: result %s pinned remotely (%s)", job.job_id, result_cid, out["result"])
        return out

    def close(self) -> None:
        self.pins.close()
