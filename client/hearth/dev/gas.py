"""`hearth bench gas`: the gas of every external function and of the job lifecycle, measured on
a fresh anvil in a fixed scenario (contracts/gas.json is the committed table).

Two markets, each with its own provider and a second provider of the same reproducibility class
to audit it:

- the default deployment (MarketParams(): one-hour window, 10% random audits, 10% audit fee) with
  a 1% protocol fee, whose path is post + claim + complete + settle (of a job the draw did not
  select; the draw costs the same whichever way it goes), and the same job under the provider's
  signed offer: postJobWithOffer (posted and assigned in one transaction) + complete + settle,
  and the same with ten such jobs paid by one settleMany (its gas shared out among them);
- the same market with every job audited (auditBps 10,000), whose path is post + claim +
  complete + startAudit + commitAudit + reveal (provider) + reveal (auditor), the audit upheld.

Gas is deterministic up to the calldata of the job's random salt (a zero byte costs 4 gas, any
other 16), well inside the 1% the committed table allows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from hearth.chain import artifacts
from hearth.chain.market import Market, connect
from hearth.chain.sender import Sender
from hearth.chain.types import Completion, JobTerms, completion_from_event, result_commitment
from hearth.dev.deploy import MarketParams, deploy_contract
from hearth.dev.devnet import dev_accounts, start_anvil
from hearth.dev.procs import stop_proc
from hearth.formats import offers
from hearth.formats.units import SUPPLY, TOKEN
from hearth.jobs import permit_signature

MODEL = bytes.fromhex("1220") + keccak(b"bench-model")
SPEC = bytes.fromhex("1220") + keccak(b"bench-spec")
RESULT = bytes.fromhex("1220") + keccak(b"bench-result")
REPRO_CLASS = keccak(b"bench-class")
OUT = b"\x11" * 32
SALT = b"\x22" * 32
FEE_BPS = 100

DEFAULT_STEPS = ("postJob", "claim", "complete", "settle (1% fee)")
AUDITED_STEPS = ("postJob", "claim", "complete", "startAudit", "commitAudit", "reveal (provider)",
                 "reveal (auditor, upheld: pays all)")
OFFER_STEPS = ("postJobWithOffer", "complete", "settle (1% fee)")
DEFAULT_TOTAL = "default: total post+claim+complete+settle"
OFFER_TOTAL = "offer: total lifecycle postJobWithOffer+complete+settle"
# A node settles every job whose window has ended in one settleMany; ten at a time is measured.
SETTLE_BATCH = 10
SETTLE_MANY = f"batched: settleMany ({SETTLE_BATCH} jobs, 1% fee)"
SETTLE_MANY_PER_JOB = f"batched: settleMany per job (1/{SETTLE_BATCH})"
BATCHED_STEPS = ("offer: postJobWithOffer", "offer: complete", SETTLE_MANY_PER_JOB)
BATCHED_TOTAL = f"batched: total lifecycle postJobWithOffer+complete+settleMany/{SETTLE_BATCH}"
# The offer lifecycle's transactions, whose gas `hearth bench gas --breakdown` takes apart.
BREAKDOWN_KEYS = ("offer: postJobWithOffer", "offer: complete", "offer: settle (1% fee)", SETTLE_MANY)
AUDITED_TOTAL = "audited: total post+claim+complete+startAudit+commitAudit+reveal+reveal"


# ============================================================================ gas


def _deploy(w3: Any, s: Sender, name: str, *args: Any) -> str:
    return str(deploy_contract(w3, s, name, *args)["contractAddress"])


def gas_table() -> dict[str, int]:
    """Gas of every external function in a fixed, warm scenario on a fresh anvil, plus the three
    lifecycles broken down: the default market's (settled after the window, 1% fee), the same
    under a signed offer, and the audited one's (a random audit that upholds the result)."""
    return measure()[0]


