"""The provider node as a separate process against real anvil, the real contracts, the embedded
IPFS daemon and the bundled SmolLM2 model."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest
from eth_utils import function_abi_to_4byte_selector
from hearth.chain.types import result_commitment
from hearth.dev.devnet import dev_account
from hearth.dev.localnet import Localnet
from hearth.formats.cid import CID
from hearth.ipfs.kubo import KuboClient
from hearth.jobs import fetch_result

from tests.waits import wait_settled

PROMPT = "What is the capital of France? Answer in one word."


def submit(env: Localnet, *extra: str, prompt: str = PROMPT) -> dict:
    return env.hearth_json("job", "submit", "--prompt", prompt, "--max-tokens", "16", *extra)  # type: ignore[no-any-return]


def wait_state(env: Localnet, job_id: int, state: str, timeout: float = 30) -> bool:
    """Whether the job reaches `state` on chain in time (a decline is sent on its own thread)."""
    end = time.monotonic() + timeout
    while env.market.job(job_id).state != state:
        if time.monotonic() > end:
            return False
        time.sleep(0.2)
    return True


def post_only(env: Localnet, *extra: str, prompt: str = PROMPT) -> int:
    out = env.hearth_json("job", "submit", "--prompt", prompt, "--max-tokens", "16", "--no-wait", *extra)
    return int(out["job_id"])


def test_job_is_claimed_run_and_completed_with_matching_hash(env: Localnet) -> None:
    node = env.start_node()
    out = submit(env, "--public")  # a private job's output hash is keyed (tests/node/test_privacy.py)
    assert "Paris" in out["output"]
    job_id = out["job_id"]
    wait_settled(env.market, job_id)  # by the node, after the audit window
    # the on-chain commitment opens with the sha256 of the output in the result on IPFS and its salt
    ev = env.market.logs("JobCompleted", env.market.deploy_block, "latest", jobId=job_id)[0]["args"]
    with KuboClient(env.ipfs_api) as k:
        vr = fetch_result(env.market, k, job_id)
    digest = hashlib.sha256(vr.result.output.encode()).digest()
    assert result_commitment(job_id, vr.provider, digest, vr.result.commit_salt) == bytes(ev["commitment"])
    assert str(CID.parse(bytes(ev["resultCid"]))) == out["result_cid"]
    view = node.get(f"/jobs/{job_id}")
    assert view["step"] == "completed"
    # submitted under the node's offer: assigned at post, so the node never sends a claim
    assert out["assigned"] == dev_account(1).address
    assert [t["step"] for t in view["timeline"]] == ["seen", "claimed", "ran", "uploaded", "complete_signed", "completed"]


def test_api_status_metrics_and_dashboard(env: Localnet) -> None:
    node = env.start_node()
    submit(env)
    status = node.get("/status")
    assert status["provider_status"] == "Active" and status["chain_id"] == 11155111
    assert status["models_loaded"] and status["jobs"]["completed"] == 1
    metrics = httpx.get(node.api + "/metrics").text
    assert 'hearth_jobs{step="completed"} 1' in metrics and "hearth_tokens_generated_total" in metrics
    assert "Hearth provider node" in httpx.get(node.api + "/").text
    assert httpx.get(node.api + "/jobs/999").status_code == 404
    assert node.get("/health")["ok"] is True
    assert "key" not in httpx.get(node.api + "/status").text.lower().replace("keystore", "")


OPEN = ("--no-offers",)  # an open job, which the node claims; without it, the node's offer assigns it at post


@pytest.mark.parametrize(("crash_at", "how"), [
    *[(step, "open") for step in ("claimed", "inference", "uploaded", "complete_signed", "complete_sent")],
    *[(step, "offer") for step in ("claimed", "inference", "complete_sent")]])
def test_crash_at_each_step_completes_exactly_once(env: Localnet, crash_at: str, how: str) -> None:
    node = env.start_node(crash_at=crash_at)
    job_id = post_only(env, *(OPEN if how == "open" else ()))
    node.proc.wait(timeout=60)  # the node dies at the injected point, as with kill -9
    assert node.proc.returncode == 137
    node2 = env.start_node()
    node2.wait_job(job_id, ("completed",))
    wait_settled(env.market, job_id)
    assert len(env.market.logs("JobClaimed", env.market.deploy_block, "latest", jobId=job_id)) == 1
    assert len(env.market.logs("JobCompleted", env.market.deploy_block, "latest", jobId=job_id)) == 1
    # never a transaction twice: the provider sent registration txs, one claim (none under its
    # offer: the post assigned the job) and one complete
    provider = node2.get("/status")["address"]
    txs = [tx for n in range(env.market.deploy_block, env.w3.eth.block_number + 1)
           for tx in env.w3.eth.get_block(n, full_transactions=True)["transactions"] if tx["from"] == provider]
    selectors = [bytes(tx["input"])[:4] for tx in txs if tx["to"] == env.market.address]
    abi = {e["name"]: e for e in env.market.contract.abi if e["type"] == "function"}
    claim_sel = function_abi_to_4byte_selector(abi["claim"])  # from the ABI: survives a change of JobTerms
    complete_sel = function_abi_to_4byte_selector(abi["complete"])
    assert selectors.count(claim_sel) == (1 if how == "open" else 0)
    assert selectors.count(complete_sel) == 1


def test_real_sigkill_during_inference_then_restart(env: Localnet) -> None:
    node = env.start_node()
    job_id = post_only(env, prompt="Write a long poem about the sea and the wind, with many verses.")
    deadline = time.monotonic() + 30
    while True:
        r = httpx.get(f"{node.api}/jobs/{job_id}")
        if r.status_code == 200 and r.json()["step"] == "claimed":
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    env.kill_node(node)  # SIGKILL while the model runs
    node2 = env.start_node()
    node2.wait_job(job_id, ("completed",))
    wait_settled(env.market, job_id)


def test_catch_up_after_node_downtime(env: Localnet) -> None:
    node = env.start_node()
    submit(env)
    env.kill_node(node)
    job_id = post_only(env)  # posted while no node runs
    node2 = env.start_node()
    node2.wait_job(job_id, ("completed",))


def test_assigned_job_found_after_its_last_decline_moment_still_runs(env: Localnet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A job an offer assigned while the node was down, found when it can no longer be given
    back (its window half gone), is run in the time left instead of skipped to expire."""
    config = tmp_path / "node.toml"
    config.write_text("offer_window = 40\n")  # the last moment to decline: 10 s after the post
    node = env.start_node(extra=("--config", str(config)))
    env.kill_node(node)  # its offers stay live until they expire
    job_id = post_only(env, "--timeout", "40s")
    deadline = env.market.job(job_id).deadline
    time.sleep(max(0.0, deadline - 40 + 12 - time.time()))  # past the last moment to decline
    node2 = env.start_node(extra=("--config", str(config)))
    view = node2.wait_job(job_id, ("completed", "skipped", "failed"), timeout=40)
    assert view["step"] == "completed", view
    assert env.market.job(job_id).state in ("Completed", "Settled")


def test_restart_after_a_crash_voids_the_offers_left_live(env: Localnet) -> None:
    """Offers a killed node could not withdraw are voided when it starts again (they may carry a
    price or limits it no longer offers); new ones are published under the raised nonce."""
    nonce = lambda: int(env.market.call(env.market.contract.functions.offerNonce(dev_account(1).address)))  # noqa: E731
    node = env.start_node()
    before = nonce()
    env.kill_node(node)
    node2 = env.start_node()
    assert nonce() == before + 1
    assert "offers of the last run withdrawn" in node2.log.read_text()
    out = submit(env)  # under the new offer
    assert out["assigned"] == dev_account(1).address


@pytest.mark.slow
def test_rpc_down_30s_then_back(env: Localnet) -> None:
    node = env.start_node()
    submit(env)
    env.stop_anvil()
    time.sleep(30)
    assert node.get("/health")["rpc"] is False
    env.restart_anvil()
    job_id = post_only(env)
    node.wait_job(job_id, ("completed",), timeout=90)
    wait_settled(env.market, job_id)


@pytest.mark.parametrize("how", ["open", "offer"])
def test_tampered_spec_is_never_claimed(env: Localnet, how: str) -> None:
    """An open job is never claimed (no gas spent); one the node's offer assigned it (while it
    was down) is declined: the client is refunded, the collateral freed."""
    node = env.start_node()
    env.kill_node(node)
    job_id = post_only(env, *(OPEN if how == "open" else ()))
    env.corrupt_block_of(env.market.posted(job_id).spec_cid)
    node2 = env.start_node()
    view = node2.wait_job(job_id, ("skipped",))
    assert "failed verification" in view["reason"]
    assert wait_state(env, job_id, "Posted" if how == "open" else "Cancelled")


def test_an_assigned_job_whose_spec_will_not_come_is_declined_after_the_fetch_bound(env: Localnet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A client can post, under the node's offer, a job whose spec nobody can fetch: the node gives
    up after `assigned_fetch_seconds` and declines it, instead of holding one of its open-job slots
    until the last moment to decline (here 140 s after the post)."""
    config = tmp_path / "node.toml"
    config.write_text("assigned_fetch_seconds = 3\n")
    env.kill_node(env.start_node(extra=("--config", str(config))))
    job_id = post_only(env)  # under the node's offer, while it is down
    last_moment = env.market.job(job_id).deadline - 300 // 2 - 10  # the node's act-by for a 300 s offer window
    env.block_path(env.market.posted(job_id).spec_cid).unlink()  # gone: "not found", tried again and again
    node = env.start_node(extra=("--config", str(config)))
    view = node.wait_job(job_id, ("skipped",), timeout=30)
    assert "not found" in view["reason"], view
    assert wait_state(env, job_id, "Cancelled")
    assert time.time() < last_moment


def test_a_decline_cut_short_by_a_crash_is_sent_after_the_restart(env: Localnet) -> None:
    """The node journals an assigned job it will not run as skipped, then declines it on a thread
    of its own: killed in between, it sends the decline when it starts again."""
    env.kill_node(env.start_node())
    job_id = post_only(env)  # under the node's offer, while it is down
    env.corrupt_block_of(env.market.posted(job_id).spec_cid)
    node = env.start_node(crash_at="decline", wait=False)
    node.proc.wait(timeout=90)
    assert node.proc.returncode == 137 and env.market.job(job_id).state == "Claimed"
    env.start_node()
    assert wait_state(env, job_id, "Cancelled")


def test_a_job_declined_under_an_offer_is_posted_again_as_an_open_job(env: Localnet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The only offer is from a node that takes at most 8 tokens: it declines the 16-token job;
    submit posts it again as an open job, which a node without offers claims and answers."""
    small, open_only = tmp_path / "small.toml", tmp_path / "open.toml"
    small.write_text("max_tokens = 8\n")
    open_only.write_text("offer_ttl = 0\n")
    env.start_node(1, extra=("--config", str(small)))
    env.start_node(3, extra=("--config", str(open_only)))  # (dev account 2 is the client)
    out = submit(env)
    (first,) = out["declined"]
    assert env.market.job(first).state == "Cancelled"
    assert out["job_id"] != first and out["assigned"] is None and "Paris" in out["output"]
    assert out["provider"] == dev_account(3).address


def test_tampered_model_is_never_run(env: Localnet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + bytes(range(256)) * 2000)
    added = env.hearth_json("model", "add", str(fake), "--name", "fake")
    fake.unlink()  # the node must fetch it from IPFS, where it is tampered with
    env.corrupt_block_of(added["cid"])
    node = env.start_node(extra=("--model", "fake", "--model", "smollm2-135m"))
    job_id = post_only(env, "--model", "fake")  # under the node's offer: declined, not run
    view = node.wait_job(job_id, ("skipped",))
    assert "failed verification" in view["reason"]
    assert wait_state(env, job_id, "Cancelled")
    assert [n for n, _ in env.market.history(job_id)] == ["JobPosted", "JobClaimed", "JobDeclined"]


def test_offers_follow_the_provider_cli_while_the_node_runs(env: Localnet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A model removed with the CLI while the node runs voids its offers: it publishes again at
    once, for the models the chain still has it serve. `withdraw-offers` voids them too, and the
    node publishes none until it restarts."""
    config, fake = tmp_path / "node.toml", tmp_path / "fake.gguf"
    config.write_text("offer_ttl = 80\n")  # the node looks at its offer nonce every 10 s (clients want 60 s left)
    fake.write_bytes(b"GGUF" + bytes(range(256)) * 2000)
    env.hearth_json("model", "add", str(fake), "--name", "fake")
    node = env.start_node(extra=("--config", str(config), "--model", "fake", "--model", "smollm2-135m"))
    me = dev_account(1).address

    def offered(model: str) -> list[str]:
        return [r["provider"] for r in env.hearth_json("provider", "offers", "--model", model)]

    def published_after(block: int) -> list[Any]:
        logs = env.market.logs("OffersPublished", block, "latest", provider=me)  # anvil refuses a start past its head
        return [ev for ev in logs if ev["blockNumber"] > block]

    def block_of(out: dict[str, Any]) -> int:
        return int(env.market.w3.eth.get_transaction_receipt(out["tx"])["blockNumber"])

    assert offered("fake") == [me] == offered("smollm2-135m")
    removal = block_of(env.hearth_json("provider", "models", "remove", "fake", account=1))
    end = time.monotonic() + 30
    while not published_after(removal):
        assert time.monotonic() < end, node.log.read_text()[-3000:]
        time.sleep(0.5)
    assert offered("fake") == [] and offered("smollm2-135m") == [me]
    assert "publishing again" in node.log.read_text() and "published 1 offers" in node.log.read_text()
    withdrawal = block_of(env.hearth_json("provider", "withdraw-offers", account=1))
    time.sleep(22)  # two looks at the nonce
    assert not published_after(withdrawal) and offered("smollm2-135m") == []
    assert "publishes none until it restarts" in node.log.read_text()


def test_reorg_below_cursor_is_rescanned(env: Localnet) -> None:
    """A reorg replaces blocks the node already scanned, and the new branch holds a job: the
    node notices its cursor block changed hash, rewinds, and finds and completes that job."""
    from hearth.chain.sender import Sender
    from hearth.formats.jobspec import make_spec
    from hearth.models import bundled

    model = bundled()
    spec = make_spec(model.cid, model.sha256, messages=[{"role": "user", "content": "Say hi."}])
    with KuboClient(env.ipfs_api) as k:
        spec_cid = k.add(spec.to_bytes())
    client = Sender(env.w3, dev_account(2))
    client.transact(env.market.token.functions.approve(env.market.address, 10**18))
    client.transact(env.market.fn("deposit", 10**17))
    node = env.start_node()
    for _ in range(3):
        env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    head = env.w3.eth.block_number
    deadline = time.monotonic() + 30
    while node.get("/status")["cursor_block"] < head:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    env.kill_node(node)
    # the other branch replaces the node's last 3 scanned blocks and carries a new job
    params = env.market.post_params(CID.parse(model.cid).to_bytes(), spec_cid.to_bytes(), 10**16,
                                    int(time.time()) + 600, 600)
    tx = client.prepare(env.market.fn("postJob", params), gas=500_000)
    r = env.w3.provider.make_request("anvil_reorg", [3, [["0x" + tx.raw.hex(), 0]]])  # type: ignore[arg-type]
    assert "error" not in r, r
    receipt = env.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
    assert receipt["blockNumber"] <= head
    job_id = env.market.job_posted_id(receipt)
    node2 = env.start_node()
    node2.wait_job(job_id, ("completed",))
    assert "reorg detected" in node2.log.read_text()
