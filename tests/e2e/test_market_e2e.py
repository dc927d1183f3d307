"""The whole market with several parties, on a Sepolia-like chain (1-second blocks): two
provider nodes as separate processes, two clients, 20 jobs; one node killed mid-run and
restarted. The market audits 10% of jobs (the devnet default), so the two nodes audit each
other now and then. Every job settles exactly once and every token is where it should be: each
provider holds what its jobs paid (less the audit fee) plus its audit rewards, and the audit pool
holds the fees less the rewards. Clients post under the nodes' offers (the default), so every job
is assigned by its post transaction: no claim race, and no provider transaction reverts. Node 1
waits 10 s past the first due job's window (settle_delay), so it pays its jobs in batches
(settleMany); node 3 settles each as soon as its window ends."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hearth import jobs
from hearth.chain.sender import Sender
from hearth.dev.devnet import dev_account
from hearth.dev.localnet import Localnet
from hearth.formats.jobspec import Params, make_spec
from hearth.formats.units import TOKEN
from hearth.ipfs.kubo import KuboClient
from hearth.models import bundled

PROVIDERS = (1, 3)
CLIENTS = (2, 4)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Localnet]:
    e = Localnet(tmp_path / "home", block_time=1).start()
    yield e
    e.close()


def test_two_providers_two_clients_twenty_jobs(env: Localnet) -> None:
    m = env.market
    nodes = {i: env.start_node(i, extra_env={"HEARTH_SETTLE_DELAY": "10"} if i == 1 else None) for i in PROVIDERS}
    start = {a: (m.account(dev_account(a).address).balance, m.token_balance(dev_account(a).address))
             for a in PROVIDERS + CLIENTS}
    model = bundled()
    ipfs = KuboClient(env.ipfs_api)
    senders = {c: Sender(env.w3, dev_account(c)) for c in CLIENTS}
    for s in senders.values():
        s.transact(m.token.functions.approve(m.address, 1000 * TOKEN))
        s.transact(m.fn("deposit", 100 * TOKEN))
    paid_by: Counter[int] = Counter()
    posted: dict[int, int] = {}
    first_block = int(env.w3.eth.block_number)
    for i in range(20):
        c = CLIENTS[i % 2]
        payment = TOKEN // 100 * (i + 1)
        spec = make_spec(model.cid, model.sha256, messages=[{"role": "user", "content": f"Name a fruit ({i})."}],
                         params=Params(max_tokens=8))
        p = jobs.post(m, senders[c], dev_account(c), ipfs, spec, payment, 300, 300)
        assert p.assigned and p.payment <= payment  # under an offer, at its price
        posted[p.job_id] = p.payment
        paid_by[c] += p.payment
        if i == 6:  # kill one node mid-run, restart it a little later
            env.kill_node(nodes[3])
        if i == 12:
            nodes[3] = env.start_node(3)
    deadline = time.monotonic() + 240
    while any(m.job(j).state != "Settled" for j in posted):
        assert time.monotonic() < deadline, {j: m.job(j).state for j in posted}
        time.sleep(1)
    ipfs.close()
    for j in posted:  # assigned at post: JobClaimed came in the post's own transaction
        txs = {n: ev["transactionHash"] for n, ev in m.history(j) if n in ("JobPosted", "JobClaimed")}
        assert txs["JobPosted"] == txs["JobClaimed"], f"job {j} was claimed in a later transaction"
    providers = {dev_account(a).address for a in PROVIDERS}
    sent = [tx for b in range(first_block, int(env.w3.eth.block_number) + 1)
            for tx in env.w3.eth.get_block(b, full_transactions=True)["transactions"] if tx["from"] in providers]
    assert sent, "the providers sent transactions"
    reverted = [(m.contract.decode_function_input(tx["input"])[0].fn_name, tx["hash"].hex())
                for tx in sent if env.w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1]
    assert reverted == [], f"provider transactions reverted: {reverted}"
    batches = [tx for tx in sent if m.contract.decode_function_input(tx["input"])[0].fn_name == "settleMany"]
    # node 3 may batch too: after its restart, the jobs whose windows ended meanwhile are due at once
    assert dev_account(1).address in {tx["from"] for tx in batches}, "node 1 paid jobs due together at once"
    assert all(len(m.contract.events.JobSettled().process_receipt(env.w3.eth.get_transaction_receipt(tx["hash"])))
               > 1 for tx in batches)
    audit_fee_bps = int(m.call(m.contract.functions.auditFeeBps()))
    earned: Counter[str] = Counter()
    fees = rewards = 0
    for j, payment in posted.items():
        history = m.history(j)
        settled = [ev for n, ev in history if n == "JobSettled"]
        assert len(settled) == 1, f"job {j} settled {len(settled)} times"
        fee = payment * audit_fee_bps // 10_000
        assert settled[0]["args"]["providerAmount"] == payment - fee
        assert settled[0]["args"]["auditFee"] == fee
        earned[settled[0]["args"]["provider"]] += payment - fee
        fees += fee
        for n, ev in history:
            if n == "AuditorPaid":
                earned[ev["args"]["auditor"]] += ev["args"]["reward"]
                rewards += ev["args"]["reward"]
            assert n != "Slashed", f"an honest party was slashed on job {j}"
    for a in PROVIDERS:  # an auditor's collateral is back once its audit ended
        wait = time.monotonic() + 60
        while m.account(dev_account(a).address).open_jobs:
            assert time.monotonic() < wait
            time.sleep(0.5)
    for a in PROVIDERS:
        addr = dev_account(a).address
        acct = m.account(addr)
        assert acct.balance - start[a][0] == earned[addr], f"provider {a} paid exactly what its jobs paid"
        assert acct.open_jobs == 0
    for c in CLIENTS:
        addr = dev_account(c).address
        total = m.account(addr).balance + m.token_balance(addr)
        assert sum(start[c]) - total == paid_by[c], f"client {c} paid exactly its jobs"
    assert sum(earned.values()) + fees - rewards == sum(posted.values())
    pool = int(m.call(m.contract.functions.auditPool()))
    assert pool == fees - rewards
    # market invariant: with no open job, it holds exactly the internal balances, stakes and pool
    everyone = {dev_account(i).address for i in range(10)}
    owed = sum(m.account(a).balance + m.account(a).stake for a in everyone)
    assert m.token_balance(m.address) == owed + pool
