"""Waiting for the chain: a provider is paid after the audit window (3 s on the devnet), by its
node, so a test that wants a job Settled waits for it."""

from __future__ import annotations

import time

from hearth.chain.market import Market


def wait_settled(market: Market, job_id: int, timeout: float = 60) -> None:
    """Until the job is Settled; fails with its state after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (state := market.job(job_id).state) != "Settled":
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.25)
