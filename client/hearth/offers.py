"""Finding and choosing provider offers for a job (see hearth.formats.offers and
IJobMarket.postJobWithOffer).

A provider's latest OffersPublished log points to its document on IPFS. An offer counts only if
its signature is one the contract takes and the provider's, and the chain would take it now: the
provider active, serving the model, still of the offer's class, the nonce not withdrawn, not
expiring within a minute, fewer open jobs than it allows. Only the documents of providers the
chain shows active and serving the model are fetched (every provider that ever published stays
in the logs), in parallel and all within one time budget (fetches not done by then are
abandoned), and a provider whose document or records cannot be read is skipped, so hostile or
offline providers cost a submit little. A job under an offer pays exactly its
price. Among the offers that fit the job (price at most the payment, window at most the job's,
stake for the collateral), the client prefers the provider whose record on this market is best
(completed / (claimed - declined): a declined job is refunded and says nothing of the provider,
while one claimed and not completed by its deadline counts against it (one still running counts
neither way: a busy provider is not a failing one); a newcomer counts as one success and
one failure; each time an audit slashed it, as a provider proven wrong or as an auditor wrong or
silent, turns as many of its completed jobs into failures as the market audits per job found (ten
at a 10% random audit rate: one proven fraud stands for about ten unchecked), or adds them as
failures when it has fewer), then the cheaper one."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from eth_utils import keccak, to_checksum_address

from hearth.chain.market import Market
from hearth.chain.types import Account
from hearth.errors import HearthError
from hearth.formats import offers
from hearth.formats.cid import CID
from hearth.formats.jobspec import SpecError
from hearth.formats.offers import Offer
from hearth.ipfs.kubo import KuboClient

log = logging.getLogger("hearth")

EXPIRY_MARGIN = 60  # seconds an offer must still hold: the post transaction may wait a few blocks
FETCH_BUDGET = 20.0  # seconds for all documents together: a busy IPFS daemon can be slow
FETCHERS = 8


@dataclass(frozen=True)
class Candidate:
    """A valid offer with its provider's stake and record."""

    offer: Offer
    stake: int
    claimed: int  # decided claims: completed, declined or past their deadline (Market.record)
    completed: int
    declined: int = 0
    slashed: int = 0
    slash_weight: int = 10  # completions one slashing casts doubt on (see slash_weight())

    @property
    def score(self) -> float:
        doubted = self.slash_weight * self.slashed
        good = max(self.completed - doubted, 0)
        bad = max(self.claimed - self.declined, self.completed) - self.completed + doubted
        return (good + 1) / (good + bad + 2)


def live_offers(market: Market, ipfs: KuboClient, model_cid: bytes, now: int) -> list[Candidate]:
    """The offers for `model_cid` that the chain would take now (see the module docstring)."""
    latest: dict[str, bytes] = {}
    for ev in market.logs("OffersPublished", market.deploy_block, "latest"):
        latest[to_checksum_address(ev["args"]["provider"])] = bytes(ev["args"]["cid"])  # the last one counts
    chain_id = int(market.w3.eth.chain_id)
    weight = slash_weight(int(market.call(market.contract.functions.auditBps())))  # the market's, read once
    accounts: dict[str, Account] = {}
    for provider in latest:
        try:
            acct = market.account(provider)
            if acct.status == "Active" and market.serves(provider, model_cid):
                accounts[provider] = acct
        except HearthError as e:  # its records unreadable now: skip it, as an unreadable document
            log.info("offers of %s skipped: %s", provider, str(e).splitlines()[0])
    end = time.monotonic() + FETCH_BUDGET

    def fetch(cid: bytes) -> list[Offer]:
        left = end - time.monotonic()  # a fetch that starts late gets only what is left
        if left <= 0:
            raise TimeoutError
        return offers.parse_document(ipfs.cat(CID.parse(cid), offers.MAX_DOCUMENT_BYTES, left), chain_id, market.address)

    pool = ThreadPoolExecutor(FETCHERS)
    try:
        futures = {p: pool.submit(fetch, latest[p]) for p in accounts}
        wait(futures.values(), timeout=FETCH_BUDGET)
    finally:  # what has not arrived is abandoned, not waited for
        pool.shutdown(wait=False, cancel_futures=True)
    out = []
    for provider, fut in futures.items():
        if not fut.done() or fut.cancelled() or isinstance(fut.exception(), TimeoutError):
            log.info("offers of %s skipped: its document did not arrive in %.0f s", provider, FETCH_BUDGET)
            continue
        try:
            out += _valid(market, provider, accounts[provider], fut.result(), model_cid, now, chain_id, weight)
        except (HearthError, SpecError, ValueError) as e:  # unreadable: its loss, not the client's
            log.info("offers of %s skipped: %s", provider, str(e).splitlines()[0])
    return out


def _valid(market: Market, provider: str, acct: Account, doc: list[Offer], model_cid: bytes, now: int,
           chain_id: int, weight: int) -> list[Candidate]:
    key, c = keccak(model_cid), market.contract.functions
    mine = [o for o in doc if o.provider == provider and o.model_key == key and o.expiry > now + EXPIRY_MARGIN]
    if not mine:
        return []
    repro_class, nonce = bytes(market.call(c.reproClassOf(provider))), int(market.call(c.offerNonce(provider)))
    ok = [o for o in mine if o.repro_class == repro_class and o.nonce == nonce and acct.open_jobs < o.max_open_jobs
          and offers.signer(o, chain_id, market.address) == provider]
    if not ok:
        return []
    n = market.record(provider, now)
    return [Candidate(o, acct.stake, n["JobClaimed"], n["JobCompleted"], n["JobDeclined"], n["Slashed"], weight)
            for o in ok]


def slash_weight(audit_bps: int) -> int:
    """Completions one slashing casts doubt on: a wrong output is completed like a right one and
    only an audit tells them apart, so at a share `audit_bps` of jobs audited one proven fraud
    stands for 10,000 / audit_bps (10 at 10%). With no random audits, only requested ones: 1."""
    return max(1, round(10_000 / audit_bps)) if audit_bps else 1


def ranked(market: Market, candidates: list[Candidate], payment: int, window: int) -> list[Candidate]:
    """The offers that take a job paying `payment` with `window` seconds to complete, best first
    (empty: the client posts an open job)."""
    fits = [c for c in candidates if 0 < c.offer.price <= payment and c.offer.completion_window <= window
            and c.stake >= market.collateral_for(c.offer.price)]
    return sorted(fits, key=best_first)


def best_first(c: Candidate) -> tuple[float, int]:
    """Sort key: the best record first, then the lower price."""
    return (-c.score, c.offer.price)
