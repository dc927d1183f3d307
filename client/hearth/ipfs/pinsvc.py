"""The IPFS Pinning Service API (https://ipfs.github.io/pinning-services-api-spec/, v1.0.0) served
by the embedded daemon (`hearth ipfs daemon --serve-pins`): a remote pin for your own specs and
results on a machine that stays up, readable back through the daemon's gateway paths.

    POST   /pins            {cid, name?, origins?, meta?}  -> 202 PinStatus (queued)
    GET    /pins            ?cid=a,b&name=&match=&status=queued,pinning,pinned,failed&before=&after=&limit=&meta=
    GET    /pins/{id}       -> PinStatus
    POST   /pins/{id}       replace: a new request for the given pin, the old one removed
    DELETE /pins/{id}       -> 202

Every call needs `Authorization: Bearer <token>`, one of the tokens in HEARTH_IPFS_PIN_TOKENS
(comma-separated); errors are {"error": {"reason", "details"}}.

Where the content comes from. This daemon has no libp2p: it fetches a pinned DAG over HTTP, with
the verified fetch (hearth.ipfs.fetch: every block hashed against its CID, sizes and work bounded,
a deadline), from the first of these that delivers it:
  * its own blockstore (content added here is pinned at once);
  * each entry of `origins` that names an HTTP gateway: a multiaddr /ip4|ip6|dns|dns4|dns6/HOST/
    tcp/PORT/http (or /https, /tls/http) - the form IPFS uses for HTTP transports, so a real
    service accepts it too - or, as a Hearth extension, a plain http(s):// URL of a gateway;
    other multiaddrs (libp2p peers) are ignored here;
  * `meta["hearth.gateway"]`: a trustless gateway URL; `meta["hearth.kubo_rpc"]`: a Kubo RPC API
    URL (block/get), for a node of your own that does not expose a gateway.
Only token holders can make the daemon fetch URLs; the fetch is bounded by --max-add.
Requests are kept in <data>/pinreqs/ and resumed after a restart.
"""

from __future__ import annotations

import hmac
import json
import os
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from hearth.errors import HearthError
from hearth.formats.cid import CID
from hearth.ipfs.fetch import walk_blocks
from hearth.ipfs.gateway import GatewayClient
from hearth.ipfs.kubo import KuboClient

if TYPE_CHECKING:
    from hearth.ipfs.daemon import Blockstore

STATUSES = ("queued", "pinning", "pinned", "failed")
WORKERS = 2
_HTTP_PROTOCOLS = {("http",): "http", ("https",): "https", ("tls", "http"): "https"}


class Pin(BaseModel):
    """The pin object of the API."""

    cid: str = Field(max_length=512)
    name: str | None = Field(None, max_length=255)
    origins: list[str] = Field(default_factory=list, max_length=20)
    meta: dict[str, str] = Field(default_factory=dict, max_length=100)


class PinApiError(Exception):
    """An answer in the API's error shape."""

    def __init__(self, status: int, reason: str, details: str) -> None:
        super().__init__(details)
        self.status, self.reason, self.details = status, reason, details


def _error(status: int, reason: str, details: str) -> JSONResponse:
    return JSONResponse({"error": {"reason": reason, "details": details}}, status_code=status)


def multiaddr_url(addr: str) -> str | None:
    """http(s)://host:port for an HTTP-transport multiaddr or an http(s) URL; None for anything else."""
    if addr.startswith(("http://", "https://")):
        return addr.rstrip("/")
    parts = addr.strip("/").split("/")
    if len(parts) < 5 or parts[0] not in ("ip4", "ip6", "dns", "dns4", "dns6") or parts[2] != "tcp":
        return None
    scheme = _HTTP_PROTOCOLS.get(tuple(parts[4:]))
    if scheme is None or not parts[3].isdigit():
        return None
    host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
    return f"{scheme}://{host}:{parts[3]}"


