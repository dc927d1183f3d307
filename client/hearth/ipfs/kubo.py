"""A Kubo RPC API client (httpx).

Why not ipfshttpclient: its `connect()` raises VersionMismatch for every Kubo since 0.8
(2021) and it is unmaintained; the Kubo RPC API is plain HTTP POSTs, spoken here directly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import httpx

from hearth.errors import IPFSError, VerificationError
from hearth.formats.cid import CHUNK_SIZE, CID, RAW, FileDAG
from hearth.ipfs.fetch import FETCH_TIMEOUT, MAX_BLOCK, Progress, fetch_bytes
from hearth.settings import DEFAULT_IPFS_API


def _kubo_error(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("Message", resp.text))
    except (json.JSONDecodeError, ValueError):
        return resp.text[:200]


class KuboClient:
    """The subset of Kubo's RPC API Hearth uses, over httpx; every call is a POST."""

    def __init__(self, api_url: str = DEFAULT_IPFS_API, timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
                 token: str | None = None):
        """`token`: sent as a bearer token (Kubo's API.Authorizations), for a remote RPC API."""
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(base_url=self.api_url + "/api/v0", timeout=timeout, transport=transport, headers=headers)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _http_error(self, path: str, e: httpx.HTTPError) -> IPFSError:
        if isinstance(e, httpx.ConnectError):
            return IPFSError(
                f"IPFS API at {self.api_url} is not reachable ({e})",
                hint="start one: hearth ipfs daemon (or pass --ipfs-api URL of a Kubo node)",
            )
        if isinstance(e, httpx.TimeoutException):
            return IPFSError(f"IPFS API at {self.api_url} timed out on {path}")
        return IPFSError(f"IPFS API at {self.api_url} failed on {path}: {e}")

    def _post(self, path: str, params: dict[str, str] | None = None, **kw: object) -> httpx.Response:
        try:
            resp = self._http.post(path, params=params, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as e:
            raise self._http_error(path, e) from e
        if resp.status_code != 200:
            raise IPFSError(f"IPFS API {path} refused ({resp.status_code}): {_kubo_error(resp)}")
        return resp

    @contextmanager
    def _stream(self, path: str, params: dict[str, str], timeout: float | None = None) -> Iterator[httpx.Response]:
        """A POST whose body is read as it arrives (never buffered whole: the caller bounds it)."""
        t = self.timeout if timeout is None else min(timeout, self.timeout)
        try:
            with self._http.stream("POST", path, params=params, timeout=t) as resp:
                if resp.status_code != 200:
                    body = b""
                    for piece in resp.iter_bytes():  # an error's first 64 KiB says enough
                        body += piece
                        if len(body) > 1 << 16:
                            break
                    raise IPFSError(f"IPFS API {path} refused ({resp.status_code}): "
                                    f"{_kubo_error(httpx.Response(resp.status_code, content=body))}")
                yield resp
        except httpx.HTTPError as e:
            raise self._http_error(path, e) from e

    def version(self) -> str:
        """The daemon's version string."""
        return str(self._post("/version").json()["Version"])

    def add(
        self,
        data: bytes | BinaryIO,
        cid_version: int = 0,
        pin: bool = True,
        only_hash: bool = False,
        name: str = "file",
        progress: Progress | None = None,
        total: int = 0,
    ) -> CID:
        """Add a file (streamed, with optional progress); checks the daemon's CID against a
        local computation of the same bytes."""
        params = {
            # Every parameter explicit: Kubo's implicit defaults may change.
            "cid-version": str(cid_version),
            "raw-leaves": "true" if cid_version == 1 else "false",
            "chunker": f"size-{CHUNK_SIZE}",
            "hash": "sha2-256",
            "pin": "true" if pin else "false",
            "only-hash": "true" if only_hash else "false",
            "trickle": "false",
            "wrap-with-directory": "false",
            "progress": "false",
        }
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        local = FileDAG(cid_version)
        hashing = _HashingReader(stream, local, progress, total)
        resp = self._post("/add", params, files={"file": (name, hashing, "application/octet-stream")})
        lines = [json.loads(x) for x in resp.text.splitlines() if x.strip()]
        if not lines or "Hash" not in lines[-1]:
            raise IPFSError(f"unexpected answer from {self.api_url}/api/v0/add: {resp.text[:200]}")
        remote = CID.parse(lines[-1]["Hash"])
        mine = local.finish()
        if remote.version != mine.version or remote.digest != mine.digest:
            raise VerificationError(f"IPFS API returned CID {remote} but the bytes sent have CID {mine}")
        return mine

    def add_file(
        self, path: Path, cid_version: int = 0, pin: bool = True, only_hash: bool = False,
        progress: Progress | None = None,
    ) -> CID:
        """Add a file from disk, streamed."""
        with open(path, "rb") as f:
            return self.add(f, cid_version, pin, only_hash, name=path.name, progress=progress,
                            total=path.stat().st_size)

    def get_block(self, cid: CID) -> bytes:
        """A block's raw bytes (verify before use: see iter_file), read no further than MAX_BLOCK."""
        with self._stream("/block/get", {"arg": str(cid)}) as resp:
            buf = bytearray()
            for piece in resp.iter_bytes():
                buf += piece
                if len(buf) > MAX_BLOCK:
                    raise IPFSError(f"block {cid} is over the {MAX_BLOCK}-byte limit")
            return bytes(buf)

    def car_stream(self, root: CID, timeout: float | None = None) -> Iterator[bytes]:
        """A DAG as a CAR (Kubo's `dag export`: depth-first, each block once), as it arrives;
        iter_file verifies it block by block. `timeout` caps each read (the fetch's time left)."""
        with self._stream("/dag/export", {"arg": str(root)}, timeout) as resp:
            yield from resp.iter_bytes()

    def put_block(self, block: bytes, codec: int = RAW) -> CID:
        """Store one block; returns its CIDv1."""
        params = {"cid-codec": "raw" if codec == RAW else "dag-pb", "mhtype": "sha2-256", "pin": "false"}
        resp = self._post("/block/put", params, files={"file": ("block", block)})
        return CID.parse(resp.json()["Key"])

    def pin(self, cid: CID) -> None:
        """Pin recursively."""
        self._post("/pin/add", {"arg": str(cid), "recursive": "true"})

    def cat(self, cid: CID | str, max_size: int | None = None, timeout: float = FETCH_TIMEOUT) -> bytes:
        """A file's bytes, rebuilt from verified blocks (never Kubo's unverified /cat), in bounded
        work and time (see hearth.ipfs.fetch)."""
        return fetch_bytes(self, cid, max_size, timeout)


class _HashingReader:
    """File-like wrapper that feeds what httpx reads into a FileDAG on the way out."""

    def __init__(self, inner: BinaryIO, dag: FileDAG, progress: Progress | None = None, total: int = 0) -> None:
        self.inner = inner
        self.dag = dag
        self.progress = progress
        self.total = total

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n if n and n > 0 else 1 << 20)
        if data:
            self.dag.update(data)
            if self.progress:
                self.progress(self.dag.size, self.total)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk
