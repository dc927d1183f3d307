"""The hearth CLI against a real market: answers, refunds, tampering, verification, and bad
input that says what happened and moves no funds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from hearth.chain.sender import Sender
from hearth.chain.types import result_commitment
from hearth.dev.devnet import dev_account
from hearth.dev.localnet import Localnet
from hearth.formats.cid import CID
from hearth.formats.jobspec import output_hash, result_body
from hearth.formats.receipt import sign_result
from hearth.ipfs.kubo import KuboClient

from tests.waits import wait_settled

PROMPT = "What is the capital of France? Answer in one word."
UNUSED_PROVIDER = dev_account(5).address


def balances(env: Localnet, idx: int = 2) -> tuple[int, int]:
    a = dev_account(idx).address
    return env.market.account(a).balance, env.market.token_balance(a)


def test_submit_prints_verified_answer_and_job_settles(env: Localnet) -> None:
    env.start_node()
    r = env.hearth("job", "submit", "--model", "smollm2-135m", "--prompt", PROMPT)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "posted" in r.stderr and "claimed by" in r.stderr and "completed" in r.stderr
    assert "audit window closes" in r.stderr and "hearth job dispute 1" in r.stderr
    wait_settled(env.market, 1)  # the node settles after the window
    status = env.hearth_json("job", "status", "1")
    assert status["state"] == "Settled"
    verify = env.hearth("job", "verify", "1")
    assert verify.returncode == 0 and "MATCH" in verify.stdout
    listed = env.hearth_json("job", "list", "--mine")
    assert [j["job_id"] for j in listed] == [1]
    assert env.hearth_json("job", "result", "1")["verified"] is True


def test_unclaimed_job_then_expire_recovers_funds(env: Localnet) -> None:
    before = balances(env)
    r = env.hearth("job", "submit", "--public", "--prompt", "hi", "--provider", UNUSED_PROVIDER, "--claim-timeout", "2s",
                   "--payment", "0.5")
    assert r.returncode == 1
    assert "not claimed before its deadline" in r.stderr and "hearth job expire 1" in r.stderr
    assert "Traceback" not in r.stderr
    out = env.hearth_json("job", "expire", "1")
    assert out["refund"] == 0.5
    after = balances(env)
    assert sum(after) == sum(before)  # wallet + deposit: nothing lost


def test_auto_expire(env: Localnet) -> None:
    before = balances(env)
    r = env.hearth("job", "submit", "--public", "--prompt", "hi", "--provider", UNUSED_PROVIDER, "--claim-timeout", "2s",
                   "--auto-expire")
    assert r.returncode == 1 and "expired it and refunded" in r.stderr
    assert sum(balances(env)) == sum(before)


def test_cancel_before_claim(env: Localnet) -> None:
    before = balances(env)
    job = env.hearth_json("job", "submit", "--public", "--prompt", "hi", "--provider", UNUSED_PROVIDER, "--no-wait")["job_id"]
    assert env.hearth_json("job", "cancel", str(job))["cancelled"] is True
    assert env.market.job(job).state == "Cancelled"
    assert sum(balances(env)) == sum(before)
    again = env.hearth("job", "cancel", str(job))
    assert again.returncode == 1 and "InvalidState" in again.stderr and "Traceback" not in again.stderr


def test_tampered_result_is_detected_not_printed(env: Localnet) -> None:
    env.start_node()
    out = env.hearth_json("job", "submit", "--prompt", PROMPT)
    env.corrupt_block_of(out["result_cid"])
    r = env.hearth("job", "result", str(out["job_id"]))
    assert r.returncode == 1 and "failed verification" in r.stderr and "Paris" not in r.stdout


def _forge(env: Localnet, job_id: int, provider_idx: int, output: str) -> None:
    """A dishonest provider: claims and completes with an output it never computed."""
    acct = dev_account(provider_idx)
    s = Sender(env.w3, acct)
    m = env.market
    from hearth.models import bundled

    s.transact(m.token.functions.approve(m.address, 100 * 10**18))
    s.transact(m.fn("deposit", 100 * 10**18))
    s.transact(m.fn("register", 50 * 10**18, 0, b"forger".ljust(32, b"\0"), [CID.parse(bundled().cid).to_bytes()]))
    terms = m.current_terms(job_id)
    s.transact(m.fn("claim", job_id, terms.as_tuple()))
    body = result_body(job_id=job_id, chain_id=11155111, market=m.address,
                       spec_cid=str(m.posted(job_id).spec_cid), output=output, finish_reason="stop",
                       usage={"prompt_tokens": 1, "completion_tokens": 1}, model_sha256=bundled().sha256,
                       engine={"name": "forged"}, params={}, timings={}, provider=acct.address,
                       commit_salt=bytes(32))
    with KuboClient(env.ipfs_api) as k:
        cid = k.add(sign_result(acct, body).to_bytes())
    commitment = result_commitment(job_id, acct.address, output_hash(output), bytes(32))
    s.transact(m.fn("complete", job_id, terms.with_provider(acct.address).as_tuple(), cid.to_bytes(), commitment))


def test_verify_fails_for_forged_result(env: Localnet) -> None:
    # public: the forgery below writes a plaintext result (private ones are covered in tests/node/test_privacy.py)
    job = env.hearth_json("job", "submit", "--public", "--prompt", PROMPT, "--provider", dev_account(6).address,
                          "--no-wait")["job_id"]
    _forge(env, job, 6, "Berlin")
    assert env.hearth_json("job", "result", str(job))["output"] == "Berlin"  # consistent, signed...
    r = env.hearth("job", "verify", str(job))  # ...but not what the model computes
    assert r.returncode == 1 and "MISMATCH" in r.stdout


def test_bad_inputs_are_clear_and_move_no_funds(env: Localnet, tmp_path: Path) -> None:
    before = balances(env)
    cases = [
        (["job", "submit", "--model", "no-such-model", "--prompt", "hi"], "unknown model"),
        (["job", "submit", "--model", "Qm123", "--prompt", "hi"], "unknown model"),
        (["job", "submit", "--model", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "--prompt", "hi"],
         "not known here"),
        (["job", "submit", "--prompt", "hi", "--payment", "0"], "must be positive"),
        (["job", "submit", "--prompt", "hi", "--payment", "-1"], "must be positive"),
        (["job", "submit", "--prompt", "hi", "--payment", "abc"], "not an amount"),
        (["job", "submit", "--prompt", "hi", "--claim-timeout", "0"], "must be positive"),
        (["job", "submit", "--prompt", "hi", "--claim-timeout", "-5m"], "must be positive"),
        (["job", "submit", "--prompt", "hi", "--payment", "99999999"], "missing"),
        (["job", "submit"], "nothing to ask"),
        (["job", "status", "77"], "does not exist"),
        (["ipfs", "cat", "bafy-not-a-cid"], "CID"),
        (["account", "withdraw", "5000000"], "InsufficientBalance"),
    ]
    for args, msg in cases:
        r = env.hearth(*args)
        assert r.returncode != 0, args
        assert msg in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr, (args, r.stderr)
    # keystores: missing file, wrong password
    r = env.hearth("--keystore", str(tmp_path / "nope.json"), "account", "balance", account=None)
    assert r.returncode == 1 and "not found" in r.stderr
    ks = tmp_path / "ks.json"
    ks.write_text(json.dumps(Account.encrypt(Account.create().key, "right")))
    r = env.hearth("--keystore", str(ks), "account", "balance", account=None, extra_env={"HEARTH_PASSWORD": "wrong"})
    assert r.returncode == 1 and "wrong password" in r.stderr
    # an account with no tokens at all
    r = env.hearth("--keystore", str(ks), "job", "submit", "--prompt", "hi", account=None,
                   extra_env={"HEARTH_PASSWORD": "right"})
    assert r.returncode == 1 and "missing" in r.stderr and "faucet" in r.stderr
    assert balances(env) == before


def test_dead_rpc_names_the_url(env: Localnet) -> None:
    r = env.hearth("--rpc-url", "http://127.0.0.1:9", "account", "balance")
    assert r.returncode == 1 and "http://127.0.0.1:9" in r.stderr and "Traceback" not in r.stderr


def test_accounts_and_models(env: Localnet, tmp_path: Path) -> None:
    assert env.hearth_json("account", "faucet", "5", account=7)["amount"] == 5
    dep = env.hearth_json("account", "deposit", "3")
    assert dep["deposited"] == 3
    assert env.hearth_json("account", "balance")["deposited"] == 3
    assert env.hearth_json("account", "withdraw", "1")["withdrawn"] == 1
    new = env.hearth_json("account", "new", extra_env={"HEARTH_PASSWORD": "pw"})
    assert Path(new["keystore"]).exists()
    listed = env.hearth_json("account", "list")
    assert any(r.get("keystore") == new["keystore"] for r in listed)
    models = env.hearth_json("model", "list")
    assert models[0]["name"] == "smollm2-135m"
    help_ = env.hearth("job", "submit", "--help")
    assert help_.returncode == 0 and "--claim-timeout" in help_.stdout


def test_offers_are_fetched_only_from_active_providers(env: Localnet) -> None:
    """Every provider that ever published stays in the logs: the client fetches the documents of
    those the chain shows active and serving the model only (a gone provider's document may be
    nowhere, and each would cost a submit its fetch timeout)."""
    import hashlib
    import os

    from hearth.models import bundled
    from hearth.offers import live_offers

    m = env.market
    model_cid = CID.parse(bundled().cid).to_bytes()
    env.start_node()
    gone = Sender(env.w3, dev_account(3))
    gone.transact(m.token.functions.approve(m.address, 100 * 10**18))
    gone.transact(m.fn("deposit", 100 * 10**18))
    gone.transact(m.fn("register", 50 * 10**18, 0, b"gone".ljust(32, b"\0"), [model_cid]))
    nowhere = CID.parse(bytes.fromhex("1220") + hashlib.sha256(os.urandom(32)).digest())  # never added
    gone.transact(m.fn("publishOffers", nowhere.to_bytes()))
    gone.transact(m.fn("unbond"))
    env.w3.provider.make_request("evm_increaseTime", [int(m.call(m.contract.functions.unbondingDelay())) + 1])  # type: ignore[arg-type]
    env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    gone.transact(m.fn("withdrawStake"))

    fetched: list[str] = []
    with KuboClient(env.ipfs_api) as ipfs:
        cat = ipfs.cat

        def spy(cid: CID, *a: Any, **k: Any) -> bytes:
            fetched.append(str(cid))
            return cat(cid, *a, **k)

        ipfs.cat = spy  # type: ignore[method-assign, assignment]
        (found,) = live_offers(m, ipfs, model_cid, int(env.w3.eth.get_block("latest")["timestamp"]))
    assert found.offer.provider == dev_account(1).address
    assert len(fetched) == 1 and str(nowhere) not in fetched


def test_provider_cli_model_removal_and_withdrawal_void_offers(env: Localnet) -> None:
    """Registering, removing a model and `withdraw-offers` each raise the offer nonce: what the
    CLI prints matches the chain."""
    nonce = lambda: int(env.market.call(env.market.contract.functions.offerNonce(dev_account(7).address)))  # noqa: E731
    env.hearth_json("provider", "register", "--stake", "20", account=7)
    assert nonce() == 1
    removed = env.hearth("provider", "models", "remove", "smollm2-135m", account=7)
    assert removed.returncode == 0 and "every offer signed so far is void" in removed.stdout
    assert nonce() == 2
    assert env.hearth_json("provider", "withdraw-offers", account=7)["offer_nonce"] == 3 == nonce()


def test_a_running_job_counts_neither_way_in_a_providers_record(env: Localnet) -> None:
    """The offer ranking's record counts a claim once it is decided: a job still running is not
    a failure (a busy provider would rank below a newcomer), one past its completion deadline is."""
    m, provider = env.market, dev_account(6)
    s = Sender(env.w3, provider)
    from hearth.models import bundled

    s.transact(m.token.functions.approve(m.address, 100 * 10**18))
    s.transact(m.fn("deposit", 100 * 10**18))
    s.transact(m.fn("register", 50 * 10**18, 0, b"busy".ljust(32, b"\0"), [CID.parse(bundled().cid).to_bytes()]))
    now = lambda: int(env.w3.eth.get_block("latest")["timestamp"])  # noqa: E731
    for _ in range(2):
        job_id = env.hearth_json("job", "submit", "--public", "--prompt", "hi", "--provider", provider.address,
                                 "--no-offers", "--no-wait", "--timeout", "60s")["job_id"]
        s.transact(m.fn("claim", job_id, m.current_terms(job_id).as_tuple()))
    assert m.record(provider.address, now())["JobClaimed"] == 0  # both running
    env.w3.provider.make_request("evm_increaseTime", [61])  # type: ignore[arg-type]
    env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert m.record(provider.address, now()) == {"JobClaimed": 2, "JobCompleted": 0, "JobDeclined": 0, "Slashed": 0}


def test_dispute_draws_its_auditor_in_a_later_block_or_goes_to_the_arbiter(tmp_path: Path) -> None:
    """`hearth job dispute` locks the bond, then draws the auditor from the hash of the dispute's
    block (`finalize` in a later block: a hash the client could see before asking would let it
    pick its auditor). Here the only node is alone in its class: nobody to draw, so the arbiter
    decides, and the CLI says so."""
    from dataclasses import replace

    from hearth.dev.deploy import DEVNET_PARAMS

    with Localnet(tmp_path / "home", params=replace(DEVNET_PARAMS, dispute_window=120)) as net:
        net.start_node()
        job_id = net.hearth_json("job", "submit", "--public", "--prompt", PROMPT, "--max-tokens", "4")["job_id"]
        short = net.hearth("job", "dispute", str(job_id))
        assert short.returncode == 1 and "the dispute bond is 0.1 HRT" in short.stderr
        assert "hearth account deposit 0.1" in short.stderr
        net.hearth_json("account", "deposit", "0.1")
        out = net.hearth_json("job", "dispute", str(job_id))
        assert (out["disputed"], out["auditor"], out["bond"]) == (True, None, DEVNET_PARAMS.dispute_bond / 10**18)
        history = [name for name, _ in net.market.history(job_id)]
        assert history[-2:] == ["AuditStarted", "JobDisputed"] and net.market.job(job_id).state == "Disputed"
        dispute_block = net.market.logs("AuditStarted", net.market.deploy_block, "latest", jobId=job_id)[0]["blockNumber"]
        disputed_block = net.market.logs("JobDisputed", net.market.deploy_block, "latest", jobId=job_id)[0]["blockNumber"]
        assert disputed_block > dispute_block
        again = net.hearth("job", "dispute", str(job_id))
        assert again.returncode == 1 and "Disputed" in again.stderr and "Traceback" not in again.stderr


def test_a_client_can_start_the_audit_its_provider_does_not(tmp_path: Path) -> None:
    """A job drawn for audit is neither paid nor refunded until someone starts its audit; the
    provider's node does, a dishonest provider will not: `hearth job status` says so after the
    window, and `hearth job audit` starts it (here the provider is alone in its class: skipped,
    and paid, as the rules say)."""
    from dataclasses import replace

    from hearth.dev.deploy import DEVNET_PARAMS

    with Localnet(tmp_path / "home", params=replace(DEVNET_PARAMS, audit_bps=10_000)) as net:
        forger = dev_account(4).address
        job_id = net.hearth_json("job", "submit", "--public", "--prompt", "hi", "--provider", forger, "--no-offers",
                                 "--no-wait")["job_id"]
        _forge(net, job_id, 4, "whatever")
        net.w3.provider.make_request("evm_increaseTime", [DEVNET_PARAMS.dispute_window + 1])  # type: ignore[arg-type]
        net.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        status = net.hearth("job", "status", str(job_id))
        assert f"drawn for audit: start it with hearth job audit {job_id}" in status.stdout
        assert net.hearth_json("job", "status", str(job_id))["drawn_for_audit"] is True
        out = net.hearth_json("job", "audit", str(job_id))
        assert (out["state"], out["auditor"]) == ("Settled", None)
        assert [n for n, _ in net.market.history(job_id)][-3:] == ["AuditStarted", "AuditSkipped", "JobSettled"]
