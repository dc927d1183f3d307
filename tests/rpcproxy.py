"""A public chain made out of anvil: a JSON-RPC proxy that misbehaves the way public endpoints do.

    with RpcProxy(anvil_url, share_429=0.3, max_log_range=100) as proxy:
        w3 = connect(proxy.url)
        ...
        assert proxy.counts["429"] > 0

Faults, each off by default, drawn from a seeded generator (so a failing run can be replayed):
- `share_429`: that share of calls is answered HTTP 429 with `Retry-After: retry_after`
  (seconds or an HTTP date; None sends no header); `fail_first` answers the first N calls so.
- `share_rate_error`: that share answered HTTP 200 with a JSON-RPC "rate limited" error.
- `share_503`: that share answered HTTP 503 (a gateway whose upstream is down).
- `max_log_range`: eth_getLogs over more blocks is refused with one of the range errors that
  Infura, Alchemy, QuickNode and erigon send; `max_log_results`: one returning more logs is
  refused with Infura's "query returned more than N results".
- `latency`: seconds added to every answer.
- `lag_share`: that share of eth_blockNumber answers comes from a node `lag_blocks` behind.
`raw_transactions` keeps every signed transaction forwarded (to count replacements);
`counts["method:NAME"]` how many requests of each method arrived.
Thread-per-request (ThreadingHTTPServer); `stop()` shuts the server down from its own thread
object, no process involved.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hearth.dev.procs import free_port

from tests.served import Served

RANGE_ERRORS = (
    (-32602, "range {span} exceeds limit of {limit}"),  # Infura
    (-32600, "You can make eth_getLogs requests with up to a {limit} block range. Based on your parameters, "
             "this block range should work: [{first_hex}, {last_hex}]"),  # Alchemy
    (-32614, "eth_getLogs is limited to a {limit} range"),  # QuickNode
    (-32005, "block range too large, max range: {limit}"),  # erigon
)


class RpcProxy(Served):
    """An HTTP JSON-RPC proxy in front of `upstream` that injects faults (module docstring)."""

    def __init__(
        self, upstream: str, *, share_429: float = 0.0, retry_after: str | None = "0", fail_first: int = 0,
        share_rate_error: float = 0.0, share_503: float = 0.0, max_log_range: int | None = None,
        max_log_results: int | None = None, latency: float = 0.0, lag_share: float = 0.0, lag_blocks: int = 3,
        seed: int = 1,
    ) -> None:
        self.upstream = upstream
        self.share_429 = share_429
        self.retry_after = retry_after
        self.fail_first = fail_first
        self.share_rate_error = share_rate_error
        self.share_503 = share_503
        self.max_log_range = max_log_range
        self.max_log_results = max_log_results
        self.latency = latency
        self.lag_share = lag_share
        self.lag_blocks = lag_blocks
        self.counts: Counter[str] = Counter()
        self.raw_transactions: list[str] = []  # every eth_sendRawTransaction forwarded, as sent
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="rpcproxy", daemon=True)

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # ---- what the handler asks
    def _draw(self, share: float) -> bool:
        with self._lock:
            return share > 0 and self._rng.random() < share

    def _pick(self, n: int) -> int:
        with self._lock:
            return self._rng.randrange(n)

    def upstream_call(self, method: str, params: list[Any]) -> dict[str, Any]:
        """One call to the real node."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        return self._post(body)  # type: ignore[no-any-return]

    def _post(self, body: bytes) -> Any:
        req = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310  (a local anvil)
            return json.loads(resp.read())

    def _block(self, tag: Any) -> int:
        if tag is None or tag in ("latest", "pending", "safe", "finalized"):
            return int(self.upstream_call("eth_blockNumber", [])["result"], 16)
        if tag == "earliest":
            return 0
        return int(tag, 16) if isinstance(tag, str) else int(tag)

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        """The (possibly faulty) answer to one JSON-RPC request."""
        method, params, rid = req.get("method"), req.get("params") or [], req.get("id")
        self.count(f"method:{method}")
        if method == "eth_sendRawTransaction" and params:
            with self._lock:
                self.raw_transactions.append(str(params[0]))
        if method == "eth_getLogs" and params and "blockHash" not in params[0]:
            first, last = self._block(params[0].get("fromBlock")), self._block(params[0].get("toBlock"))
            span = last - first + 1
            if self.max_log_range is not None and span > self.max_log_range:
                self.count("range_refused")
                code, text = RANGE_ERRORS[self._pick(len(RANGE_ERRORS))]
                limit = self.max_log_range
                msg = text.format(span=span, limit=limit, first_hex=hex(first), last_hex=hex(first + limit - 1))
                return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": msg}}
        out: dict[str, Any] = self._post(json.dumps(req).encode())
        if method == "eth_getLogs" and self.max_log_results is not None and len(out.get("result") or []) > \
                self.max_log_results:
            self.count("results_refused")
            msg = f"query returned more than {self.max_log_results} results"
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32005, "message": msg}}
        if method == "eth_blockNumber" and "result" in out and self._draw(self.lag_share):
            self.count("lagged")
            out["result"] = hex(max(0, int(out["result"], 16) - self.lag_blocks))
        return out


def _handler(proxy: RpcProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as web3's requests session expects

        def setup(self) -> None:
            super().setup()
            # headers and body leave in two writes: without this, Nagle + delayed ACK add 40 ms a call
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the stdlib's name)
            pass  # quiet: the counts say what happened

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802  (the stdlib's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            calls = proxy.count("calls")
            if proxy.latency:
                time.sleep(proxy.latency)
            if calls <= proxy.fail_first or proxy._draw(proxy.share_429):
                proxy.count("429")
                headers = {"Retry-After": proxy.retry_after} if proxy.retry_after is not None else {}
                self._send(429, b'{"message":"Too Many Requests"}', headers)
                return
            if proxy._draw(proxy.share_503):
                proxy.count("503")
                self._send(503, b"<html>503 Service Unavailable</html>", {"Content-Type": "text/html"})
                return
            req = json.loads(body)
            if not isinstance(req, list) and proxy._draw(proxy.share_rate_error):
                proxy.count("rate_error")
                err = {"code": -32005, "message": "daily request count exceeded, request rate limited"}
                self._send(200, json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "error": err}).encode())
                return
            out = [proxy.answer(r) for r in req] if isinstance(req, list) else proxy.answer(req)
            self._send(200, json.dumps(out).encode())

    return Handler
