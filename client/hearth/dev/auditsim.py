"""`hearth bench audits`: do random audits make cheating lose money? Issue 11's check, run
against the real JobMarket on a fresh anvil with scripted providers (no inference).

Five providers of one reproducibility class serve one model; one client posts `jobs` jobs, each
directed to a provider: a fixed share to the cheater, the rest round-robin to the honest ones.
The true output of job j is keccak(b"out" + j); the cheater commits to a wrong hash on a
`cheat_share` of its jobs (every job where floor(k * share) steps up, k counting its jobs), and
answers honestly whenever it is drawn as an auditor. After the window every job is settled or,
when the contract refuses with AuditRequired, audited to the end: commit, reveals, the tiebreaker
on a mismatch, the arbiter (told the truth) if it comes to that.

The run is reproducible: the audit draw hashes the completion block, and a block's hash covers
its timestamp, its parent's hash and its state and transaction roots. So the genesis time is
fixed, every block's timestamp is set (12 s apart while set-up transactions automine, then
explicitly), transactions go in batches of one block each (automining off) and in the order they
were sent (anvil's fifo order: under its default fee order, ties of equal tips came out in
varying order), and eth-account's signatures are deterministic. A change to the contracts
changes the state roots and so the draws: the figures then move, within the luck of the draw.
That luck is why the default run is long: on 600 lies at p = 10% the cheater comes out ahead
only if fewer than 34 are caught (60 expected; a 1-in-19,000 draw), where on 200 lies (12 of 20
expected) one contract change in sixty flipped the result, as the offers change did.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract.contract import ContractFunction

from hearth.chain import artifacts
from hearth.chain.market import Market, connect
from hearth.chain.sender import Prepared, Sender
from hearth.chain.types import STATES, Completion, JobTerms, completion_from_event, posted_from_event, result_commitment
from hearth.dev.deploy import MarketParams, deploy, fund
from hearth.dev.devnet import dev_account, start_anvil
from hearth.dev.procs import stop_proc
from hearth.errors import ChainError, ContractError
from hearth.formats.units import TOKEN

GENESIS_TIME = 1_800_000_000  # fixed, so the genesis hash (parent of every drawn block) is too
BLOCK_SECONDS = 12
FIXED_GAS = 1_000_000  # above any one call here; skips the simulation of each transaction
BLOCK_GAS = 2_000_000_000  # room for a whole batch in one block
MODEL = bytes.fromhex("1220") + keccak(b"auditsim-model")
REPRO_CLASS = keccak(b"auditsim-class")
PAYMENT = TOKEN
MAX_ROUNDS = 40  # blocks of the audit phase; each audit needs at most seven


def true_output(job_id: int) -> bytes:
    """The output hash every honest run of job `job_id` produces."""
    return bytes(keccak(b"out" + job_id.to_bytes(32, "big")))


def _picked(k: int, share: float) -> bool:
    """Whether the k-th item (from 0) is in a `share` of items spread evenly: exactly
    floor(n * share) of the first n are."""
    return int((k + 1) * share) > int(k * share)


def _cid(tag: bytes, job_id: int) -> bytes:
    return bytes.fromhex("1220") + keccak(tag + job_id.to_bytes(32, "big"))


@dataclass
class _Job:
    job_id: int
    terms: JobTerms
    cheated: bool
    output: bytes  # what the provider committed to
    salt: bytes
    completion: Completion | None = None
    round: int = 0
    auditors: list[str] = field(default_factory=list)
    end: str = ""  # "settled" or "refunded"


class _Chain:
    """The batch machinery: signed transactions queued per block, mined with a set timestamp,
    and the block's logs decoded."""

    def __init__(self, w3: Web3, market: Market) -> None:
        self.w3 = w3
        self.market = market
        self.queue: list[tuple[Sender, Prepared, ContractFunction]] = []
        self.by_topic = {bytes(keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})")): str(e["name"])
                         for e in market.contract.abi if e["type"] == "event"}
        self.blocks = 0
        self._slim: dict[str, Any] = {}

    def fn(self, name: str, *args: Any) -> ContractFunction:
        """A bound market function, from a contract object that knows this one function:
        web3 validates and searches the whole ABI on every call otherwise, which is most of the
        run's time."""
        if name not in self._slim:
            abi = [e for e in self.market.contract.abi if e.get("name") == name and e["type"] == "function"]
            self._slim[name] = self.w3.eth.contract(address=self.market.address, abi=abi)
        return cast(ContractFunction, self._slim[name].functions[name](*args))

    def peek(self, name: str, *args: Any) -> bytes:
        """eth_call of a market view, raw: web3's call path costs four times the node's answer."""
        self.fn(name, *args)  # builds the one-function contract
        data = self._slim[name].encode_abi(name, list(args))
        return bytes.fromhex(str(self.rpc("eth_call", {"to": self.market.address, "data": data}, "latest"))[2:])

    def rpc(self, method: str, *params: Any) -> Any:
        r = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in r:
            raise ChainError(f"{method}: {r['error']}")
        return r["result"]

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def add(self, sender: Sender, fn: ContractFunction) -> None:
        self.queue.append((sender, sender.prepare(fn), fn))
        sender.broadcast(self.queue[-1][1])

    def mine(self, at: int | None = None) -> list[tuple[str, Any]]:
        """Mine the queued transactions (in blocks `BLOCK_SECONDS` apart, the first at `at` if
        given); every one must succeed. Returns the decoded logs of the market, in order."""
        ts = at if at is not None else self.now() + BLOCK_SECONDS
        first = int(self.w3.eth.block_number) + 1
        waiting = {p.tx_hash: (s, p, fn) for s, p, fn in self.queue}
        self.queue = []
        for _ in range(10):
            self.rpc("evm_mine", {"timestamp": ts})
            self.blocks += 1
            for r in self.w3.eth.get_block_receipts("latest"):
                s, p, fn = waiting.pop("0x" + bytes(r["transactionHash"]).hex(), (None, None, None))
                if s is not None and p is not None and r["status"] != 1:
                    s.wait(p.tx_hash, fn)  # raises the decoded error
            if not waiting:
                break
            ts += BLOCK_SECONDS
        else:
            raise ChainError(f"{len(waiting)} transactions not mined after ten blocks")
        raw = self.w3.eth.get_logs({"address": self.market.address, "fromBlock": first, "toBlock": "latest"})
        out = []
        for lg in raw:
            name = self.by_topic.get(bytes(lg["topics"][0]))
            if name is not None:
                out.append((name, getattr(self.market.contract.events, name)().process_log(lg)))
        return out