def origin_sources(pin: dict[str, Any]) -> list[tuple[str, Callable[[], GatewayClient | KuboClient]]]:
    """(where, open a source) for every usable origin of a pin (see the module docstring)."""
    out: list[tuple[str, Callable[[], GatewayClient | KuboClient]]] = []
    urls = [u for u in (multiaddr_url(o) for o in pin.get("origins") or []) if u is not None]
    meta = pin.get("meta") or {}
    if meta.get("hearth.gateway", "").startswith(("http://", "https://")):
        urls.append(meta["hearth.gateway"])
    out += [(url, partial(GatewayClient, url, timeout=30)) for url in urls]
    rpc = meta.get("hearth.kubo_rpc", "")
    if rpc.startswith(("http://", "https://")):
        out.append((rpc, partial(KuboClient, rpc, timeout=30)))
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PinRequests:
    """Pin requests on disk and the workers that fetch and pin them."""

    def __init__(self, store: Blockstore, delegate: str, max_size: int) -> None:
        self.store, self.delegates, self.max_size = store, [delegate], max_size
        self.dir = store.root / "pinreqs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._reqs: dict[str, dict[str, Any]] = {}
        for f in self.dir.glob("*.json"):
            try:
                r = json.loads(f.read_text())
                self._reqs[r["requestid"]] = r
            except (ValueError, KeyError):
                continue  # a torn write: the request is lost, the client sees it missing and asks again
        self._todo: queue.Queue[str] = queue.Queue()
        for rid, r in sorted(self._reqs.items(), key=lambda kv: kv[1]["created"]):
            if r["status"] in ("queued", "pinning"):
                self._todo.put(rid)
        for i in range(WORKERS):
            threading.Thread(target=self._work, name=f"pins-{i}", daemon=True).start()

    def _save(self, r: dict[str, Any]) -> None:
        path = self.dir / f"{r['requestid']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(r))
        os.replace(tmp, path)

    def _status(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"requestid": r["requestid"], "status": r["status"], "created": r["created"], "pin": r["pin"],
                "delegates": self.delegates, "info": r.get("info", {})}

    def add(self, pin: Pin) -> dict[str, Any]:
        try:
            CID.parse(pin.cid)
        except HearthError as e:
            raise PinApiError(400, "BAD_REQUEST", f"not a CID: {pin.cid!r} ({e})") from None
        rid = uuid.uuid4().hex
        r: dict[str, Any] = {"requestid": rid, "status": "queued", "created": _now(),
                             "pin": pin.model_dump(exclude_none=True), "info": {}}
        with self._lock:
            self._reqs[rid] = r
            self._save(r)
        self._todo.put(rid)
        return self._status(r)

    def get(self, rid: str) -> dict[str, Any]:
        with self._lock:
            r = self._reqs.get(rid)
            if r is None:
                raise PinApiError(404, "NOT_FOUND", f"no pin request {rid}")
            return self._status(r)

    def remove(self, rid: str) -> None:
        with self._lock:
            r = self._reqs.pop(rid, None)
            if r is None:
                raise PinApiError(404, "NOT_FOUND", f"no pin request {rid}")
            (self.dir / f"{rid}.json").unlink(missing_ok=True)
            still = any(o["pin"]["cid"] == r["pin"]["cid"] and o["status"] == "pinned" for o in self._reqs.values())
        if r["status"] == "pinned" and not still:
            self.store.unpin(CID.parse(r["pin"]["cid"]))

    def find(self, match: Callable[[dict[str, Any]], bool], limit: int) -> dict[str, Any]:
        with self._lock:
            hits = sorted((r for r in self._reqs.values() if match(r)), key=lambda r: r["created"], reverse=True)
            return {"count": len(hits), "results": [self._status(r) for r in hits[:limit]]}

    def _set(self, rid: str, status: str, info: dict[str, Any]) -> None:
        with self._lock:
            r = self._reqs.get(rid)
            if r is not None:  # removed meanwhile: nothing to record
                r["status"], r["info"] = status, info
                self._save(r)

    def _work(self) -> None:
        while True:
            rid = self._todo.get()
            with self._lock:
                r = self._reqs.get(rid)
                pin = dict(r["pin"]) if r is not None else None
            if pin is None:
                continue
            self._set(rid, "pinning", {})
            status, info = self._fetch_and_pin(pin)
            self._set(rid, status, info)

    def _fetch_and_pin(self, pin: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Fetch the DAG (verified) from the store or an origin, store it, pin it."""
        root = CID.parse(pin["cid"])
        errors: list[str] = []
        try:
            self.store.pin(root)  # all here already
            return "pinned", {"source": "local"}
        except HearthError as e:
            errors.append(f"local: {str(e).splitlines()[0]}")
        for where, open_source in origin_sources(pin):
            src = open_source()
            try:
                for cid, block in walk_blocks(src, root, verify=True, max_size=self.max_size, timeout=None):
                    self.store.put(cid, block)
                self.store.pin(root)
                return "pinned", {"source": where}
            except HearthError as e:
                errors.append(f"{where}: {str(e).splitlines()[0]}")
            finally:
                src.close()
        return "failed", {"errors": errors[-5:]}


def _filter(cid: str | None, name: str | None, match: str, status: str, before: str | None, after: str | None,
            meta: str | None) -> Callable[[dict[str, Any]], bool]:
    cids = {c for c in (cid or "").split(",") if c}
    statuses = {s for s in status.split(",") if s}
    if len(cids) > 10 or not statuses <= set(STATUSES):
        raise PinApiError(400, "BAD_REQUEST", "at most 10 CIDs, and statuses among " + ",".join(STATUSES))
    try:
        want_meta: dict[str, str] = json.loads(meta) if meta else {}
        assert isinstance(want_meta, dict)  # noqa: S101  (caught below: a 400)
    except (ValueError, AssertionError):
        raise PinApiError(400, "BAD_REQUEST", "meta must be a JSON object") from None
    ci = match in ("iexact", "ipartial")

    def name_ok(n: str | None) -> bool:
        if name is None:
            return True
        if n is None:
            return False
        a, b = (n.lower(), name.lower()) if ci else (n, name)
        return b in a if match.endswith("partial") else a == b

    def ok(r: dict[str, Any]) -> bool:
        p = r["pin"]
        return ((not cids or p["cid"] in cids) and r["status"] in statuses and name_ok(p.get("name"))
                and (before is None or r["created"] < before) and (after is None or r["created"] > after)
                and all((p.get("meta") or {}).get(k) == v for k, v in want_meta.items()))

    return ok


def add_pin_service(app: FastAPI, store: Blockstore, tokens: frozenset[str], delegate: str, max_size: int) -> None:
    """Serve the Pinning Service API on `app`, guarded by `tokens`, over `store`."""
    reqs = PinRequests(store, delegate, max_size)
    app.state.pins = reqs

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given or not any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens):
            raise PinApiError(401, "UNAUTHORIZED", "a valid access token is required (Authorization: Bearer ...)")

    auth = [Depends(authorized)]

    @app.exception_handler(PinApiError)
    def _pin_error(_: Request, exc: PinApiError) -> JSONResponse:
        return _error(exc.status, exc.reason, exc.details)

    default_validation = app.exception_handlers.get(RequestValidationError)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/pins"):
            return _error(400, "BAD_REQUEST", str(exc.errors()[:3]))
        if default_validation is None:  # FastAPI's own answer (422) for the other paths
            from fastapi.exception_handlers import request_validation_exception_handler
            return await request_validation_exception_handler(request, exc)
        return await default_validation(request, exc)  # type: ignore[no-any-return,misc]

    @app.post("/pins", status_code=202, dependencies=auth)
    def pins_add(pin: Pin) -> dict[str, Any]:
        return reqs.add(pin)

    @app.get("/pins", dependencies=auth)
    def pins_list(cid: str | None = None, name: str | None = None, match: str = "exact",
                  status: str = "pinned", before: str | None = None, after: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 10, meta: str | None = None) -> dict[str, Any]:
        if match not in ("exact", "iexact", "partial", "ipartial"):
            raise PinApiError(400, "BAD_REQUEST", f"unknown match {match!r}")
        return reqs.find(_filter(cid, name, match, status, before, after, meta), limit)

    @app.get("/pins/{requestid}", dependencies=auth)
    def pins_get(requestid: str) -> dict[str, Any]:
        return reqs.get(requestid)

    @app.post("/pins/{requestid}", status_code=202, dependencies=auth)
    def pins_replace(requestid: str, pin: Pin) -> dict[str, Any]:
        reqs.get(requestid)  # 404 before anything changes
        new = reqs.add(pin)
        reqs.remove(requestid)
        return new

    @app.delete("/pins/{requestid}", status_code=202, dependencies=auth)
    def pins_remove(requestid: str) -> Response:
        reqs.remove(requestid)
        return Response(status_code=202)

