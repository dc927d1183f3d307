"""IPFS access: a Kubo RPC client (httpx), a trustless-gateway client, and verified fetch.

Why not ipfshttpclient: its `connect()` raises VersionMismatch for every Kubo since 0.8
(2021) and it is unmaintained; the Kubo RPC API is plain HTTP POSTs, spoken here directly.

Nothing fetched is trusted: every block is hashed against its CID before a byte of it is
used, and files are rebuilt from their DAG block by block.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import httpx

from client.cid import CHUNK_SIZE, CID, DAG_PB, RAW, FileDAG, decode_pb_node, read_varint, unixfs_data
from client.errors import IPFSError, VerificationError

Progress = Callable[[int, int], None]  # (bytes done, bytes total or 0 if unknown)
MAX_BLOCK = 2 * 1024 * 1024  # Kubo refuses blocks over 2 MiB too
DEFAULT_API = "http://127.0.0.1:5001"


class BlockSource(Protocol):
    """Anything that returns a block's bytes by CID (not yet verified)."""

    def get_block(self, cid: CID) -> bytes: ...


def verify_block(cid: CID, block: bytes) -> bytes:
    """Return `block` if it hashes to `cid`; VerificationError otherwise."""
    if not cid.matches(block):
        raise VerificationError(
            f"block {cid} failed verification: its bytes hash to "
            f"{hashlib.sha256(block).hexdigest()[:16]}..., not to the CID",
            hint="the IPFS node or gateway served corrupted or tampered content; nothing from it was used",
        )
    return block


def iter_file(source: BlockSource, root: CID, max_size: int | None = None) -> Iterator[bytes]:
    """Yield a UnixFS file's bytes in order, verifying every block before using it."""
    total = 0
    stack = [root]
    while stack:
        cid = stack.pop()
        block = verify_block(cid, source.get_block(cid))
        if cid.codec == RAW:
            data = block
        else:
            links, pb_data = decode_pb_node(block)
            typ, data, filesize = unixfs_data(pb_data)
            if typ not in (0, 2):
                raise IPFSError(f"{cid} is not a file (UnixFS type {typ})")
            if cid == root and max_size is not None and filesize > max_size:
                raise IPFSError(f"{root} is {filesize} bytes, over the limit of {max_size}")
            for link_cid, _ in reversed(links):
                stack.append(CID.parse(link_cid))
        total += len(data)
        if max_size is not None and total > max_size:
            raise IPFSError(f"{root} is larger than the limit of {max_size} bytes")
        if data:
            yield data


def fetch_bytes(source: BlockSource, cid: CID | str, max_size: int | None = None) -> bytes:
    """A whole file, verified (for specs and results; models go through fetch_to_file)."""
    root = cid if isinstance(cid, CID) else CID.parse(cid)
    return b"".join(iter_file(source, root, max_size))


def fetch_to_file(
    source: BlockSource, cid: CID | str, dest: Path, progress: Progress | None = None, total: int = 0
) -> int:
    """Stream a verified file to `dest` (written to a temp name, renamed when complete)."""
    root = cid if isinstance(cid, CID) else CID.parse(cid)
    tmp = dest.with_name(dest.name + ".part")
    done = 0
    with open(tmp, "wb") as f:
        for piece in iter_file(source, root):
            f.write(piece)
            done += len(piece)
            if progress:
                progress(done, total)
    tmp.replace(dest)
    return done


def _kubo_error(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("Message", resp.text))
    except (json.JSONDecodeError, ValueError):
        return resp.text[:200]