def measure(trace: bool = False) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The gas table and, with `trace`, where the gas of the offer lifecycle's transactions
    goes (BREAKDOWN_KEYS, see tx_breakdown), from the same run on an anvil that records steps."""
    proc, url = start_anvil(extra=("--steps-tracing",) if trace else ())
    try:
        table, receipts = _gas_scenario(url)
        if not trace:
            return table, {}
        w3 = connect(url)
        return table, {k: tx_breakdown(w3, receipts[k]) for k in BREAKDOWN_KEYS}
    finally:
        stop_proc(proc)


def tx_breakdown(w3: Any, receipt: Any) -> dict[str, int]:
    """Where one transaction's gas goes, from its geth-style step trace: the base fee, calldata
    (4 gas a zero byte, 16 any other), SSTOREs (`fresh_slots`: zero to non-zero, 20,000 or more
    each), SLOADs (`cold_reads`: 2,100 each), LOG0-4 (topics and data), the rest of execution
    (arithmetic, hashing, memory, calls, ecrecover) and the refund of cleared slots (at most a
    fifth of the gas, EIP-3529). The trace's own count must come to the receipt's gasUsed
    (`accounted`), which tests check: a category left out would show there."""
    tx_hash = receipt["transactionHash"]
    data = bytes(w3.eth.get_transaction(tx_hash)["input"])
    zeros = data.count(0)
    calldata = 4 * zeros + 16 * (len(data) - zeros)
    opts = {"disableStack": True, "disableStorage": True, "disableMemory": True}
    steps = w3.provider.make_request("debug_traceTransaction", [tx_hash.to_0x_hex(), opts])["result"]["structLogs"]

    def costs(*ops: str) -> list[int]:
        return [int(s["gasCost"]) for s in steps if s["op"] in ops]

    last = steps[-1]  # the outer frame's RETURN or STOP
    execution = int(steps[0]["gas"]) - (int(last["gas"]) - int(last["gasCost"]))
    spent = 21_000 + calldata + execution
    refund = min(int(last["refund"]), spent // 5)
    writes, reads, logs = costs("SSTORE"), costs("SLOAD"), costs("LOG0", "LOG1", "LOG2", "LOG3", "LOG4")
    return {
        "gas_used": int(receipt["gasUsed"]),
        "accounted": spent - refund,
        "base": 21_000,
        "calldata_bytes": len(data),
        "calldata": calldata,
        "storage_writes": sum(writes),
        "fresh_slots": sum(c >= 20_000 for c in writes),
        "storage_reads": sum(reads),
        "cold_reads": sum(c >= 2_100 for c in reads),
        "logs": sum(logs),
        "rest": execution - sum(writes) - sum(reads) - sum(logs),
        "refund": refund,
    }


def _gas_scenario(url: str) -> tuple[dict[str, int], dict[str, Any]]:
    """The gas table, and the receipt of each transaction measured in it, by key."""
    w3 = connect(url)
    # Every block one second after the last, whatever the wall clock does: a transaction that
    # writes a deadline derived from block.timestamp costs 2,800 gas less when the value does
    # not change, which it did not when two blocks shared a second (on a busy machine, 1 time in
    # several, `commitAudit` came out 66,902 instead of 64,102).
    w3.provider.make_request("anvil_setBlockTimestampInterval", [1])  # type: ignore[arg-type]
    owner, client, prov, other, treasury, aud = dev_accounts(6)
    so, sc, sp, sx, sa = (Sender(w3, a) for a in (owner, client, prov, other, aud))
    out: dict[str, int] = {}
    receipts: dict[str, Any] = {}

    def g(key: str | None, s: Sender, fn: Any) -> Any:
        """Send; record its gas under `key` (None: a warm-up, not recorded)."""
        r = s.transact(fn)
        if key:
            out[key] = int(r["gasUsed"])
            receipts[key] = r
        return r

    token = _deploy(w3, so, "HearthToken", owner.address, SUPPLY)
    arb = _deploy(w3, so, "SimpleArbiter", owner.address)
    arb_c = w3.eth.contract(address=w3.to_checksum_address(arb), abi=artifacts.load("SimpleArbiter")["abi"])
    default = MarketParams()
    m = Market(w3, _deploy(w3, so, "JobMarket", token, arb, default.as_config()), token)
    ma = Market(w3, _deploy(w3, so, "JobMarket", token, arb, replace(default, audit_bps=10_000).as_config()), token)
    for s, a in ((sc, client), (sp, prov), (sx, other), (sa, aud)):
        so.transact(m.token.functions.transfer(a.address, 10_000 * TOKEN))
        for mk in (m, ma):
            s.transact(m.token.functions.approve(mk.address, 2**256 - 1))

    def now() -> int:
        return int(w3.eth.get_block("latest")["timestamp"])

    def advance(sec: int) -> None:
        """Mine a block `sec` seconds after the latest. One second of it after `complete` (or a
        mismatched reveal) lets the draw read that block's hash: anvil simulates a call (the
        Sender's gas estimate) in the latest block, where the hash is not known yet
        (RandomnessNotReady). (evm_increaseTime does nothing under a timestamp interval.)"""
        w3.provider.make_request("evm_setNextBlockTimestamp", [now() + sec])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def post(mk: Market, s: Sender, key: str | None = None, window: int = 600) -> tuple[int, JobTerms]:
        p = mk.post_params(MODEL, SPEC, TOKEN, now() + 3600, window)
        r = g(key, s, mk.fn("postJob", p))
        job = mk.job_posted_id(r)
        return job, mk.posted(job).terms

    def claimed(mk: Market) -> tuple[int, JobTerms]:
        job, t = post(mk, sc)
        sp.transact(mk.fn("claim", job, t.as_tuple()))
        return job, t.with_provider(prov.address)

    def complete(mk: Market, job: int, t: JobTerms, key: str | None = None, output: bytes = OUT) -> Completion:
        fn = mk.fn("complete", job, t.as_tuple(), RESULT, result_commitment(job, prov.address, output, SALT))
        r = g(key, sp, fn)
        ev = mk.contract.events.JobCompleted().process_receipt(r)[0]
        return completion_from_event(ev)

    def completed(mk: Market, output: bytes = OUT) -> tuple[int, JobTerms, Completion]:
        job, t = claimed(mk)
        return job, t, complete(mk, job, t, output=output)

    def unselected(mk: Market, start: Callable[[], tuple[int, JobTerms]] | None = None,
                   ) -> tuple[int, JobTerms, Completion]:
        """A completed job of the default market that the draw did not select (9 in 10 are not),
        started by `start` (default: posted and claimed)."""
        while True:
            job, t = start() if start else claimed(mk)
            c = complete(mk, job, t)
            advance(1)  # the draw reads the completion block's hash
            if not mk.audit_selected(job, t, c):
                return job, t, c
            advance(3601)  # a selected one is audited by nobody: skipped, and paid
            sx.transact(mk.fn("startAudit", job, t.as_tuple(), c.as_tuple()))

    def audit_by(mk: Market, auditor: LocalAccount, job: int, output: bytes = OUT) -> Any:
        return mk.fn("commitAudit", job, result_commitment(job, auditor.address, output, SALT))

    # balances and provider record (first use of each slot)
    g("deposit", sc, m.fn("deposit", 100 * TOKEN))
    deadline = now() + 600  # once: every transaction moves the clock a second
    v, r_, s_ = permit_signature(other, m, 100 * TOKEN, deadline)
    g("depositWithPermit", sx, m.fn("depositWithPermit", 100 * TOKEN, deadline, v, r_, s_))
    g("withdraw", sc, m.fn("withdraw", TOKEN))
    sp.transact(m.fn("deposit", 500 * TOKEN))
    g("register", sp, m.fn("register", 100 * TOKEN, TOKEN // 1000, REPRO_CLASS, [MODEL]))
    g("addStake", sp, m.fn("addStake", TOKEN))
    g("setPrice", sp, m.fn("setPrice", TOKEN // 100))
    g("addModels", sp, m.fn("addModels", [RESULT]))
    g("removeModels", sp, m.fn("removeModels", [RESULT]))
    g("setReproClass", sp, m.fn("setReproClass", keccak(b"another-class")))
    sp.transact(m.fn("setReproClass", REPRO_CLASS))

    # ---- the default market: 1 h window, 1% fee; paid by settle after the window
    g("setFee", so, m.fn("setFee", FEE_BPS, treasury.address))
    job, t, c = unselected(m)  # warm-up: provider, fee recipient and audit pool already hold balances
    advance(3601)
    sx.transact(m.fn("settle", job, t.as_tuple(), c.as_tuple()))

    def settled_lifecycle(path: str, start: Callable[[], tuple[int, JobTerms]]) -> None:
        """Start, complete and settle jobs until one is not drawn for audit: the measured path."""
        while True:
            job, t = start()
            c = complete(m, job, t, f"{path}: complete")
            advance(3601)
            if not m.audit_selected(job, t, c):
                break
            sx.transact(m.fn("startAudit", job, t.as_tuple(), c.as_tuple()))  # no auditor yet: skipped
        g(f"{path}: settle (1% fee)", sx, m.fn("settle", job, t.as_tuple(), c.as_tuple()))

    def posted_and_claimed() -> tuple[int, JobTerms]:
        job, t = post(m, sc, "default: postJob")
        g("default: claim", sp, m.fn("claim", job, t.as_tuple()))
        return job, t.with_provider(prov.address)

    settled_lifecycle("default", posted_and_claimed)
    out[DEFAULT_TOTAL] = sum(out[f"default: {k}"] for k in DEFAULT_STEPS)

    # ---- the same job under the provider's signed offer: posted and assigned in one transaction
    # priced at the default path's payment: a job under an offer pays exactly the price
    nonce = int(m.contract.functions.offerNonce(prov.address).call())  # raised by register, class and model changes
    offer = offers.sign(prov, offers.Offer(prov.address, keccak(MODEL), REPRO_CLASS, TOKEN, 600, 4,
                                           now() + 30 * 86_400, nonce), int(w3.eth.chain_id), m.address)

    def offered(key: str | None = None, under: offers.Offer = offer) -> tuple[int, JobTerms]:
        p = m.post_params(MODEL, SPEC, TOKEN, now() + 3600, 600, prov.address)
        r = g(key, sc, m.fn("postJobWithOffer", p, under.as_tuple(), under.signature))
        job = m.job_posted_id(r)
        return job, m.posted(job).terms

    settled_lifecycle("offer", lambda: offered("offer: postJobWithOffer"))
    out[OFFER_TOTAL] = sum(out[f"offer: {k}"] for k in OFFER_STEPS)
    # ---- the same jobs paid SETTLE_BATCH at a time by one settleMany: the lifecycle amortized
    sp.transact(m.fn("addStake", 200 * TOKEN))  # collateral (15x) of SETTLE_BATCH jobs open at once
    wide = offers.sign(prov, replace(offer, max_open_jobs=2 * SETTLE_BATCH, signature=b""),
                       int(w3.eth.chain_id), m.address)
    batch = [unselected(m, lambda: offered(under=wide)) for _ in range(SETTLE_BATCH)]
    advance(3601)
    r = g(SETTLE_MANY, sx, m.fn("settleMany", [j for j, _, _ in batch], [t.as_tuple() for _, t, _ in batch],
                                [c.as_tuple() for _, _, c in batch]))
    out[SETTLE_MANY_PER_JOB] = -(-int(r["gasUsed"]) // SETTLE_BATCH)  # rounded up
    out[BATCHED_TOTAL] = sum(out[k] for k in BATCHED_STEPS)

    job, t = offered()
    g("decline", sp, m.fn("decline", job, t.as_tuple()))
    g("publishOffers", sp, m.fn("publishOffers", RESULT))

    # requested audits with nobody to draw go to the arbiter (the draw, a block after the dispute)
    for outcome in (True, False):
        job, t, c = completed(m)
        g("dispute", sc, m.fn("dispute", job, t.as_tuple(), c.as_tuple()))
        advance(1)  # see advance()
        g("finalize (dispute's draw finds no auditor: to the arbiter)", sx, m.fn("finalize", job, t.as_tuple(), c.as_tuple()))
        key = "resolve via SimpleArbiter (provider wins)" if outcome else "resolve via SimpleArbiter (client wins)"
        g(key, so, arb_c.functions.decide(m.address, job, t.as_tuple(), c.as_tuple(), outcome))
    job, t, c = completed(m)
    sc.transact(m.fn("dispute", job, t.as_tuple(), c.as_tuple()))
    advance(1)
    sx.transact(m.fn("finalize", job, t.as_tuple(), c.as_tuple()))
    advance(86_401)
    g("finalize (arbiter lapsed, result stands)", sx, m.fn("finalize", job, t.as_tuple(), c.as_tuple()))

    # ---- the audited market: every job drawn, a second provider of the class audits
    for s in (sp, sa):
        s.transact(ma.fn("deposit", 500 * TOKEN))
        s.transact(ma.fn("register", 100 * TOKEN, 0, REPRO_CLASS, [MODEL]))
    sc.transact(ma.fn("deposit", 100 * TOKEN))

    def first_look(block_hash: bytes, job: int) -> str:
        """The class member the auditor draw looks at first (JobAudits._draw): the provider
        itself (skipped, a few thousand gas more) or the auditor. The view lists members still
        in the class and the draw counts left entries too: the same here, where nobody leaves."""
        members = ma.contract.functions.classMembers(REPRO_CLASS).call()
        seed = keccak(abi_encode(["bytes32", "uint256", "string"], [block_hash, job, "draw"]))
        first = keccak(abi_encode(["bytes32", "uint256"], [seed, 0]))  # the draw's first place
        return str(members[int.from_bytes(first, "big") % len(members)])

    def audited(key: str | None) -> None:
        """One audited lifecycle, measured under `key` (None: a warm-up): the first whose draw
        finds the auditor at its first look, so that the figure does not depend on a hash."""
        while True:
            def k(name: str) -> str | None:
                return f"{key}: {name}" if key else None

            job, t = post(ma, sc, k("postJob"))
            g(k("claim"), sp, ma.fn("claim", job, t.as_tuple()))
            t = t.with_provider(prov.address)
            c = complete(ma, job, t, k("complete"))
            advance(3601)  # a random audit starts after the window
            found = first_look(bytes(w3.eth.get_block(c.block)["hash"]), job) == aud.address
            done = (job, t.as_tuple(), c.as_tuple())
            steps = (
                ("startAudit", sx, ma.fn("startAudit", *done)),
                ("commitAudit", sa, audit_by(ma, aud, job)),
                ("reveal (provider)", sp, ma.fn("reveal", *done, prov.address, OUT, SALT)),
                ("reveal (auditor, upheld: pays all)", sa, ma.fn("reveal", *done, aud.address, OUT, SALT)),
            )
            for name, s, f in steps:
                g(k(name) if found else None, s, f)
            if found:
                return

    audited(None)  # warm-up: the audit pool and the auditor's balance are no longer empty
    audited("audited")
    out[AUDITED_TOTAL] = sum(out[f"audited: {k}"] for k in AUDITED_STEPS)

    # an audit that finds a mismatch: the draw of the tiebreaker (nobody else: the arbiter)
    job, t, c = completed(ma)
    done = (job, t.as_tuple(), c.as_tuple())
    advance(3601)
    sx.transact(ma.fn("startAudit", *done))
    sa.transact(audit_by(ma, aud, job, b"\x66" * 32))
    sp.transact(ma.fn("reveal", *done, prov.address, OUT, SALT))
    g("reveal (auditor, mismatch)", sa, ma.fn("reveal", *done, aud.address, b"\x66" * 32, SALT))
    advance(1)
    g("finalize (draw finds no tiebreaker: to the arbiter)", sx, ma.fn("finalize", *done))
    so.transact(arb_c.functions.decide(ma.address, *done, True))
    # a silent auditor
    job, t, c = completed(ma)
    done = (job, t.as_tuple(), c.as_tuple())
    advance(3601)
    sx.transact(ma.fn("startAudit", *done))
    advance(3601)
    g("finalize (auditor silent: slashed, result stands)", sx, ma.fn("finalize", *done))
    # a requested audit with an auditor
    while True:  # the first whose draw finds the auditor at its first look (see audited())
        job, t, c = completed(ma)
        r = sc.transact(ma.fn("dispute", job, t.as_tuple(), c.as_tuple()))
        found = first_look(bytes(w3.eth.get_block(r["blockNumber"])["hash"]), job) == aud.address
        advance(1)
        g("finalize (dispute's draw: auditor drawn)" if found else None, sx, ma.fn("finalize", job, t.as_tuple(), c.as_tuple()))
        if found:
            break

    # post with permit (client deposit short)
    p = m.post_params(MODEL, SPEC, TOKEN, now() + 3600, 600)
    deadline = now() + 600
    v, r_, s_ = permit_signature(other, m, TOKEN, deadline)
    so.transact(m.token.functions.transfer(other.address, TOKEN))
    sx.transact(m.fn("withdraw", 100 * TOKEN))
    g("postJobWithPermit", sx, m.fn("postJobWithPermit", p, TOKEN, deadline, v, r_, s_))

    job, t = post(m, sc)
    g("cancel", sc, m.fn("cancel", job, t.as_tuple()))
    job, t = post(m, sc, window=60)
    sp.transact(m.fn("claim", job, t.as_tuple()))
    advance(61)
    g("expire (claimed, collateral slashed)", sx, m.fn("expire", job, t.with_provider(prov.address).as_tuple()))
    job, t = post(m, sc)
    advance(3601)
    g("expire (never claimed)", sx, m.fn("expire", job, t.as_tuple()))

    g("withdrawOffers", sp, m.fn("withdrawOffers", nonce + 1))
    g("unbond", sp, m.fn("unbond"))
    advance(3601)
    g("withdrawStake", sp, m.fn("withdrawStake"))
    return dict(sorted(out.items())), receipts
