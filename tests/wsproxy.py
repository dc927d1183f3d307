"""A WebSocket endpoint that drops connections, made out of anvil's (anvil serves WebSocket
JSON-RPC on its HTTP port: ws://127.0.0.1:PORT).

    with WsProxy("ws://127.0.0.1:8545", drop_every=2.0) as proxy:
        watcher = Watcher(..., ws_url=proxy.url)
        ...
        assert proxy.counts["drops"] >= 2 and proxy.counts["subscribed"] >= 3

Each client connection gets its own upstream connection; messages are relayed both ways as they
are, so subscriptions live upstream and die with the connection, as with a public endpoint. Every
`drop_every` seconds after it opened, a connection is dropped: `mode="close"` sends a close frame
(1001 going away, what a load balancer that restarts sends), `mode="reset"` cuts the TCP
connection with no close frame (a dropped NAT mapping, a crashed endpoint). `refuse_for` seconds
after a drop, new connections are refused (HTTP 503 at the handshake) so the client's backoff is
exercised too.

Counts: `connections`, `drops`, `refused`, `subscribed` (eth_subscribe answers relayed with a
subscription id), `pushes` (eth_subscription notifications relayed), `upstream_errors`.
Thread-per-connection (websockets' sync server); `stop()` shuts the server and every relay down.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http import HTTPStatus
from typing import Any

from hearth.dev.procs import free_port
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

from tests.served import Served


class WsProxy(Served):
    """A WebSocket relay in front of `upstream` that drops its connections (module docstring)."""

    def __init__(self, upstream: str, *, drop_every: float | None = None, mode: str = "close",
                 refuse_for: float = 0.0) -> None:
        if mode not in ("close", "reset"):
            raise ValueError(f"mode must be close or reset, not {mode!r}")
        self.upstream = upstream
        self.drop_every = drop_every
        self.mode = mode
        self.refuse_for = refuse_for
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_drop = -1e9
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self._server: Server = serve(self._handle, "127.0.0.1", self.port, process_request=self._admit,
                                     compression=None, ping_interval=None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="wsproxy", daemon=True)

    def stop(self) -> None:
        """Stop serving; open connections are closed."""
        self._stop.set()
        self._server.shutdown()
        self._thread.join(timeout=10)

    def _admit(self, conn: ServerConnection, request: Request) -> Response | None:
        with self._lock:
            refusing = time.monotonic() - self._last_drop < self.refuse_for
        if refusing:
            self.count("refused")
            body = b"upstream unavailable\n"
            headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return Response(HTTPStatus.SERVICE_UNAVAILABLE.value, "Service Unavailable", headers, body)
        return None

    def _handle(self, client: ServerConnection) -> None:
        self.count("connections")
        try:
            upstream = connect(self.upstream, open_timeout=5, compression=None, ping_interval=None, proxy=None,
                               legacy=True)
        except Exception:  # noqa: BLE001  (anvil gone: the client sees its connection close)
            self.count("upstream_errors")
            client.close(1011, "upstream unavailable")
            return
        done = threading.Event()
        subscribing: set[Any] = set()  # ids of this connection's eth_subscribe requests
        down = threading.Thread(target=self._relay_down, args=(upstream, client, done, subscribing), name="wsproxy-down",
                                daemon=True)
        down.start()
        try:
            self._relay_up(client, upstream, done, subscribing)
        finally:
            done.set()
            upstream.close()
            down.join(timeout=5)
            client.close()

    def _relay_up(self, client: ServerConnection, upstream: ClientConnection, done: threading.Event,
                  subscribing: set[Any]) -> None:
        """Client -> upstream, until either side ends or the connection's time to be dropped comes."""
        deadline = None if self.drop_every is None else time.monotonic() + self.drop_every
        while not self._stop.is_set() and not done.is_set():
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if wait <= 0:
                self._drop(client)
                return
            try:
                msg = client.recv(timeout=wait)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001  (the client went away)
                return
            req = _json(msg)
            if isinstance(req, dict) and req.get("method") == "eth_subscribe":
                subscribing.add(req.get("id"))
            upstream.send(msg)

    def _relay_down(self, upstream: ClientConnection, client: ServerConnection, done: threading.Event,
                    subscribing: set[Any]) -> None:
        """Upstream -> client: answers and subscription pushes, counted."""
        while not done.is_set():
            try:
                msg = upstream.recv(timeout=0.1)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001  (upstream closed: end the client's connection too)
                done.set()
                return
            self._note(msg, subscribing)
            try:
                client.send(msg)
            except Exception:  # noqa: BLE001  (the client went away, or was dropped)
                done.set()
                return

    def _note(self, msg: str | bytes, subscribing: set[Any]) -> None:
        obj = _json(msg)
        if not isinstance(obj, dict):
            return
        if obj.get("method") == "eth_subscription":
            self.count("pushes")
        elif obj.get("id") in subscribing and "result" in obj:
            self.count("subscribed")

    def _drop(self, client: ServerConnection) -> None:
        with self._lock:
            self._last_drop = time.monotonic()
        self.count("drops")
        if self.mode == "close":
            client.close(1001, "going away")
        else:
            client.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the TCP connection just ends


def _json(msg: str | bytes) -> Any:
    try:
        return json.loads(msg)
    except ValueError:
        return None
