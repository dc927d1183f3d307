"""The node's offers: one signed offer per served model (its price, the completion window it
needs, its open-job limit, its reproducibility class), published as a document on IPFS whose CID
goes on chain (publishOffers). Clients read the pointer from the chain and the document from
IPFS, so a node behind NAT publishes without accepting a connection. Republished halfway to
their expiry, withdrawn (offer nonce raised) when the node stops; a node that dies leaves them
live until they expire (`offer_ttl`, half an hour by default) or it starts again (it withdraws
them first: they may carry a price or limits it no longer offers), and jobs assigned meanwhile
run when it is back within their windows, or expire. A class change voids them on chain."""

from __future__ import annotations

import logging
import threading
import time

from eth_utils import keccak
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.formats import offers
from hearth.formats.cid import CID
from hearth.ipfs.kubo import KuboClient

from hearth_node.journal import Journal

log = logging.getLogger("hearth.node")


def max_open_jobs_in_window(running: int, dispute_window: int, offer_window: int) -> int:
    """An offer's maxOpenJobs for a node that runs `running` jobs at once, each in at most
    `offer_window` seconds, whose answered jobs stay open on chain for `dispute_window` more."""
    return min(2**16 - 1, running * (1 + -(-dispute_window // offer_window)))


class OfferBook:
    """Keeps this node's offers published while it runs."""

    def __init__(self, market: Market, sender: Sender, ipfs: KuboClient, models: list[CID], repro_class: bytes,
                 price: int, window: int, max_open_jobs: int, ttl: int, journal: Journal) -> None:
        self.market, self.sender, self.ipfs, self.journal = market, sender, ipfs, journal
        self.models, self.repro_class = models, repro_class
        self.price, self.window, self.max_open_jobs, self.ttl = price, window, max_open_jobs, ttl
        self.expiry = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self) -> str:
        """Sign an offer per model, put the document on IPFS and point to it on chain; its CID."""
        me = self.sender.address
        chain_id, market = int(self.market.w3.eth.chain_id), self.market.address
        nonce = int(self.market.call(self.market.contract.functions.offerNonce(me)))
        expiry = int(time.time()) + self.ttl
        signed = [offers.sign(self.sender.account, offers.Offer(
            me, keccak(cid.to_bytes()), self.repro_class, max(self.price, 1), self.window, self.max_open_jobs,
            expiry, nonce,
        ), chain_id, market) for cid in self.models]
        cid = self.ipfs.add(offers.document(signed, chain_id, market), pin=True)
        # before the transaction: a crash after it is mined leaves them live, and the next start voids them
        self.journal.set_kv("offers_expiry", str(max(expiry, int(self.journal.get_kv("offers_expiry") or 0))))
        self.sender.transact(self.market.fn("publishOffers", cid.to_bytes()))
        self.expiry = expiry
        log.info("published %d offers (%s), valid for %d s", len(signed), cid, self.ttl)
        return str(cid)

    def start(self) -> None:
        if int(self.journal.get_kv("offers_expiry") or 0) > time.time():
            self._withdraw("offers of the last run withdrawn (it ended without withdrawing them)")
        self._publish_or_warn()  # before the node reports up, so a client right after finds them
        self._thread = threading.Thread(target=self._loop, name="offers", daemon=True)
        self._thread.start()

    def _publish_or_warn(self) -> None:
        try:
            self.publish()
        except Exception as e:  # noqa: BLE001  (the node runs without offers; the loop tries again)
            log.warning("publishing offers failed: %s", str(e).splitlines()[0])

    def stop(self) -> None:
        """Stop republishing and void the published offers, so no client assigns a job to a node
        that is not running (best effort: they expire anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.expiry:
            self._withdraw("offers withdrawn")

    def _withdraw(self, done: str) -> None:
        """Raise the offer nonce on chain: every offer signed so far is void."""
        try:
            me = self.sender.address
            nonce = int(self.market.call(self.market.contract.functions.offerNonce(me))) + 1
            self.sender.transact(self.market.fn("withdrawOffers", nonce))
            self.journal.set_kv("offers_expiry", "0")
            log.info(done)
        except Exception as e:  # noqa: BLE001  (they expire on their own)
            log.warning("withdrawing offers failed (they expire on their own): %s", str(e).splitlines()[0])

    def _loop(self) -> None:
        while not self._stop.wait(min(60.0, self.ttl / 8)):
            if self.expiry - time.time() <= self.ttl / 2:
                self._publish_or_warn()  # the old ones hold until they expire: try again soon
