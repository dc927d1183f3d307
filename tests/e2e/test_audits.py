"""Issue 11's acceptance: three real nodes on a devnet that audits every job (`--audit-rate 1`),
two honest and one started with HEARTH_TEST_WRONG_OUTPUT=1. Jobs directed at the cheater leave
it poorer than before and cost the client nothing; jobs directed at the honest nodes are paid;
neither honest node loses anything. Balances are read with `hearth account balance --json`, as a
user would, and checked in wei against the chain."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hearth.dev.deploy import DEVNET_PARAMS
from hearth.dev.devnet import dev_account
from hearth.dev.localnet import Localnet
from hearth.formats.units import TOKEN

pytestmark = pytest.mark.slow

HONEST = (1, 3)
CHEATER = 4
CLIENT = 2
JOBS_EACH = 2
PAYMENT = TOKEN // 100  # the CLI's default 0.01 HRT
PRICE = {"HEARTH_MIN_PRICE": str(PAYMENT)}  # the nodes' offers ask it: jobs under them pay it


def _total(net: Localnet, idx: int) -> int:
    """Wallet + deposit + free stake, in wei (collateral of open work excluded: none is open)."""
    addr = dev_account(idx).address
    a = net.market.account(addr)
    return net.market.token_balance(addr) + a.balance + a.stake


def _cli_total(net: Localnet, idx: int) -> float:
    b = net.hearth_json("account", "balance", dev_account(idx).address, account=CLIENT)
    assert b["open_jobs"] == 0, b
    return float(b["wallet"] + b["deposited"] + b["stake"])


def slashings(net: Localnet, jobs: dict[int, int], idx: int) -> list[Any]:
    """The Slashed logs of these jobs that took from dev account `idx` (as provider or auditor)."""
    return [ev for j in jobs for n, ev in net.market.history(j)
            if n == "Slashed" and ev["args"]["account"] == dev_account(idx).address]


def test_audits_make_the_cheater_lose_and_pay_the_honest(tmp_path: Path) -> None:
    with Localnet(tmp_path / "home", params=replace(DEVNET_PARAMS, audit_bps=10_000)) as net:
        for i in HONEST:
            net.start_node(i, extra_env=PRICE)
        cheater = net.start_node(CHEATER, extra_env={**PRICE, "HEARTH_TEST_WRONG_OUTPUT": "1"})
        everyone = (*HONEST, CHEATER, CLIENT)
        before = {i: _total(net, i) for i in everyone}
        cli_before = {i: _cli_total(net, i) for i in everyone}
        pool_before = int(net.market.call(net.market.contract.functions.auditPool()))

        jobs: dict[int, int] = {}  # job id -> provider dev account
        for n in range(JOBS_EACH):
            for p in (*HONEST, CHEATER):
                out = net.hearth_json("job", "submit", "--prompt", f"Count to {n + 3}.", "--max-tokens", "8",
                                      "--provider", dev_account(p).address, "--no-wait", account=CLIENT)
                jobs[int(out["job_id"])] = p

        deadline = time.monotonic() + 300
        while any(net.market.job(j).state not in ("Settled", "Refunded") for j in jobs):
            states = {j: net.market.job(j).state for j in jobs}
            assert time.monotonic() < deadline, f"{states}\n{cheater.log.read_text()[-4000:]}"
            time.sleep(1)
        # every open audit duty ended (an auditor's collateral is back in its stake)
        for i in (*HONEST, CHEATER):
            wait = time.monotonic() + 60
            while net.market.account(dev_account(i).address).open_jobs:
                assert time.monotonic() < wait
                time.sleep(0.5)

        audited = {j for j in jobs if any(n == "AuditStarted" for n, _ in net.market.history(j))}
        assert audited == set(jobs), "at audit rate 1 every job is audited"
        for j, p in jobs.items():
            want = "Refunded" if p == CHEATER else "Settled"
            assert net.market.job(j).state == want, (j, p)

        after = {i: _total(net, i) for i in everyone}
        cli_after = {i: _cli_total(net, i) for i in everyone}
        honest_jobs = sum(1 for p in jobs.values() if p != CHEATER)
        # the client paid the honest jobs and nothing for the cheater's (gas is ETH, not HRT)
        assert before[CLIENT] - after[CLIENT] == honest_jobs * PAYMENT
        assert cli_before[CLIENT] - cli_after[CLIENT] == pytest.approx(honest_jobs * PAYMENT / TOKEN)
        # the cheater lost more than it could have been paid
        slashed = sum(int(ev["args"]["amount"]) for ev in slashings(net, jobs, CHEATER))
        assert slashed >= JOBS_EACH * net.market.collateral_for(PAYMENT)
        assert after[CHEATER] < before[CHEATER]
        assert cli_after[CHEATER] < cli_before[CHEATER]
        # the honest nodes lost nothing: paid for their jobs (less the audit fee), rewarded for audits
        for i in HONEST:
            assert after[i] > before[i], i
            assert cli_after[i] > cli_before[i], i
            assert not slashings(net, jobs, i)
        # conservation: what left the client and the cheater is with the honest nodes, the fee
        # recipient (the devnet fee is 0) and the audit pool
        pool_after = int(net.market.call(net.market.contract.functions.auditPool()))
        for i in everyone:  # shown with pytest -s: the figures of the note
            print(f"account {i}: {cli_before[i]:.6f} -> {cli_after[i]:.6f} HRT ({(after[i] - before[i]) / TOKEN:+.6f})")
        assert sum(before.values()) == sum(after.values()) + (pool_after - pool_before)
        # the client's offer ranking counts the slashings from the chain: the cheater comes last
        listed = net.hearth_json("provider", "offers", account=CLIENT)
        assert [r["provider"] for r in listed][-1] == dev_account(CHEATER).address, listed
        assert {r["provider"]: r["slashed"] for r in listed} == {
            dev_account(CHEATER).address: len(slashings(net, jobs, CHEATER)),
            **{dev_account(i).address: 0 for i in HONEST}}


def test_a_requested_audit_is_run_by_a_node_drawn_after_the_request(tmp_path: Path) -> None:
    """`hearth job dispute` on an honest node's job: the auditor is drawn a block after the
    request (from its hash), the other node re-runs the job, commits and reveals, the result
    stands; the bond pays the auditor one payment and the rest goes to the provider."""
    params = replace(DEVNET_PARAMS, audit_bps=0, dispute_window=120)  # no random audits: only the requested one
    with Localnet(tmp_path / "home", params=params) as net:
        provider, auditor = HONEST
        for i in HONEST:
            net.start_node(i, extra_env=PRICE)
        out = net.hearth_json("job", "submit", "--public", "--prompt", "Count to 3.", "--max-tokens", "8",
                              "--provider", dev_account(provider).address, account=CLIENT)
        job = int(out["job_id"])
        net.hearth_json("account", "deposit", str(params.dispute_bond / TOKEN), account=CLIENT)
        before = {i: _total(net, i) for i in (provider, auditor, CLIENT)}
        disputed = net.hearth_json("job", "dispute", str(job), account=CLIENT)
        assert disputed["auditor"] == dev_account(auditor).address
        deadline = time.monotonic() + 180
        while net.market.job(job).state != "Settled":
            assert time.monotonic() < deadline, net.market.job(job)
            time.sleep(1)
        names = [n for n, _ in net.market.history(job)]
        assert names.count("AuditorAssigned") == 1 and "AuditMismatch" not in names and "Slashed" not in names
        wait = time.monotonic() + 60
        while net.market.account(dev_account(auditor).address).open_jobs:  # its collateral back in stake
            assert time.monotonic() < wait
            time.sleep(0.5)
        after = {i: _total(net, i) for i in (provider, auditor, CLIENT)}
        audit_fee = PAYMENT * params.audit_fee_bps // 10_000
        assert before[CLIENT] - after[CLIENT] == params.dispute_bond  # the job was paid at submit
        assert after[auditor] - before[auditor] == PAYMENT  # a payment out of the bond
        # paid less the audit fee, plus what is left of the bond; its collateral (locked at the first
        # reading) back in its stake
        locked = net.market.collateral_for(PAYMENT)
        assert after[provider] - before[provider] == PAYMENT - audit_fee + params.dispute_bond - PAYMENT + locked
