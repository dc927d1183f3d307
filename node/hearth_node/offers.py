"""The node's offers: one signed offer per served model (its price, the completion window it
needs, its open-job limit, its reproducibility class), published as a document on IPFS whose CID
goes on chain (publishOffers). Clients read the pointer from the chain and the document from
IPFS, so a node behind NAT publishes without accepting a connection. Republished halfway to
their expiry, withdrawn (offer nonce raised) when the node stops; a node that dies leaves them
live until they expire (`offer_ttl`, half an hour by default) or it starts again (it withdraws
them first: they may carry a price or limits it no longer offers), and jobs assigned meanwhile
run when it is back within their windows, or expire. A class change voids them on chain.

The node watches its offer nonce (every `ttl / 8`, at most a minute): raised by a model removal
made with the CLI while it runs (or a class change or registration sent by other means), it
publishes again at once, for the models the chain still has it serve; raised by anything else,
such as `hearth provider withdraw-offers`, it publishes no more offers until it restarts (the
provider asked for none). It never republishes over a raise it cannot attribute yet."""

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
from web3.logs import DISCARD

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
        self._since = 0  # the head when the nonce was last read: later OffersWithdrawn logs say why it rose
        self.paused = False  # withdrawn by hand: none published until the node restarts
        self._skipped: str | None = None  # why the last look published nothing
        self._due = False  # the last try failed: try again at the next look
        self._own: set[int] = set()  # nonces of the node's own withdrawals
        self._lock = threading.Lock()  # one publication at a time, and none after stop()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self) -> str:
        """Sign an offer per served model, put the document on IPFS and point to it on chain; its
        CID ("" when the node publishes none now: see `_skip`)."""
        me, f = self.sender.address, self.market.contract.functions
        chain_id, market = int(self.market.w3.eth.chain_id), self.market.address
        head, nonce = self._read_nonce()
        if 0 <= self.nonce != nonce:  # raised since the last publication: by whom decides what next
            why = self._raised_by(nonce)
            if why == "hand":
                self.paused, self.expiry = True, 0
                self.journal.set_kv("offers_expiry", "0")  # void already: nothing to withdraw at the next start
                log.warning("offers withdrawn (withdrawOffers): this node publishes none until it restarts")
                return ""
            if why == "unknown":  # never republish over what may be a withdrawal: look again next time
                return self._skip("the offer nonce rose and the log of why is not readable yet")
            log.info("offers voided on chain (a model removed or the class changed): publishing again")
        self.nonce, self._since = nonce, head
        if bytes(self.market.call(f.reproClassOf(me))) != self.repro_class:
            return self._skip("the chain has another reproducibility class for this provider (clients would "
                              "ignore its offers); the node declares its own at its next start")
        # Not a model removed on chain (by hand, while the node runs): the provider stopped serving it.
        served = [cid for cid in self.models if self.market.serves(me, cid.to_bytes())]
        if not served:
            return self._skip("the chain has this provider serve none of the node's models")
        expiry = int(time.time()) + self.ttl
        signed = [offers.sign(self.sender.account, offers.Offer(
            me, keccak(cid.to_bytes()), self.repro_class, max(self.price, 1), self.window, self.max_open_jobs,
            expiry, nonce,
        ), chain_id, market) for cid in served]
        cid = self.ipfs.add(offers.document(signed, chain_id, market), pin=True)
        # before the transaction: a crash after it is mined leaves them live, and the next start voids them
        self.journal.set_kv("offers_expiry", str(max(expiry, int(self.journal.get_kv("offers_expiry") or 0))))
        self.sender.transact(self.market.fn("publishOffers", cid.to_bytes()))
        self.expiry, self._skipped, self._due = expiry, None, False
        log.info("published %d offers (%s), valid for %d s", len(signed), cid, self.ttl)
        return str(cid)

    def _skip(self, why: str) -> str:
        """Publish nothing now (the loop looks again every tick), saying why once."""
        if why != self._skipped:
            log.warning("no offers published: %s", why)
        self._skipped, self.expiry = why, 0
        return ""

    def _raised_by(self, nonce: int) -> str:
        """Who raised the offer nonce past the published offers' to `nonce`: "removal" (a model
        removal, class change or registration: publish again), "hand" (anything else, such as
        `hearth provider withdraw-offers`: publish no more), or "unknown" (not every raise's log
        is readable yet). Judged by what each raising transaction emitted, so a withdrawal sent
        through another contract counts as one too."""
        me, events = self.sender.address, self.market.contract.events
        raises = [ev for ev in self.market.logs("OffersWithdrawn", self._since, "latest", provider=me)
                  if int(ev["args"]["nonce"]) > self.nonce]
        if not raises or max(int(ev["args"]["nonce"]) for ev in raises) != nonce:
            return "unknown"
        for ev in raises:
            if int(ev["args"]["nonce"]) in self._own:
                continue
            receipt = self.market.w3.eth.get_transaction_receipt(ev["transactionHash"])
            if not any(e["address"] == self.market.address and e["args"]["provider"] == me
                       for kind in (events.ModelRemoved, events.ReproClassSet, events.ProviderRegistered)
                       for e in kind().process_receipt(receipt, errors=DISCARD)):
                return "hand"
        return "removal"

    def _read_nonce(self) -> tuple[int, int]:
        """(head, offer nonce at that head): one block for both, so that every raise after it has
        its log at or after it, whichever node of a load-balanced endpoint answers."""
        head = self.market.head_number()
        return head, int(self.market.call(self.market.contract.functions.offerNonce(self.sender.address), block=head))

    def start(self) -> None:
        if int(self.journal.get_kv("offers_expiry") or 0) > time.time():
            self._withdraw("offers of the last run withdrawn (it ended without withdrawing them)")
        try:  # raises from now on are someone else's: a withdrawal by hand before the first publication counts
            self._since, self.nonce = self._read_nonce()
        except Exception as e:  # noqa: BLE001  (RPC down: the first publication reads it)
            log.warning("reading the offer nonce failed: %s", str(e).splitlines()[0])
        self._publish_or_warn()  # before the node reports up, so a client right after finds them
        self._thread = threading.Thread(target=self._loop, name="offers", daemon=True)
        self._thread.start()

    def _publish_or_warn(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            try:
                self.publish()
            except Exception as e:  # noqa: BLE001  (the node runs without offers; the loop tries again)
                self._due = True  # at the next look, whatever the nonce and the expiry say
                log.warning("publishing offers failed: %s", str(e).splitlines()[0])

    def stop(self) -> None:
        """Stop republishing and void the published offers, so no client assigns a job to a node
        that is not running (best effort: they expire anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not self._lock.acquire(timeout=60):  # a publication still in flight: the next start voids it
            log.warning("offers left to expire: a publication was still in flight")
            return
        try:
            if self.expiry:
                self._withdraw("offers withdrawn")
        finally:
            self._lock.release()

    def _withdraw(self, done: str) -> None:
        """Raise the offer nonce on chain: every offer signed so far is void."""
        try:
            me = self.sender.address
            nonce = int(self.market.call(self.market.contract.functions.offerNonce(me))) + 1
            self._own.add(nonce)
            self.sender.transact(self.market.fn("withdrawOffers", nonce))
            self.journal.set_kv("offers_expiry", "0")
            log.info(done)
        except Exception as e:  # noqa: BLE001  (they expire on their own)
            log.warning("withdrawing offers failed (they expire on their own): %s", str(e).splitlines()[0])

    def _loop(self) -> None:
        while not self._stop.wait(min(60.0, self.ttl / 8)):
            if self.paused:
                continue
            try:
                raised = self._read_nonce()[1] != self.nonce
            except Exception as e:  # noqa: BLE001  (RPC down: look again next time)
                log.warning("reading the offer nonce failed: %s", str(e).splitlines()[0])
                continue
            if raised or self._due or self.expiry - time.time() <= self.ttl / 2:
                self._publish_or_warn()  # the old ones hold until they expire: try again soon
