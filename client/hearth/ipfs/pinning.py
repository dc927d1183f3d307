"""Remote pinning, so specs and results outlive the home node that added them.

Two kinds of remote, either or both:
  * a pinning service speaking the IPFS Pinning Service API (https://ipfs.github.io/pinning-services-api-spec/,
    implemented by Pinata, Filebase, 4EVERLAND and `hearth ipfs daemon --serve-pins`): POST /pins
    {cid, name, origins, meta} with a bearer token; the service fetches the DAG itself, from the
    `origins` given (multiaddrs where this node can be reached) or from the IPFS network;
  * a second Kubo node (or embedded daemon) of your own: the DAG is copied there block by block
    through its RPC API (every block verified on the way) and pinned.

Reading back: `cat_any` tries the local IPFS first and then the remotes' read paths (the pinning
service's gateway, the second Kubo node), verifying every block whichever answered, so a client
whose own IPFS lacks the content (or is down) still gets a verified result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from hearth.errors import IPFSError, VerificationError
from hearth.formats.cid import CID
from hearth.ipfs.fetch import BlockSource, fetch_bytes, walk_blocks
from hearth.ipfs.gateway import GatewayClient
from hearth.ipfs.kubo import KuboClient

FINAL = ("pinned", "failed")
ALL_STATUSES = "queued,pinning,pinned,failed"


@dataclass(frozen=True)
class PinStatus:
    """A pin request as the service reports it."""

    requestid: str
    status: str  # queued | pinning | pinned | failed
    cid: str
    name: str | None = None
    delegates: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Any) -> PinStatus:
        try:
            pin = d["pin"]
            return cls(str(d["requestid"]), str(d["status"]), str(pin["cid"]), pin.get("name"),
                       tuple(str(x) for x in d.get("delegates") or ()), dict(d.get("info") or {}))
        except (KeyError, TypeError, AttributeError) as e:
            raise IPFSError(f"pinning service sent a malformed pin status ({e!r}): {str(d)[:200]}") from None


class PinningService:
    """A client of the IPFS Pinning Service API at `endpoint` (the URL /pins hangs off)."""

    def __init__(self, endpoint: str, token: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> PinningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise IPFSError(f"pinning service {self.endpoint} not reachable: {e}") from e
        if resp.status_code == 401:
            raise IPFSError(f"pinning service {self.endpoint} refused the access token (401)",
                            hint="check HEARTH_PIN_SERVICE_TOKEN (node: pin_service_token)")
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                why = f"{err.get('reason')}: {err.get('details', '')}".rstrip(": ")
            except (ValueError, KeyError, TypeError):
                why = resp.text[:200]
            raise IPFSError(f"pinning service {self.endpoint} answered {resp.status_code} to {method} {path}: {why}")
        return resp.json() if resp.content else None

    def add(self, cid: CID | str, name: str | None = None, origins: Sequence[str] = (),
            meta: dict[str, str] | None = None) -> PinStatus:
        """Ask the service to pin `cid` (it fetches the DAG itself, from `origins` if it can)."""
        body: dict[str, Any] = {"cid": str(cid)}
        if name:
            body["name"] = name[:255]
        if origins:
            body["origins"] = list(origins)
        if meta:
            body["meta"] = meta
        return PinStatus.parse(self._call("POST", "/pins", json=body))

    def find(self, cid: CID | str, statuses: str = ALL_STATUSES) -> list[PinStatus]:
        """This account's pin requests for `cid` (every status by default; the API's default is pinned only)."""
        out = self._call("GET", "/pins", params={"cid": str(cid), "status": statuses, "limit": "100"})
        return [PinStatus.parse(r) for r in (out or {}).get("results", [])]

    def get(self, requestid: str) -> PinStatus:
        """One pin request."""
        return PinStatus.parse(self._call("GET", f"/pins/{requestid}"))

    def remove(self, requestid: str) -> None:
        """Drop a pin request (the service may then drop the content)."""
        self._call("DELETE", f"/pins/{requestid}")

    def ensure(self, cid: CID | str, name: str | None = None, origins: Sequence[str] = (),
               meta: dict[str, str] | None = None) -> PinStatus:
        """The existing request for `cid` that has not failed, or a new one: asking again (a
        retry, a restart) does not pile up requests."""
        for st in self.find(cid, "queued,pinning,pinned"):
            return st
        return self.add(cid, name, origins, meta)

    def wait(self, requestid: str, timeout: float, poll: float = 0.5) -> PinStatus:
        """Poll a request until it is pinned or failed, or `timeout` seconds pass (its status then)."""
        deadline = time.monotonic() + timeout
        st = self.get(requestid)
        while st.status not in FINAL and time.monotonic() < deadline:
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
            st = self.get(requestid)
        return st


class KuboMirror:
    """A second Kubo RPC API (or embedded daemon) that keeps copies: blocks are copied there from
    a local source, verified on the way, then pinned recursively."""

    def __init__(self, api_url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.api_url = api_url
        self.kubo = KuboClient(api_url, timeout=timeout, token=token)

    def close(self) -> None:
        self.kubo.close()

    def copy(self, source: BlockSource, cid: CID | str, max_size: int | None = None) -> int:
        """Copy the DAG of `cid` from `source` and pin it there; the number of blocks copied."""
        root = cid if isinstance(cid, CID) else CID.parse(cid)
        n = 0
        for bcid, block in walk_blocks(source, root, verify=True, max_size=max_size, timeout=None):
            self.kubo.put_block(block, bcid.codec)
            n += 1
        self.kubo.pin(root)
        return n


class RemotePins:
    """The remotes configured for an account (a pinning service, a second Kubo node, or both),
    and the read paths back to what they hold."""

    def __init__(self, service: PinningService | None = None, mirror: KuboMirror | None = None,
                 gateway: str | None = None, origins: Sequence[str] = ()) -> None:
        self.service, self.mirror, self.origins = service, mirror, tuple(origins)
        self.gateway = gateway or (service.endpoint if service is not None else None)
        self._gateway_client = GatewayClient(self.gateway) if self.gateway else None

    @classmethod
    def from_config(cls, service_url: str | None, token: str | None, gateway: str | None = None,
                    kubo_api: str | None = None, kubo_token: str | None = None,
                    origin: str | None = None) -> RemotePins | None:
        """From settings; None when nothing is configured."""
        if service_url and not token:
            raise IPFSError(f"pinning service {service_url} configured without a token",
                            hint="set HEARTH_PIN_SERVICE_TOKEN (node: pin_service_token)")
        if not service_url and not kubo_api:
            return None
        service = PinningService(service_url, token or "") if service_url else None
        mirror = KuboMirror(kubo_api, kubo_token) if kubo_api else None
        return cls(service, mirror, gateway, [origin] if origin else ())

    def close(self) -> None:
        for c in (self.service, self.mirror, self._gateway_client):
            if c is not None:
                c.close()

    def __enter__(self) -> RemotePins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pin(self, source: BlockSource, cid: CID | str, name: str, wait: float = 0.0,
            meta: dict[str, str] | None = None) -> dict[str, str]:
        """Pin `cid` on every remote; waits up to `wait` seconds for the service to report it
        pinned. What each remote says ("pinned", "queued", "failed: why", ...); never raises
        for a remote's failure (the caller carries on: a remote pin is for later readers)."""
        out: dict[str, str] = {}
        if self.mirror is not None:
            try:
                self.mirror.copy(source, cid)
                out["kubo"] = "pinned"
            except Exception as e:  # noqa: BLE001  (a remote's failure is reported, not raised)
                out["kubo"] = f"failed: {_first_line(e)}"
        if self.service is not None:
            try:
                st = self.service.ensure(cid, name, self.origins, meta)
                if wait > 0 and st.status not in FINAL:
                    st = self.service.wait(st.requestid, wait)
                out["service"] = st.status if st.status != "failed" else f"failed: {st.info}"
            except Exception as e:  # noqa: BLE001
                out["service"] = f"failed: {_first_line(e)}"
        return out

    def readers(self) -> list[BlockSource]:
        """Where pinned content can be read back from (verified like any source)."""
        out: list[BlockSource] = []
        if self._gateway_client is not None:
            out.append(self._gateway_client)
        if self.mirror is not None:
            out.append(self.mirror.kubo)
        return out


def cat_any(sources: Sequence[BlockSource], cid: CID | str, max_size: int | None = None,
            timeout: float | None = None) -> bytes:
    """A file from the first source that delivers it whole and verified. A source that is down,
    lacks the content or serves bad blocks is passed over; when none delivers, the error of the
    first that served bad blocks is raised (tampering is not hidden behind 'not found'), else the
    first source's error."""
    errors: list[IPFSError] = []
    for src in sources:
        try:
            return fetch_bytes(src, cid, max_size, timeout)
        except IPFSError as e:
            errors.append(e)
    if not errors:
        raise IPFSError(f"no IPFS source to read {cid} from")
    bad = [e for e in errors if isinstance(e, VerificationError)]
    if bad:
        raise bad[0]
    if len(errors) == 1:
        raise errors[0]
    raise IPFSError(f"{cid} could not be read from any of {len(errors)} sources: "
                    + "; ".join(_first_line(e) for e in errors), hint=errors[0].hint)


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:300]