class KuboClient:
    """The subset of Kubo's RPC API Hearth uses, over httpx; every call is a POST."""

    def __init__(self, api_url: str = DEFAULT_API, timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(base_url=self.api_url + "/api/v0", timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, params: dict[str, str] | None = None, **kw: object) -> httpx.Response:
        try:
            resp = self._http.post(path, params=params, **kw)  # type: ignore[arg-type]
        except httpx.ConnectError as e:
            raise IPFSError(
                f"IPFS API at {self.api_url} is not reachable ({e})",
                hint="start one: hearth ipfs daemon (or pass --ipfs-api URL of a Kubo node)",
            ) from e
        except httpx.TimeoutException as e:
            raise IPFSError(f"IPFS API at {self.api_url} timed out on {path}") from e
        except httpx.HTTPError as e:
            raise IPFSError(f"IPFS API at {self.api_url} failed on {path}: {e}") from e
        if resp.status_code != 200:
            raise IPFSError(f"IPFS API {path} refused ({resp.status_code}): {_kubo_error(resp)}")
        return resp

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
        """A block's raw bytes (verify before use: see iter_file)."""
        resp = self._post("/block/get", {"arg": str(cid)})
        if len(resp.content) > MAX_BLOCK:
            raise IPFSError(f"block {cid} is {len(resp.content)} bytes, over the {MAX_BLOCK}-byte limit")
        return resp.content

    def put_block(self, block: bytes, codec: int = RAW) -> CID:
        """Store one block; returns its CIDv1."""
        params = {"cid-codec": "raw" if codec == RAW else "dag-pb", "mhtype": "sha2-256", "pin": "false"}
        resp = self._post("/block/put", params, files={"file": ("block", block)})
        return CID.parse(resp.json()["Key"])

    def pin(self, cid: CID) -> None:
        """Pin recursively."""
        self._post("/pin/add", {"arg": str(cid), "recursive": "true"})

    def cat(self, cid: CID | str, max_size: int | None = None) -> bytes:
        """A file's bytes, rebuilt from verified blocks (never Kubo's unverified /cat)."""
        return fetch_bytes(self, cid, max_size)


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


def read_car(data: bytes) -> dict[bytes, bytes]:
    """Parse a CARv1 into {sha256 digest: block}; blocks are verified later by their CID."""
    hlen, pos = read_varint(data, 0)
    pos += hlen
    blocks: dict[bytes, bytes] = {}
    while pos < len(data):
        ln, pos = read_varint(data, pos)
        section = data[pos:pos + ln]
        pos += ln
        if section[:2] == b"\x12\x20":
            cid_len = 34
        else:
            _, p = read_varint(section, 0)
            _, p = read_varint(section, p)
            _, p = read_varint(section, p)
            mh_len, p = read_varint(section, p)
            cid_len = p + mh_len
        cid = CID.parse(section[:cid_len])
        blocks[cid.digest] = section[cid_len:]
    return blocks


def write_car(root: CID, blocks: Iterator[tuple[CID, bytes]]) -> Iterator[bytes]:
    """Serialize a CARv1 (header with one root, then each block)."""
    from client.cid import varint

    root_b = root.to_bytes()
    # dag-cbor header {"roots": [CID], "version": 1}; a CID in dag-cbor is tag 42 over 0x00 + bytes
    cid_payload = b"\x00" + root_b
    header = (
        b"\xa2" + b"\x65roots" + b"\x81" + b"\xd8\x2a" + _cbor_bytes_head(len(cid_payload)) + cid_payload
        + b"\x67version" + b"\x01"
    )
    yield varint(len(header)) + header
    for cid, block in blocks:
        cb = cid.to_bytes()
        yield varint(len(cb) + len(block)) + cb + block


def _cbor_bytes_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x40 | n])
    if n < 256:
        return bytes([0x58, n])
    return bytes([0x59]) + n.to_bytes(2, "big")


def walk_blocks(source: BlockSource, root: CID, verify: bool = True) -> Iterator[tuple[CID, bytes]]:
    """Every block of a DAG, depth-first, verified unless a server is only relaying its store
    (the receiving client verifies every block itself)."""
    stack = [root]
    while stack:
        cid = stack.pop()
        block = source.get_block(cid)
        if verify:
            verify_block(cid, block)
        yield cid, block
        if cid.codec == DAG_PB:
            links, _ = decode_pb_node(block)
            stack.extend(CID.parse(c) for c, _ in reversed(links))
