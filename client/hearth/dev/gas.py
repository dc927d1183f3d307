"""`hearth bench gas`: the gas of every external function and of the job lifecycle, measured on
a fresh anvil in a fixed scenario (gas is deterministic; contracts/gas.json is the committed table).

Two markets: the default deployment (MarketParams(): one-hour dispute window, dispute bond,
collateral floor) with a 1% protocol fee, whose path is post + claim + complete + settle, and a
dispute-window-0 market (the devnet's), which pays at complete."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from eth_utils import keccak

from hearth.chain import artifacts
from hearth.chain.market import Market, connect
from hearth.chain.sender import Sender
from hearth.chain.types import JobTerms
from hearth.dev.deploy import MarketParams, deploy_contract
from hearth.dev.devnet import dev_accounts, start_anvil
from hearth.dev.procs import stop_proc
from hearth.formats.units import SUPPLY, TOKEN
from hearth.jobs import permit_signature

MODEL = bytes.fromhex("1220") + keccak(b"bench-model")
SPEC = bytes.fromhex("1220") + keccak(b"bench-spec")
RESULT = bytes.fromhex("1220") + keccak(b"bench-result")
OUT = b"\x11" * 32
FEE_BPS = 100

DEFAULT_TOTAL = "default: total post+claim+complete+settle"
WINDOW0_TOTAL = "window 0: total post+claim+complete"


# ============================================================================ gas


def _deploy(w3: Any, s: Sender, name: str, *args: Any) -> str:
    return str(deploy_contract(w3, s, name, *args)["contractAddress"])


def gas_table() -> dict[str, int]:
    """Gas of every external function in a fixed, warm scenario on a fresh anvil, plus the two
    lifecycles broken down: the default market's (1 h window, 1% fee) and the window-0 market's."""
    proc, url = start_anvil()
    try:
        return _gas_scenario(url)
    finally:
        stop_proc(proc)


def _gas_scenario(url: str) -> dict[str, int]:
    w3 = connect(url)
    owner, client, prov, other, treasury = dev_accounts(5)
    so, sc, sp, sx = (Sender(w3, a) for a in (owner, client, prov, other))
    out: dict[str, int] = {}

    def g(key: str, s: Sender, fn: Any) -> Any:
        r = s.transact(fn)
        out[key] = int(r["gasUsed"])
        return r

    token = _deploy(w3, so, "HearthToken", owner.address, SUPPLY)
    arb = _deploy(w3, so, "SimpleArbiter", owner.address)
    arb_c = w3.eth.contract(address=w3.to_checksum_address(arb), abi=artifacts.load("SimpleArbiter")["abi"])
    default = MarketParams()
    mw = Market(w3, _deploy(w3, so, "JobMarket", token, arb, default.as_config()), token)
    m = Market(w3, _deploy(w3, so, "JobMarket", token, arb, replace(default, dispute_window=0).as_config()), token)
    for s, a in ((sc, client), (sp, prov), (sx, other)):
        so.transact(m.token.functions.transfer(a.address, 10_000 * TOKEN))
        for mk in (m, mw):
            s.transact(m.token.functions.approve(mk.address, 2**256 - 1))

    def now() -> int:
        return int(w3.eth.get_block("latest")["timestamp"])

    def advance(sec: int) -> None:
        w3.provider.make_request("evm_increaseTime", [sec])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def post(mk: Market, s: Sender, key: str | None = None, window: int = 600) -> tuple[int, JobTerms]:
        p = mk.post_params(MODEL, SPEC, TOKEN, now() + 3600, window)
        r = g(key, s, mk.fn("postJob", p)) if key else s.transact(mk.fn("postJob", p))
        job = mk.job_posted_id(r)
        return job, mk.posted(job).terms

    def claimed(mk: Market) -> tuple[int, JobTerms]:
        job, t = post(mk, sc)
        sp.transact(mk.fn("claim", job, t.as_tuple()))
        return job, t.with_provider(prov.address)

    def completed(mk: Market) -> tuple[int, JobTerms]:
        job, t = claimed(mk)
        sp.transact(mk.fn("complete", job, t.as_tuple(), RESULT, OUT))
        return job, t

    # balances and provider record (first use of each slot)
    g("deposit", sc, m.fn("deposit", 100 * TOKEN))
    v, r_, s_ = permit_signature(other, m, 100 * TOKEN, now() + 600)
    g("depositWithPermit", sx, m.fn("depositWithPermit", 100 * TOKEN, now() + 600, v, r_, s_))
    g("withdraw", sc, m.fn("withdraw", TOKEN))
    sp.transact(m.fn("deposit", 500 * TOKEN))
    g("register", sp, m.fn("register", 100 * TOKEN, TOKEN // 1000, [MODEL]))
    g("addStake", sp, m.fn("addStake", TOKEN))
    g("setPrice", sp, m.fn("setPrice", TOKEN // 100))
    g("addModels", sp, m.fn("addModels", [RESULT]))
    g("removeModels", sp, m.fn("removeModels", [RESULT]))

    # ---- the default market: 1 h dispute window, 1% fee; paid by settle after the window
    g("setFee", so, mw.fn("setFee", FEE_BPS, treasury.address))
    sc.transact(mw.fn("deposit", 100 * TOKEN))
    sp.transact(mw.fn("deposit", 200 * TOKEN))
    sp.transact(mw.fn("register", 100 * TOKEN, 0, [MODEL]))
    job, t = completed(mw)  # warm-up: provider and fee recipient already hold balances
    advance(3601)
    sp.transact(mw.fn("settle", job, t.as_tuple()))

    job, t = post(mw, sc, "default: postJob")
    g("default: claim", sp, mw.fn("claim", job, t.as_tuple()))
    t = t.with_provider(prov.address)
    g("default: complete (window open)", sp, mw.fn("complete", job, t.as_tuple(), RESULT, OUT))
    advance(3601)
    g("default: settle (1% fee)", sx, mw.fn("settle", job, t.as_tuple()))
    out[DEFAULT_TOTAL] = sum(out[f"default: {k}"] for k in (
        "postJob", "claim", "complete (window open)", "settle (1% fee)"))

    for outcome in (True, False):
        job, t = completed(mw)
        g("dispute (bond locked, arbiter told)", sc, mw.fn("dispute", job, t.as_tuple()))
        key = "resolve via SimpleArbiter (provider wins)" if outcome else "resolve via SimpleArbiter (client wins)"
        g(key, so, arb_c.functions.decide(mw.address, job, t.as_tuple(), outcome))
    job, t = completed(mw)
    sc.transact(mw.fn("dispute", job, t.as_tuple()))
    advance(86_401)
    g("expire (dispute lapsed, result stands)", sx, mw.fn("expire", job, t.as_tuple()))

    # ---- the window-0 market (the devnet's): paid at complete
    job, t = completed(m)  # warm-up, as above
    job, t = post(m, sc, "window 0: postJob")
    g("window 0: claim", sp, m.fn("claim", job, t.as_tuple()))
    g("window 0: complete (pays at once)", sp,
      m.fn("complete", job, t.with_provider(prov.address).as_tuple(), RESULT, OUT))
    out[WINDOW0_TOTAL] = sum(out[f"window 0: {k}"] for k in ("postJob", "claim", "complete (pays at once)"))

    # post with permit (client deposit short)
    p = m.post_params(MODEL, SPEC, TOKEN, now() + 3600, 600)
    v, r_, s_ = permit_signature(other, m, TOKEN, now() + 600)
    so.transact(m.token.functions.transfer(other.address, TOKEN))
    sx.transact(m.fn("withdraw", 100 * TOKEN))
    g("postJobWithPermit", sx, m.fn("postJobWithPermit", p, TOKEN, now() + 600, v, r_, s_))

    job, t = post(m, sc)
    g("cancel", sc, m.fn("cancel", job, t.as_tuple()))
    job, t = post(m, sc, window=60)
    sp.transact(m.fn("claim", job, t.as_tuple()))
    advance(61)
    g("expire (claimed, collateral slashed)", sx, m.fn("expire", job, t.with_provider(prov.address).as_tuple()))
    job, t = post(m, sc)
    advance(3601)
    g("expire (never claimed)", sx, m.fn("expire", job, t.as_tuple()))

    g("unbond", sp, m.fn("unbond"))
    advance(3601)
    g("withdrawStake", sp, m.fn("withdrawStake"))
    return dict(sorted(out.items()))
