"""The watcher: JobPosted logs from a persisted cursor with get_logs, a confirmation depth and
reorg handling, woken early by WebSocket new-block pushes where the RPC offers them."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from hearth.chain.market import Market
from hearth.chain.types import PostedJob, posted_from_event, posted_record
from hearth.errors import InvalidCID

from hearth_node.journal import TERMINAL, Journal

log = logging.getLogger("hearth.node")

WS_RETRY_FIRST, WS_RETRY_MAX = 0.5, 30.0  # reconnection backoff, seconds
WS_PING = 20.0  # keepalive: a connection silent past ping + pong timeout is dropped and reopened
WS_SUBSCRIBE_TIMEOUT = 10.0
REWIND = 64  # blocks rescanned after a reorg below the cursor (no chain reorgs deeper in practice)


def _why(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


class Watcher:
    """Feeds every confirmed JobPosted of the market to `on_posted`, exactly once per cursor move,
    parsed (CIDs included); a job whose CID bytes are not a CID is journaled as skipped instead."""

    def __init__(
        self, market: Market, journal: Journal, on_posted: Callable[[PostedJob], None], confirmations: int = 0,
        poll_interval: float = 0.05, log_range: int = 2000, ws_url: str | None = None,
        on_rpc_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.market = market
        self.w3 = market.w3
        self.journal = journal
        self.on_posted = on_posted
        self.confirmations = confirmations
        self.poll_interval = poll_interval
        self.log_range = log_range
        self.ws_url = ws_url
        self.on_rpc_error = on_rpc_error
        self.rpc_ok = True
        self._ws_live = False
        self.ws_retry_first = WS_RETRY_FIRST
        self.ws_connects = self.ws_drops = self.ws_pushes = 0  # for /status and /metrics
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the poller and the WebSocket listener."""
        for target, name in ((self._watch_loop, "watcher"), (self._ws_loop, "ws")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop both threads."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)

    def _ws_loop(self) -> None:
        """New-block pushes over WebSocket: they only wake the get_logs poller early. A dropped
        connection (closed, reset, or silent past the keepalive) is reopened with exponential
        backoff and jitter, and subscribed again; the backoff starts over only once a push has
        come through, so an endpoint that accepts and drops at once is not hammered. Polling
        goes on at its own pace meanwhile, and a reconnect wakes it to catch up at once."""
        if not self.ws_url:
            return
        from websockets.sync.client import connect

        delay = self.ws_retry_first
        while not self._stop.is_set():
            try:
                with connect(self.ws_url, open_timeout=5, close_timeout=1, ping_interval=WS_PING, ping_timeout=WS_PING,
                             max_size=1 << 20) as ws:
                    self._subscribe(ws)
                    self.ws_connects += 1
                    if self.ws_connects > 1:
                        log.info("websocket reconnected (%d connections so far)", self.ws_connects)
                    self._ws_live = True
                    self._wake.set()  # blocks may have come while it was down
                    while not self._stop.is_set():
                        try:
                            msg = ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        if b'"eth_subscription"' in (msg if isinstance(msg, bytes) else msg.encode()):
                            self.ws_pushes += 1
                            delay = self.ws_retry_first
                            self._wake.set()
            except Exception as e:  # noqa: BLE001  (no WS, or dropped: polling still works)
                if self._stop.is_set():
                    return
                if self._ws_live:
                    self.ws_drops += 1
                    log.info("websocket dropped (%s); polling, reconnecting in %.1fs", _why(e), delay)
                else:
                    log.debug("websocket unavailable (%s); polling, retrying in %.1fs", _why(e), delay)
                self._ws_live = False
                self._stop.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311  (jitter, not secrecy)
                delay = min(delay * 2, WS_RETRY_MAX)
        self._ws_live = False

    @staticmethod
    def _subscribe(ws: Any) -> None:
        """Ask for newHeads and wait for the subscription's id (an error answer raises)."""
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
        deadline = time.monotonic() + WS_SUBSCRIBE_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer to eth_subscribe")
            answer = json.loads(ws.recv(timeout=left))
            if isinstance(answer, dict) and answer.get("id") == 1:
                if not isinstance(answer.get("result"), str):
                    raise ConnectionError(f"eth_subscribe refused: {answer.get('error')}")
                return

    @property
    def ws_live(self) -> bool:
        """Whether a new-block subscription is open now."""
        return self._ws_live

    def _cursor(self) -> int:
        v = self.journal.get_kv("cursor")
        if v is not None:
            return int(v)
        head = self.w3.eth.block_number
        start = max(self.market.deploy_block, head - 5000)
        return start - 1

    def _watch_loop(self) -> None:
        delay = self.poll_interval
        while not self._stop.is_set():
            try:
                self.poll_once()
                if not self.rpc_ok:
                    log.info("RPC is back")
                self.rpc_ok = True
                delay = self.poll_interval
            except Exception as e:  # noqa: BLE001  (RPC down: keep the cursor, retry with backoff)
                if self.rpc_ok:
                    log.warning("RPC error while watching (%s); retrying", type(e).__name__)
                self.rpc_ok = False
                self.on_rpc_error()
                delay = min(max(delay * 2, 0.25), 5.0)
            # With new-block pushes, polling is only a safety net: idle polls would steal CPU
            # (and the GIL) from inference running in this process.
            self._wake.wait(max(delay, 1.0) if self._ws_live else delay)
            self._wake.clear()

    def poll_once(self) -> None:
        """Catch up from the persisted cursor to the confirmed head (one pass)."""
        cursor = self._cursor()
        answered = int(self.w3.eth.block_number)
        if answered < cursor:
            # A load-balanced endpoint answering from a node behind the last one: the cursor's
            # block is not there yet. That is lag, not a reorg: wait for it to catch up.
            log.debug("endpoint head %d is behind the cursor %d; waiting", answered, cursor)
            return
        cursor = self._check_reorg(cursor)
        # scan only to what this answer showed: a lagging node must not be asked for logs of
        # blocks it does not have (it would answer with none, and the cursor would skip them)
        head = answered - self.confirmations
        a = cursor + 1
        while a <= head and not self._stop.is_set():
            b = min(a + self.log_range - 1, head)
            for ev in self.market.logs("JobPosted", a, b):
                try:
                    job = posted_from_event(ev)
                except InvalidCID as e:  # the market takes any bytes as a CID: skip it, never stall
                    self._unparsable(ev, e)
                    continue
                self.on_posted(job)
            block = self.w3.eth.get_block(b)
            self.journal.set_kv("cursor", str(b))
            self.journal.set_kv("cursor_hash", bytes(block["hash"]).hex())
            a = b + 1

    def _unparsable(self, ev: Any, e: InvalidCID) -> None:
        """Journal a job whose CID bytes are not a CID as skipped (once: a rescan finds it known)."""
        record, reason = posted_record(ev), str(e).splitlines()[0]
        if self.journal.add(record["job_id"], record, skipped=reason):
            log.info("job %d skipped: %s", record["job_id"], reason)

    def _check_reorg(self, cursor: int) -> int:
        """If the cursor's block changed hash, a reorg replaced blocks already scanned (deeper than
        the confirmation depth): rewind REWIND blocks and rescan. Jobs journaled from the old
        branch whose posting is gone are skipped, or forgotten when nothing was signed for them
        and the new branch posted another job under the same id (so that one is seen)."""
        saved = self.journal.get_kv("cursor_hash")
        if saved is None or cursor < 0:
            return cursor
        try:
            block = self.w3.eth.get_block(cursor)
            if bytes(block["hash"]).hex() == saved:
                return cursor
        except Exception as e:
            if "not found" not in str(e).lower():
                raise
        rewind = max(self.market.deploy_block - 1, cursor - REWIND)
        log.warning("reorg detected at block %d; rescanning from %d", cursor, rewind + 1)
        live = {int(ev["args"]["jobId"]): "0x" + bytes(ev["transactionHash"]).hex()
                for ev in self.market.logs("JobPosted", rewind + 1, "latest")}
        for rec in self.journal.jobs(limit=10_000):
            if rec.posted["block_number"] <= rewind or live.get(rec.job_id) == rec.posted.get("tx_hash"):
                continue
            if rec.job_id in live and self.journal.forget_unclaimed(rec.job_id, rec.posted.get("tx_hash", "")):
                log.warning("job %d: its posting was replaced by a reorg; it is read again", rec.job_id)
            elif rec.step == "seen":
                self.journal.advance(rec.job_id, "skipped", "its JobPosted log was removed by a reorg")
            elif rec.step not in TERMINAL:
                # its claim went with the old branch too: the submitter's on-chain checks end it
                log.warning("job %d (step %s): its JobPosted log was removed by a reorg", rec.job_id, rec.step)
        self.journal.set_kv("cursor", str(rewind))
        self.journal.set_kv("cursor_hash", bytes(self.w3.eth.get_block(rewind)["hash"]).hex())
        return rewind
