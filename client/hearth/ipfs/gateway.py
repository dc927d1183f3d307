"""Trustless HTTP gateway reads, verified like every other fetch."""

from __future__ import annotations

import httpx

from hearth.errors import IPFSError
from hearth.formats.car import read_car
from hearth.formats.cid import CID
from hearth.ipfs.fetch import fetch_bytes


class GatewayClient:
    """Trustless HTTP gateway reads: `?format=raw` for a block, `?format=car` for a DAG."""

    def __init__(self, url: str, timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _get(self, cid: CID, fmt: str) -> httpx.Response:
        accept = "application/vnd.ipld.raw" if fmt == "raw" else "application/vnd.ipld.car"
        try:
            resp = self._http.get(f"{self.url}/ipfs/{cid}", params={"format": fmt}, headers={"Accept": accept})
        except httpx.HTTPError as e:
            raise IPFSError(f"gateway {self.url} not reachable: {e}") from e
        if resp.status_code != 200:
            raise IPFSError(f"gateway {self.url} answered {resp.status_code} for {cid}")
        return resp

    def get_block(self, cid: CID) -> bytes:
        """One block by CID (verify before use)."""
        return self._get(cid, "raw").content

    def fetch_car(self, cid: CID | str, max_size: int | None = None) -> bytes:
        """A file from one CAR response, every block verified."""
        root = cid if isinstance(cid, CID) else CID.parse(cid)
        blocks = read_car(self._get(root, "car").content)
        return fetch_bytes(_DictSource(blocks), root, max_size)


class _DictSource:
    def __init__(self, blocks: dict[bytes, bytes]) -> None:
        self.blocks = blocks

    def get_block(self, cid: CID) -> bytes:
        try:
            return self.blocks[cid.digest]
        except KeyError:
            raise IPFSError(f"block {cid} missing from the CAR") from None
