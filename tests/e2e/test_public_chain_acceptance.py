"""Issue 15's acceptance run: a public chain made out of anvil. Every RPC call of the two clients
and the two provider nodes goes through tests/rpcproxy.py (30% of calls answered 429, get_logs
capped at 100 blocks), the nodes' new-block subscriptions through tests/wsproxy.py (dropped every
20 s), blocks come every 2 seconds, and the base fee is held at 1 gwei but multiplied by 20 for 30
blocks in the middle of the run (transactions signed before the spike are stuck until replaced).
20 jobs from two clients must all end settled; each is claimed and completed exactly once; the
market's token balance equals what it owes when the run ends."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from hearth import jobs
from hearth.chain.deployments import Deployment
from hearth.chain.market import connect
from hearth.chain.sender import Sender
from hearth.dev.devnet import dev_account, dev_accounts
from hearth.dev.localnet import Localnet, NodeProc
from hearth.formats.jobspec import Params, make_spec
from hearth.ipfs.kubo import KuboClient
from hearth.models import bundled

from tests.rpcproxy import RpcProxy
from tests.wsproxy import WsProxy

GWEI = 10**9
JOBS_PER_CLIENT = 10
CLIENTS, PROVIDERS = (2, 3), (1, 4)


class BaseFee(threading.Thread):
    """Sets the next block's base fee on every new block: `normal`, or `normal * factor` for
    `spike_blocks` blocks once `spike()` is called."""

    def __init__(self, env: Localnet, normal: int, factor: int, spike_blocks: int) -> None:
        super().__init__(name="basefee", daemon=True)
        self.w3, self.normal, self.factor, self.left = env.w3, normal, factor, 0
        self.spike_blocks, self.spiked_blocks = spike_blocks, 0
        self.stop = threading.Event()

    def spike(self) -> None:
        if self.spiked_blocks == 0 and self.left == 0:
            self.left = self.spike_blocks

    def run(self) -> None:
        last = -1
        while not self.stop.is_set():
            n = self.w3.eth.block_number
            if n != last:
                last = n
                fee = self.normal * (self.factor if self.left > 0 else 1)
                if self.left > 0:
                    self.left -= 1
                    self.spiked_blocks += 1
                self.w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(fee)])  # type: ignore[arg-type]
            self.stop.wait(0.2)


class SpikingProxy(RpcProxy):
    """Starts the base-fee spike just before forwarding the `at`-th signed transaction: that one
    was priced for the old base fee, so it is refused and must be replaced (deterministically,
    not only when a spike happens to meet a transaction in flight)."""

    def __init__(self, upstream: str, fees: BaseFee, at: int, **kw: Any) -> None:
        super().__init__(upstream, **kw)
        self.fees, self.at = fees, at

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("method") == "eth_sendRawTransaction" and len(self.raw_transactions) + 1 == self.at:
            self.fees.spike()
            self.upstream_call("anvil_setNextBlockBaseFeePerGas", [hex(self.fees.normal * self.fees.factor)])
        return super().answer(req)


def _post_jobs(deployment: Deployment, proxy_url: str, ipfs_api: str, client: int, posted: list[int],
               errors: list[BaseException]) -> None:
    """One client: deposit, then post JOBS_PER_CLIENT jobs through the proxy."""
    try:
        w3 = connect(proxy_url)
        env_market = deployment.market_binding(w3)
        acct = dev_account(client)
        sender = Sender(w3, acct)
        sender.transact(env_market.token.functions.approve(env_market.address, 10**18))
        sender.transact(env_market.fn("deposit", 10**18))
        model = bundled()
        with KuboClient(ipfs_api) as ipfs:
            for i in range(JOBS_PER_CLIENT):
                spec = make_spec(model.cid, model.sha256, messages=[{"role": "user", "content": f"Say {i} in words."}],
                                 params=Params(max_tokens=12))
                p = jobs.post(env_market, sender, acct, ipfs, spec, 10**16, 600, 600)
                posted.append(p.job_id)
                time.sleep(3)  # a client's pace: the run spans the fee spike
    except BaseException as e:  # noqa: BLE001  (reported by the test thread)
        errors.append(e)


def _mined(env: Localnet, tx_hash: bytes) -> bool:
    try:
        return env.w3.eth.get_transaction_receipt(tx_hash) is not None  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001  (TransactionNotFound: a replaced version)
        return False


@pytest.mark.slow
def test_twenty_jobs_through_a_hostile_public_chain(tmp_path: Path) -> None:
    with Localnet(tmp_path / "home", block_time=2) as env:
        fees = BaseFee(env, GWEI, 20, 30)
        fees.start()
        try:
            nodes, posted = _run(env, tmp_path, fees)
        finally:
            fees.stop.set()
            fees.join(timeout=10)
        m = env.market
        for j in posted:  # exactly once each, whatever was re-signed or re-sent on the way
            assert len(m.logs("JobClaimed", m.deploy_block, "latest", jobId=j)) == 1
            assert len(m.logs("JobCompleted", m.deploy_block, "latest", jobId=j)) == 1
        done = [n.get("/status")["jobs"].get("completed", 0) for n in nodes]
        assert sum(done) == len(posted), done
        owed = sum(m.account(a.address).balance + m.account(a.address).stake for a in dev_accounts(10))
        pool = int(m.call(m.contract.functions.auditPool()))  # the audit fees, less audit rewards
        assert m.token_balance(m.address) == owed + pool, "every token is accounted for"


def _run(env: Localnet, tmp_path: Path, fees: BaseFee) -> tuple[list[NodeProc], list[int]]:
    """The run itself: nodes and clients through the proxies until every job is settled."""
    env.w3.provider.make_request("anvil_mine", [hex(150)])  # type: ignore[arg-type]  # a history over the log cap
    # the spike begins with the 30th signed transaction: the clients' deposits and first posts
    # and the nodes' registrations and first claims come before it
    with SpikingProxy(env.rpc, fees, 30, share_429=0.3, max_log_range=100) as proxy, \
            WsProxy(env.rpc.replace("http://", "ws://"), drop_every=20.0) as ws:
        direct_rpc, env.rpc = env.rpc, proxy.url  # the clients' and the nodes' endpoint from now on
        config = tmp_path / "node.toml"
        config.write_text(f'ws_url = "{ws.url}"\npoll_interval = 1.0\n')
        nodes = [env.start_node(dev_account=a, extra=("--config", str(config))) for a in PROVIDERS]
        posted: list[int] = []
        errors: list[BaseException] = []
        posters = [threading.Thread(target=_post_jobs, args=(env.deployment, proxy.url, env.ipfs_api, c, posted, errors))
                   for c in CLIENTS]
        for t in posters:
            t.start()
        for t in posters:
            t.join(timeout=600)
        assert not errors, errors
        assert len(posted) == 2 * JOBS_PER_CLIENT
        deadline = time.monotonic() + 600
        while fees.spiked_blocks < 30 or any(env.market.job(j).state != "Settled" for j in posted):
            states = {j: env.market.job(j).state for j in posted}
            assert not set(states.values()) & {"Expired", "Cancelled", "Refunded"}, states
            assert time.monotonic() < deadline, f"not all settled: {states}"
            time.sleep(2)
        env.rpc = direct_rpc
        sent = {keccak(hexstr=raw) for raw in proxy.raw_transactions}
        mined = {h for h in sent if _mined(env, h)}
        print(f"\n{len(sent)} distinct transactions sent, {len(mined)} mined, {len(sent) - len(mined)} "
              f"replaced or dropped; proxy {dict(proxy.counts)}; websocket {dict(ws.counts)}")
        assert proxy.counts["429"] > 0 and proxy.counts["range_refused"] > 0
        assert len(sent) > len(mined), "the transaction caught by the spike was replaced"
        assert ws.counts["drops"] > 0
    return nodes, posted