def _start_anvil() -> tuple[subprocess.Popen[bytes], str]:
    """anvil as the devnet runs it, with a fixed genesis time and room for big blocks."""
    return start_anvil(extra=("--timestamp", str(GENESIS_TIME), "--gas-limit", str(BLOCK_GAS), "--order", "fifo"))


def simulate(jobs: int = 1200, cheat_share: float = 2 / 3, cheater_share: float = 0.75,
             params: MarketParams | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the market through `jobs` jobs with one cheating provider of five (see the module
    docstring) and return the figures: audits, and per provider jobs, payments, audit rewards,
    slashes and net result, with the cheater's result on the jobs it cheated. `params`: the
    market's (default MarketParams(): 10% audited, collateral 15x the payment, one-hour windows,
    which the run jumps over, so nothing needs shortening)."""
    proc, url = _start_anvil()
    try:
        return _Sim(connect(url), params or MarketParams(), progress or (lambda _m: None)).run(jobs, cheat_share, cheater_share)
    finally:
        stop_proc(proc)  # SIGTERM, then SIGKILL, and reaped: no anvil outlives the run


class _Sim:
    """One run: the actors (deployer and arbiter owner, client, providers; the first provider
    cheats), the jobs as they stand and every market event of each job."""

    def __init__(self, w3: Web3, params: MarketParams, progress: Callable[[str], None]) -> None:
        self.w3, self.params, self.say = w3, params, progress
        self.deployer, self.client = dev_account(0), dev_account(1)
        self.providers: list[LocalAccount] = [dev_account(i) for i in range(2, 7)]
        self.cheater = self.providers[0].address
        self.jobs: dict[int, _Job] = {}
        self.events: dict[int, list[tuple[str, Any]]] = defaultdict(list)
        self.senders: dict[str, Sender] = {}

    def s(self, address: str) -> Sender:
        return self.senders[to_checksum_address(address)]

    # ---------------------------------------------------------------- set-up
    def setup(self, jobs: int) -> None:
        w3 = self.w3
        # Automined set-up blocks 12 s apart, not at the wall clock's time.
        w3.provider.make_request("anvil_setBlockTimestampInterval", [BLOCK_SECONDS])  # type: ignore[arg-type]
        d = deploy(w3, Sender(w3, self.deployer), "auditsim", self.params)
        self.m = d.market_binding(w3)
        self.arbiter = w3.eth.contract(address=to_checksum_address(d.arbiter), abi=artifacts.load("SimpleArbiter")["abi"])
        actors = [self.deployer, self.client, *self.providers]
        self.senders = {a.address: Sender(w3, a, fixed_gas=FIXED_GAS) for a in actors}
        collateral = self.m.collateral_for(PAYMENT)
        # Room for every job at once, claimed or audited: no claim or draw ever lacks stake.
        stake = self.params.min_stake + (jobs + 1) * collateral
        fund(Sender(w3, self.deployer), self.m, actors[1:], stake + jobs * PAYMENT)
        for a in actors[1:]:
            s = Sender(w3, a)
            s.transact(self.m.token.functions.approve(self.m.address, 2**256 - 1))
            s.transact(self.m.fn("deposit", stake + jobs * PAYMENT))
            if a is not self.client:
                s.transact(self.m.fn("register", stake, PAYMENT, REPRO_CLASS, [MODEL]))
        self.before = {a.address: self._holding(a.address) for a in actors}
        w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
        w3.provider.make_request("anvil_removeBlockTimestampInterval", [])  # type: ignore[arg-type]
        self.chain = _Chain(w3, self.m)

    def _holding(self, address: str) -> int:
        a = self.m.account(address)
        return a.balance + a.stake

    def _record(self, logs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        for name, ev in logs:
            if "jobId" in ev["args"]:
                self.events[int(ev["args"]["jobId"])].append((name, ev))
        return logs

    # ---------------------------------------------------------------- the run
    def run(self, jobs: int, cheat_share: float, cheater_share: float) -> dict[str, Any]:
        self.say(f"deploying and registering 5 providers on anvil ({jobs} jobs to come)")
        self.setup(jobs)
        ch, m = self.chain, self.m
        honest = [p.address for p in self.providers[1:]]
        deadline = ch.now() + 86_400
        targets, n_honest, n_cheater = [], 0, 0
        for i in range(jobs):
            if _picked(i, cheater_share):
                targets.append((self.cheater, _picked(n_cheater, cheat_share)))
                n_cheater += 1
            else:
                targets.append((honest[n_honest % len(honest)], False))
                n_honest += 1
        self.say("posting")
        for provider, _ in targets:
            ch.add(self.s(self.client.address), ch.fn("postJob", m.post_params(
                MODEL, _cid(b"spec", len(self.jobs)), PAYMENT, deadline, 3_600, provider)))
        posted = [posted_from_event(ev) for name, ev in self._record(ch.mine()) if name == "JobPosted"]
        for pj, (provider, cheats) in zip(posted, targets, strict=True):
            j = pj.job_id
            salt = bytes(keccak(b"salt" + j.to_bytes(32, "big") + bytes.fromhex(provider[2:])))
            out = bytes(keccak(b"wrong" + j.to_bytes(32, "big"))) if cheats else true_output(j)
            self.jobs[j] = _Job(j, pj.terms.with_provider(provider), cheats, out, salt)
        self.say("claiming")
        for job in self.jobs.values():
            ch.add(self.s(job.terms.provider), ch.fn("claim", job.job_id, job.terms.as_tuple()))
        self._record(ch.mine())
        self.say("completing")
        for job in self.jobs.values():
            c = result_commitment(job.job_id, job.terms.provider, job.output, job.salt)
            ch.add(self.s(job.terms.provider), ch.fn("complete", job.job_id, job.terms.as_tuple(),
                                                   _cid(b"result", job.job_id), c))
        for name, ev in self._record(ch.mine()):
            if name == "JobCompleted":
                self.jobs[int(ev["args"]["jobId"])].completion = completion_from_event(ev)
        # Past every job's window (ch.now() is the completion block's time).
        ch.mine(ch.now() + self.params.dispute_window + 1)
        self.say("settling, or auditing the jobs drawn")
        refused = 0
        for job in self.jobs.values():
            assert job.completion is not None
            args = (job.job_id, job.terms.as_tuple(), job.completion.as_tuple())
            if not int.from_bytes(ch.peek("auditSelected", *args), "big"):
                ch.add(self.s(self.client.address), ch.fn("settle", *args))
                continue
            try:  # the contract must refuse to settle a job drawn for audit
                m.call(ch.fn("settle", *args))
            except ContractError as e:
                if e.name != "AuditRequired":
                    raise
                refused += 1
            ch.add(self.s(self.client.address), ch.fn("startAudit", *args))
        logs = self._record(ch.mine())
        for rounds in range(MAX_ROUNDS):  # noqa: B007  (reported below)
            self._react(logs)
            if not ch.queue:
                break
            logs = self._record(ch.mine())
        else:
            raise ChainError(f"audits still running after {MAX_ROUNDS} blocks")
        self.say(f"done: {ch.blocks} blocks, {rounds} of them for audits")
        return self.report(cheat_share, cheater_share, refused)

    def _react(self, logs: list[tuple[str, Any]]) -> None:
        """Queue what each actor does in answer to the last block's events."""
        m, ch = self.m, self.chain
        for name, ev in logs:
            a = ev["args"]
            if "jobId" not in a:
                continue
            job = self.jobs[int(a["jobId"])]
            assert job.completion is not None
            args = (job.job_id, job.terms.as_tuple(), job.completion.as_tuple())
            if name == "AuditorAssigned":
                auditor = str(a["auditor"])
                job.round = int(a["round"])
                job.auditors.append(auditor)
                c = result_commitment(job.job_id, auditor, true_output(job.job_id), self._audit_salt(job, auditor))
                ch.add(self.s(auditor), ch.fn("commitAudit", job.job_id, c))
            elif name == "AuditCommitted":
                auditor = str(a["auditor"])
                if job.round == 0:  # the provider opens its commitment once, in round 0
                    ch.add(self.s(job.terms.provider), ch.fn("reveal", *args, job.terms.provider, job.output, job.salt))
                ch.add(self.s(auditor), ch.fn("reveal", *args, auditor, true_output(job.job_id),
                                             self._audit_salt(job, auditor)))
            elif name == "AuditMismatch":
                ch.add(self.s(self.client.address), ch.fn("finalize", *args))
            elif name == "JobDisputed":
                # The arbiter re-runs the job: it knows the true output.
                ch.add(self.s(self.deployer.address), self.arbiter.functions.decide(
                    m.address, *args, job.output == true_output(job.job_id)))
            elif name == "JobSettled":
                job.end = "settled"
            elif name == "JobRefunded":
                job.end = "refunded"

    @staticmethod
    def _audit_salt(job: _Job, auditor: str) -> bytes:
        return bytes(keccak(b"audit" + job.job_id.to_bytes(32, "big") + bytes.fromhex(auditor[2:])))

    # ---------------------------------------------------------------- figures
    def report(self, cheat_share: float, cheater_share: float, refused: int) -> dict[str, Any]:
        m, p = self.m, self.params
        audit_fee = PAYMENT * p.audit_fee_bps // 10_000
        collateral = m.collateral_for(PAYMENT)
        per: dict[str, dict[str, int]] = {a.address: defaultdict(int) for a in self.providers}
        seen: dict[str, set[int]] = {tag: set() for tag in ("AuditStarted", "AuditSkipped", "AuditMismatch",
                                                            "JobDisputed")}
        cheat = {"cheated": 0, "caught": 0, "paid_on_cheated": 0, "slashed_on_cheated": 0}
        cheat["cheated"] = sum(job.cheated for job in self.jobs.values())
        for j, evs in self.events.items():
            job = self.jobs[j]
            for name, ev in evs:
                a = ev["args"]
                if name == "JobClaimed":
                    per[str(a["provider"])]["jobs"] += 1
                elif name == "JobSettled":
                    per[str(a["provider"])]["payments"] += int(a["providerAmount"])
                    per[str(a["provider"])]["honest_equivalent"] += int(a["providerAmount"])
                    if job.cheated:
                        cheat["paid_on_cheated"] += int(a["providerAmount"])
                elif name == "AuditorPaid":
                    per[str(a["auditor"])]["audit_rewards"] += int(a["reward"])
                    per[str(a["auditor"])]["audits_paid"] += 1
                elif name == "Slashed":
                    per[str(a["account"])]["slashed"] += int(a["amount"])
                    if job.cheated and str(a["account"]) == job.terms.provider:
                        cheat["slashed_on_cheated"] += int(a["amount"])
                elif name == "JobRefunded":
                    # What it would have been paid had it done the job (fee 0 here, audit fee kept).
                    fee = PAYMENT * job.terms.fee_bps // 10_000
                    per[job.terms.provider]["honest_equivalent"] += PAYMENT - fee - audit_fee
                    if job.cheated:
                        cheat["caught"] += 1
                if name in seen:
                    seen[name].add(j)
        audited = seen["AuditStarted"]
        providers = []
        for i, acct in enumerate(self.providers):
            f = per[acct.address]
            acc = m.account(acct.address)
            net = acc.balance + acc.stake - self.before[acct.address]
            f["honest_equivalent"] += f["audit_rewards"]
            providers.append({"address": acct.address, "role": "cheater" if i == 0 else "honest",
                              "jobs": f["jobs"], "payments": f["payments"], "audit_rewards": f["audit_rewards"],
                              "audits_paid": f["audits_paid"], "slashed": f["slashed"], "net": net,
                              "net_matches_events": net == f["payments"] + f["audit_rewards"] - f["slashed"],
                              "open_jobs": acc.open_jobs, "honest_equivalent": f["honest_equivalent"]})
        q = p.audit_bps / 10_000  # no collusion: every audit of a cheated job catches it
        ev_per_cheat = (1 - q) * (PAYMENT - audit_fee) - q * collateral
        net_cheated = cheat["paid_on_cheated"] - cheat["slashed_on_cheated"]
        holders = [self.deployer.address, self.client.address, *(a.address for a in self.providers)]
        pool = int(m.call(m.contract.functions.auditPool()))
        # A settled job's slot is deleted; getJob still answers Settled for it.
        states = {j: STATES[self.chain.peek("getJob", j)[31]] for j in self.jobs}
        return {
            "jobs": len(self.jobs), "cheater_share": cheater_share, "cheat_share": cheat_share,
            "payment": PAYMENT, "collateral": collateral, "audit_bps": p.audit_bps, "audit_fee_bps": p.audit_fee_bps,
            "audited": len(audited), "audit_rate": len(audited) / len(self.jobs), "settle_refused": refused,
            "audits_skipped": len(seen["AuditSkipped"]), "mismatches": len(seen["AuditMismatch"]),
            "disputed": len(seen["JobDisputed"]),
            "settled": sum(job.end == "settled" for job in self.jobs.values()),
            "refunded_jobs": sorted(j for j, job in self.jobs.items() if job.end == "refunded"),
            "unfinished_jobs": sorted(j for j, job in self.jobs.items() if not job.end),
            "cheated_audited_jobs": sorted(j for j in audited if self.jobs[j].cheated),
            "final_states": sorted(set(states.values())),
            "providers": providers,
            "cheater": {**cheat, "net_on_cheated": net_cheated,
                        "net_per_cheated_job": net_cheated / max(1, cheat["cheated"]),
                        "expected_per_cheated_job": ev_per_cheat,
                        "total": providers[0]["net"], "honest_equivalent": providers[0]["honest_equivalent"]},
            "market_tokens": m.token_balance(m.address),
            "accounted_tokens": sum(self._holding(a) for a in holders) + pool, "audit_pool": pool,
            "blocks": self.chain.blocks, "head": "0x" + bytes(self.w3.eth.get_block("latest")["hash"]).hex(),
        }
