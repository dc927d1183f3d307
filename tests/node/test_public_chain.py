"""A provider node process on a chain that behaves like a public one: its WebSocket endpoint
drops connections (tests/wsproxy.py), and reorgs (anvil_reorg) replace 2 or 3 blocks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hearth.dev.localnet import Localnet
from hearth.formats.cid import CID

from tests.node.test_node import post_only, submit
from tests.waits import wait_settled
from tests.wsproxy import WsProxy


def _until(check: Callable[[], bool], what: str, timeout: float = 90, tick: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        tick()
        time.sleep(0.2)


def _config(tmp_path: Path, **fields: object) -> Path:
    f = tmp_path / "node.toml"
    f.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in fields.items()))
    return f


def test_node_completes_jobs_through_a_dropping_websocket(env: Localnet, tmp_path: Path) -> None:
    mine = lambda: env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # noqa: E731
    with WsProxy(env.rpc.replace("http://", "ws://"), drop_every=2.0, mode="reset") as proxy:
        # polls every 5 s: pushes through the proxy are what make the node quick
        node = env.start_node(extra=("--config", str(_config(tmp_path, ws_url=proxy.url, poll_interval=5.0))))
        for i in range(3):
            out = submit(env, prompt=f"Count to {i + 2}.")
            wait_settled(env.market, out["job_id"])
            connects = node.get("/status")["websocket"]["connects"]
            _until(lambda c=connects: node.get("/status")["websocket"]["connects"] > c, "a reconnection", tick=mine)
        ws = node.get("/status")["websocket"]
        assert ws["connects"] >= 4 and ws["drops"] >= 3 and ws["pushes"] > 0
        assert proxy.counts["drops"] >= 3 and proxy.counts["subscribed"] >= 4
        # and after the last reconnection, a job posted is still picked up and completed
        job_id = post_only(env)
        node.wait_job(job_id, ("completed",), timeout=90)
    assert "websocket reconnected" in node.log.read_text()


def _replacing_post(env: Localnet, prompt: str) -> tuple[str, str]:
    """A postJob transaction signed (not sent) by dev account 4, for a reorg's new branch, and its
    spec's CID (added to IPFS, so the node can run it)."""
    from hearth.chain.sender import Sender
    from hearth.dev.devnet import dev_account
    from hearth.formats.jobspec import make_spec
    from hearth.ipfs.kubo import KuboClient
    from hearth.models import bundled

    model = bundled()
    spec = make_spec(model.cid, model.sha256, messages=[{"role": "user", "content": prompt}])
    with KuboClient(env.ipfs_api) as k:
        spec_cid = k.add(spec.to_bytes())
    client = Sender(env.w3, dev_account(4))
    client.transact(env.market.token.functions.approve(env.market.address, 10**18))
    client.transact(env.market.fn("deposit", 10**17))
    params = env.market.post_params(CID.parse(model.cid).to_bytes(), spec_cid.to_bytes(), 10**16,
                                    int(time.time()) + 600, 600)
    return "0x" + client.prepare(env.market.fn("postJob", params), gas=500_000).raw.hex(), str(spec_cid)


def _reorg(env: Localnet, depth: int, raw_tx: str) -> None:
    r = env.w3.provider.make_request("anvil_reorg", [depth, [[raw_tx, 0]]])  # type: ignore[arg-type]
    assert "error" not in r, r


def test_with_confirmations_a_reorged_job_is_never_acted_on(env: Localnet, tmp_path: Path) -> None:
    """confirmations = 3, a reorg of depth 3 replaces the block of a posted job by a branch that
    posts another job (same id): the node never claims the first, and completes the second."""
    raw, spec_cid = _replacing_post(env, "Say hi.")
    node = env.start_node(extra=("--config", str(_config(tmp_path, confirmations=3))))
    for _ in range(3):  # the node's registration stays below the reorg
        env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    job_id = post_only(env)
    posted_at = env.market.logs("JobPosted", env.market.deploy_block, "latest", jobId=job_id)[0]["blockNumber"]
    assert posted_at == env.w3.eth.block_number, "nothing mined above it: 0 confirmations"
    old_spec = str(env.market.posted(job_id).spec_cid)
    _reorg(env, 3, raw)
    assert str(env.market.posted(job_id).spec_cid) == spec_cid != old_spec, "the id names the new job"
    for _ in range(3):
        env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    view = node.wait_job(job_id, ("completed",), timeout=90)
    assert view["spec_cid"] == spec_cid
    assert [t["step"] for t in view["timeline"]].count("seen") == 1
    assert "reorg detected" not in node.log.read_text(), "the reorg stayed within the confirmation depth"


@pytest.mark.parametrize("depth", [2, 3])
def test_live_node_rescans_a_reorg_below_its_cursor(env: Localnet, depth: int) -> None:
    """No confirmations; the node has scanned the head; a reorg of `depth` blocks brings a job in
    its first new block: the running node sees the cursor's block change, rewinds, and completes it."""
    raw, spec_cid = _replacing_post(env, "Say hello.")
    node = env.start_node()
    for _ in range(depth):
        env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    head = env.w3.eth.block_number
    _until(lambda: node.get("/status")["cursor_block"] >= head, "the node to scan the head")
    _reorg(env, depth, raw)
    job_id = max(int(ev["args"]["jobId"]) for ev in env.market.logs("JobPosted", head - depth + 1, "latest"))
    view = node.wait_job(job_id, ("completed",), timeout=90)
    assert view["spec_cid"] == spec_cid
    wait_settled(env.market, job_id)
    assert "reorg detected" in node.log.read_text()
