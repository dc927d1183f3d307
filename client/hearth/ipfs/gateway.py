"""Trustless HTTP gateway reads, verified like every other fetch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from hearth.errors import IPFSError
from hearth.formats.cid import CID
from hearth.ipfs.fetch import FETCH_TIMEOUT, MAX_BLOCK, fetch_bytes

_ACCEPT = {
    "raw": "application/vnd.ipld.raw",
    # depth-first with repeats (IPIP-412), the order iter_file walks in; a gateway that ignores
    # the parameters still sends a depth-first CAR, which iter_file also reads
    "car": "application/vnd.ipld.car; version=1; order=dfs; dups=y",
}


class GatewayClient:
    """Trustless HTTP gateway reads: `?format=raw` for a block, `?format=car` for a DAG."""

    def __init__(self, url: str, timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _get(self, cid: CID, fmt: str, timeout: float | None = None) -> Iterator[httpx.Response]:
        """The response, its body read as it arrives (the caller bounds how much)."""
        params = {"format": fmt}
        t = self.timeout if timeout is None else min(timeout, self.timeout)
        try:
            with self._http.stream("GET", f"{self.url}/ipfs/{cid}", params=params, headers={"Accept": _ACCEPT[fmt]},
                                   timeout=t) as resp:
                if resp.status_code != 200:
                    raise IPFSError(f"gateway {self.url} answered {resp.status_code} for {cid}")
                yield resp
        except httpx.HTTPError as e:
            raise IPFSError(f"gateway {self.url} not reachable: {e}") from e

    def get_block(self, cid: CID) -> bytes:
        """One block by CID (verify before use), read no further than MAX_BLOCK."""
        with self._get(cid, "raw") as resp:
            buf = bytearray()
            for piece in resp.iter_bytes():
                buf += piece
                if len(buf) > MAX_BLOCK:
                    raise IPFSError(f"gateway {self.url} sent over {MAX_BLOCK} bytes for block {cid}")
            return bytes(buf)

    def car_stream(self, root: CID, timeout: float | None = None) -> Iterator[bytes]:
        """A DAG as a CAR, as it arrives (iter_file verifies it block by block)."""
        with self._get(root, "car", timeout) as resp:
            yield from resp.iter_bytes()

    def fetch_car(self, cid: CID | str, max_size: int | None = None, timeout: float = FETCH_TIMEOUT) -> bytes:
        """A file from one CAR response, every block verified, in bounded work and time."""
        return fetch_bytes(self, cid, max_size, timeout)
