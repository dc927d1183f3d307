"""`hearth bench latency`: seconds and blocks from submit to verified answer on a chain with a
block time, through the client path of `hearth job submit` (jobs.post, jobs.follow,
jobs.fetch_result), one provider node, short jobs.

Blocks are counted from the head seen just before the post to the head seen once the answer is
verified. Each job is submitted after a random pause (not timed) of up to one block time, so
submits fall at random moments of a block as a user's do. Under the node's offer (the default)
the post assigns the job and complete follows in a later block: at least 2. An open job
(`offers=False`) needs a claim in between: at least 3."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.errors import HearthError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from hearth.chain.market import Market
    from hearth.chain.sender import Sender
    from hearth.ipfs.kubo import KuboClient

CLAIM_TIMEOUT = 120  # `hearth job submit`'s defaults (2m, 5m)
COMPLETION_WINDOW = 300


def latency_bench(block_time: float, n_jobs: int = 3, max_tokens: int = 8, offers: bool = True,
                  progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Start a localnet whose anvil mines every `block_time` seconds and one node, submit `n_jobs`
    jobs one after another (prompts long enough to use all `max_tokens`), each waited for until
    its answer is verified; per-job seconds and blocks and their medians. Every process started
    is stopped on return."""
    from hearth.chain.sender import Sender
    from hearth.dev.devnet import dev_account
    from hearth.dev.localnet import Localnet
    from hearth.formats.units import TOKEN
    from hearth.ipfs.kubo import KuboClient

    with tempfile.TemporaryDirectory(prefix="hearth-bench-latency-") as home, \
            Localnet(Path(home), block_time=block_time) as net:
        progress(f"localnet up (anvil --block-time {block_time:g}); starting a node")
        net.start_node()
        acct = dev_account(2)
        sender = Sender(net.w3, acct)
        # funded once, before timing: `hearth job submit` pays from the deposit
        sender.transact(net.market.token.functions.approve(net.market.address, 2**255))
        sender.transact(net.market.fn("deposit", 100 * TOKEN))
        per_job = []
        with KuboClient(net.ipfs_api) as ipfs:
            rng = random.Random(0)
            for i in range(n_jobs):
                # Jobs one after another would each be submitted just after the block that
                # answered the one before: a fixed phase. Users submit at any moment of a block.
                time.sleep(rng.uniform(0, block_time))
                r = submit_and_wait(net.market, sender, acct, ipfs, i, max_tokens, offers)
                progress(f"job {r['job_id']}: {r['seconds']:.1f} s, {r['blocks']} blocks")
                per_job.append(r)
    return {
        "block_time": block_time,
        "offers": offers,
        "jobs": n_jobs,
        "max_tokens": max_tokens,
        "median_seconds": round(statistics.median(r["seconds"] for r in per_job), 2),
        "median_blocks": statistics.median(r["blocks"] for r in per_job),
        "per_job": per_job,
    }


def submit_and_wait(market: Market, sender: Sender, acct: LocalAccount, ipfs: KuboClient, i: int,
                    max_tokens: int, offers: bool = True) -> dict[str, Any]:
    """One job as `hearth job submit` runs it: post, follow until Completed, fetch and verify."""
    from hearth import jobs
    from hearth.formats.jobspec import Params, make_spec
    from hearth.formats.units import TOKEN
    from hearth.models import bundled

    model = bundled()
    spec = make_spec(model.cid, model.sha256, messages=[{"role": "user", "content": f"Tell a story ({i})."}],
                     params=Params(max_tokens=max_tokens))
    w3 = market.w3
    start_block = int(w3.eth.block_number)
    t0 = time.monotonic()
    posted = jobs.post(market, sender, acct, ipfs, spec, TOKEN // 100, CLAIM_TIMEOUT, COMPLETION_WINDOW,
                       use_offers=offers)
    if offers and not posted.assigned:
        from hearth.formats.cid import CID
        from hearth.offers import live_offers

        live = live_offers(market, ipfs, CID.parse(model.cid).to_bytes(), jobs.chain_now(market))
        raise HearthError(f"bench job {posted.job_id} found no live offer of the node that fits (live now: {live}; "
                          f"stake {[market.account(c.offer.provider) for c in live]})")
    history: list[tuple[str, Any]] = []
    for u in jobs.follow(market, posted.job_id):
        if u.event is not None:
            history.append(("Job" + u.state, u.event))
        if u.state in ("DeadlinePassed", "Timeout"):
            raise HearthError(f"bench job {posted.job_id} stalled ({u.detail})")
    if "JobCompleted" not in [n for n, _ in history]:
        raise HearthError(f"bench job {posted.job_id} ended as {history[-1][0] if history else '?'} without a result")
    vr = jobs.fetch_result(market, ipfs, posted.job_id, history)
    seconds = time.monotonic() - t0
    end_block = int(w3.eth.block_number)
    return {
        "job_id": posted.job_id,
        "assigned": bool(posted.assigned),
        "seconds": round(seconds, 2),
        "blocks": end_block - start_block,
        # each event's block, counted from the head before the post
        "event_blocks": {n.removeprefix("Job").lower(): int(ev["blockNumber"]) - start_block for n, ev in history},
        "completion_tokens": int(vr.result.body["usage"]["completion_tokens"]),
        "inference_seconds": float(vr.result.body["timings"]["inference_seconds"]),
    }
