"""The node's offers: one signed offer per served model (its price, the completion window it
needs, its open-job limit, its reproducibility class), published as a document on IPFS whose CID
goes on chain (publishOffers). Clients read the pointer from the chain and the document from
IPFS, so a node behind NAT publishes without accepting a connection. Republished halfway to
their expiry, withdrawn (offer nonce raised) when the node stops; a node that dies leaves them
live until they expire (`offer_ttl`, half an hour by default) or it starts again (it withdraws
them first: they may carry a price or limits it no longer offers), and jobs assigned meanwhile
run when it is back within their windows, or expire. A class change voids them on chain.

The node watches its offer nonce (every `ttl / 8`, at most a minute): raised by
`hearth provider withdraw-offers`, it publishes no more offers until it restarts (the provider
asked for none); raised by a model removal or a class change made with the CLI, it publishes at
once, for the models the chain still has it serve."""

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
        self.nonce = -1  # the nonce the published offers carry
        self._since = 0  # the block of the last publication: later OffersWithdrawn logs say why the nonce rose
        self.paused = False  # withdrawn by hand: none published until the node restarts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self) -> str:
        """Sign an offer per model, put the document on IPFS and point to it on chain; its CID."""
        me = self.sender.address
        chain_id, market = int(self.market.w3.eth.chain_id), self.market.address
        self._since = int(self.market.w3.eth.block_number)
        nonce = int(self.market.call(self.market.contract.functions.offerNonce(me)))
        expiry = int(time.time()) + self.ttl
        # Not a model removed on chain (by hand, while the node runs): the provider stopped serving it.
        served = [cid for cid in self.models if self.market.serves(me, cid.to_bytes())]
        if not served:
            self.nonce, self.expiry = nonce, 0
            log.warning("no offers published: the chain has this provider serve none of the node's models")
            return ""
        signed = [offers.sign(self.sender.account, offers.Offer(
            me, keccak(cid.to_bytes()), self.repro_class, max(self.price, 1), self.window, self.max_open_jobs,
            expiry, nonce,
        ), chain_id, market) for cid in served]
        cid = self.ipfs.add(offers.document(signed, chain_id, market), pin=True)
        # before the transaction: a crash after it is mined leaves them live, and the next start voids them
        self.journal.set_kv("offers_expiry", str(max(expiry, int(self.journal.get_kv("offers_expiry") or 0))))
        self.sender.transact(self.market.fn("publishOffers", cid.to_bytes()))
        self.expiry, self.nonce = expiry, nonce
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
            try:
                voided = self._voided()
            except Exception as e:  # noqa: BLE001  (RPC down: look again next time)
                log.warning("reading the offer nonce failed: %s", str(e).splitlines()[0])
                voided = False
            if self.paused:
                continue
            if voided or self.expiry - time.time() <= self.ttl / 2:
                self._publish_or_warn()  # the old ones hold until they expire: try again soon

    def _voided(self) -> bool:
        """Whether the nonce rose past the published offers' by a model removal or a class change
        (publish again now). Raised by withdrawOffers, the node pauses instead."""
        if self.nonce < 0:
            return False
        me = self.sender.address
        if int(self.market.call(self.market.contract.functions.offerNonce(me))) == self.nonce:
            return False
        selector = keccak(text="withdrawOffers(uint64)")[:4]
        raises = self.market.logs("OffersWithdrawn", self._since, "latest", provider=me)
        if any(bytes(self.market.w3.eth.get_transaction(ev["transactionHash"])["input"])[:4] == selector
               for ev in raises):
            self.paused, self.expiry = True, 0
            self.journal.set_kv("offers_expiry", "0")  # void already: nothing to withdraw at the next start
            log.warning("offers withdrawn (withdrawOffers): this node publishes none until it restarts")
            return False
        log.info("offers voided on chain (a model removed or the class changed): publishing again")
        return True
