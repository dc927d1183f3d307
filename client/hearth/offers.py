"""Finding and choosing provider offers for a job (see hearth.formats.offers and
IJobMarket.postJobWithOffer).

A provider's latest OffersPublished log points to its document on IPFS. An offer counts only if
its signature is the provider's and the chain would take it now: the provider active, serving
the model, still of the offer's class, the nonce not withdrawn, not expiring within a minute,
fewer open jobs than it allows, stake for the collateral. Among those that fit the job (price at
most the payment, window at most the job's), the client prefers the provider whose record on
this market is best (completed / claimed, with one success and one failure assumed for a
newcomer), then the cheaper one."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_utils import keccak, to_checksum_address

from hearth.chain.market import Market
from hearth.errors import HearthError
from hearth.formats import offers
from hearth.formats.cid import CID
from hearth.formats.jobspec import SpecError
from hearth.formats.offers import Offer
from hearth.ipfs.kubo import KuboClient

log = logging.getLogger("hearth")

EXPIRY_MARGIN = 60  # seconds an offer must still hold: the post transaction may wait a few blocks
FETCH_TIMEOUT = 20.0  # a busy IPFS daemon (a node loading a model from it) can be slow


@dataclass(frozen=True)
class Candidate:
    """A valid offer with its provider's record."""

    offer: Offer
    claimed: int
    completed: int

    @property
    def score(self) -> float:
        return (self.completed + 1) / (self.claimed + 2)


def live_offers(market: Market, ipfs: KuboClient, model_cid: bytes, now: int) -> list[Candidate]:
    """The offers for `model_cid` that the chain would take now (see the module docstring)."""
    latest: dict[str, bytes] = {}
    for ev in market.logs("OffersPublished", market.deploy_block, "latest"):
        latest[to_checksum_address(ev["args"]["provider"])] = bytes(ev["args"]["cid"])  # the last one counts
    chain_id, key, out = int(market.w3.eth.chain_id), keccak(model_cid), []
    c = market.contract.functions
    for provider, cid in latest.items():
        acct = market.account(provider)
        if acct.status != "Active" or not market.serves(provider, model_cid):
            continue
        try:
            doc = offers.parse_document(ipfs.cat(CID.parse(cid), offers.MAX_DOCUMENT_BYTES, FETCH_TIMEOUT),
                                        chain_id, market.address)
        except (HearthError, SpecError, ValueError) as e:  # its document is unreadable: its loss, not ours
            log.info("offers of %s skipped: %s", provider, str(e).splitlines()[0])
            continue
        repro_class = bytes(market.call(c.reproClassOf(provider)))
        nonce = int(market.call(c.offerNonce(provider)))
        for o in doc:
            if (o.provider == provider and o.model_key == key and o.repro_class == repro_class and o.nonce >= nonce
                    and o.expiry > now + EXPIRY_MARGIN and acct.open_jobs < o.max_open_jobs
                    and offers.signer(o, chain_id, market.address) == provider):
                claimed = len(market.logs("JobClaimed", market.deploy_block, "latest", provider=provider))
                completed = len(market.logs("JobCompleted", market.deploy_block, "latest", provider=provider))
                out.append(Candidate(o, claimed, completed))
    return out


def choose(market: Market, candidates: list[Candidate], payment: int, window: int) -> Candidate | None:
    """The best offer that takes a job paying `payment` with `window` seconds to complete; None
    when none does (the client then posts an open job)."""
    collateral = market.collateral_for(payment)
    fits = [c for c in candidates if c.offer.price <= payment and c.offer.completion_window <= window
            and market.account(c.offer.provider).stake >= collateral]
    return max(fits, key=lambda c: (c.score, -c.offer.price), default=None)
