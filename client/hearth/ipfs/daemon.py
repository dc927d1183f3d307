"""The embedded IPFS daemon: an on-disk blockstore behind the Kubo RPC subset Hearth uses and
the trustless gateway paths, for machines with no Kubo node. Binds to localhost by default.

Blocks live in `<data>/blocks/<2 hex>/<sha256 hex>` (keyed by multihash, like Kubo's flatfs),
written to a unique temporary name and renamed into place, so the same content added twice is
stored once and concurrent adds cannot corrupt each other.

Localhost is not a trust boundary: any web page the user visits can POST to it. So, as Kubo does,
the RPC API (/api/v0) answers 403 to browser requests from other origins (an Origin or Referer
header that is not the daemon's own address, or `Sec-Fetch-Site: cross-site`); the read-only
gateway paths stay open, as gateways are. Request bodies are bounded (an add by --max-add, a block
by 2 MiB, anything else by 64 KiB) before they are parsed, chunk sizes as Kubo bounds them, and
the blockstore by --quota and by a reserve of free disk space: writes past them answer an error.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth import __version__
from hearth.errors import HearthError, InvalidCID
from hearth.formats.car import write_car
from hearth.formats.cid import CID, DAG_PB, RAW, FileDAG
from hearth.ipfs.fetch import MAX_BLOCK, iter_file, walk_blocks

READ_SIZE = 1 << 20
MAX_CHUNK = 1 << 20  # Kubo's limit on size-N chunkers
DEFAULT_MAX_ADD = 16 << 30  # bigger than any model a home node runs; the upload is spooled to disk first
KEEP_FREE = 512 << 20  # never fill the disk: writes stop this much short of it
SMALL_BODY = 64 << 10  # requests other than add and block/put carry no body worth more


class BlockNotFound(HearthError):
    """A block this store does not have."""


class StorageFull(HearthError):
    """A write refused: the blockstore's quota or the disk's reserve would be exceeded."""


def _disk_cost(n: int) -> int:
    """What a block of n bytes is counted as: whole 4 KiB filesystem blocks and one more for the
    file itself, so a store of tiny chunks (size-1 is a valid chunker) cannot slip past a quota."""
    return (n // 4096 + 1) * 4096


class Blockstore:
    """Blocks on disk keyed by their sha256 digest, within an optional quota (bytes on disk)."""

    def __init__(self, root: Path, quota: int | None = None, keep_free: int = KEEP_FREE) -> None:
        self.root = root
        self.quota, self.keep_free = quota, keep_free
        (root / "blocks").mkdir(parents=True, exist_ok=True)
        (root / "pins").mkdir(parents=True, exist_ok=True)
        self._pin_lock = threading.Lock()
        self._use_lock = threading.Lock()
        self.used = self._scan() if quota is not None else 0

    def _scan(self) -> int:
        total = 0
        for sub in os.scandir(self.root / "blocks"):
            if sub.is_dir():
                total += sum(_disk_cost(e.stat().st_size) for e in os.scandir(sub.path) if e.is_file())
        return total

    def _path(self, digest: bytes) -> Path:
        h = digest.hex()
        return self.root / "blocks" / h[:2] / h

    def has(self, cid: CID) -> bool:
        """Whether the block is stored."""
        return self._path(cid.digest).exists()

    def _reserve(self, cost: int) -> None:
        with self._use_lock:
            if self.quota is not None and self.used + cost > self.quota:
                raise StorageFull(f"blockstore quota of {self.quota} bytes reached ({self.used} used); nothing more is stored",
                                  hint="raise it with hearth ipfs daemon --quota, or remove unneeded content")
            if shutil.disk_usage(self.root).free - cost < self.keep_free:
                raise StorageFull(f"the disk holding {self.root} is nearly full; nothing more is stored")
            self.used += cost

    def put(self, cid: CID, block: bytes) -> None:
        """Store a block (no-op if present); StorageFull past the quota or the disk's reserve."""
        path = self._path(cid.digest)
        if path.exists():
            return
        cost = _disk_cost(len(block))
        self._reserve(cost)
        tmp, stored = None, False
        try:
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(block)
            if not path.exists():  # else a concurrent add stored it first: count it once
                os.replace(tmp, path)
                stored = True
        except OSError as e:
            raise StorageFull(f"could not store block {cid}: {e}") from e
        finally:
            if not stored:
                with self._use_lock:
                    self.used -= cost
                if tmp is not None and os.path.exists(tmp):
                    os.unlink(tmp)

    def get_block(self, cid: CID) -> bytes:
        """A stored block's bytes."""
        try:
            return self._path(cid.digest).read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"block was not found locally (offline): {cid}") from None

    def pin(self, cid: CID) -> None:
        """Record a recursive pin (all blocks must be present; the DAG is walked within bounds)."""
        for _ in walk_blocks(self, cid, min_chunk=1):
            pass
        with self._pin_lock:
            (self.root / "pins" / str(cid)).touch()

    def unpin(self, cid: CID) -> None:
        """Drop a pin record (the blocks stay until removed otherwise)."""
        with self._pin_lock:
            (self.root / "pins" / str(cid)).unlink(missing_ok=True)

    def pins(self) -> list[str]:
        """Pinned CIDs."""
        return sorted(p.name for p in (self.root / "pins").iterdir())


def _batched(pieces: Iterator[bytes], size: int = READ_SIZE) -> Iterator[bytes]:
    """`pieces` joined into runs of at least `size` bytes (the last may be shorter)."""
    run: list[bytes] = []
    n = 0
    for piece in pieces:
        run.append(piece)
        n += len(piece)
        if n >= size:
            yield b"".join(run)
            run, n = [], 0
    if run:
        yield b"".join(run)


def _err(message: str, status: int = 500) -> JSONResponse:
    # Kubo's RPC error shape
    return JSONResponse({"Message": message, "Code": 0, "Type": "error"}, status_code=status)


def _bool(v: str | None, default: bool) -> bool:
    return default if v is None else v.lower() in ("1", "true", "yes")


def parse_size(text: str) -> int:
    """'16G', '512MiB', '1.5T', '1000000' -> bytes (binary units); ValueError otherwise."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1024 ** ("KMGT".index(t[-1]) + 1) if t and t[-1] in "KMGT" else 1
    value = float(t[:-1] if scale > 1 else t)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"not a size: {text!r}")
    return int(value * scale)


class _Guard:
    """ASGI middleware in front of the RPC API: refuses cross-origin browser requests (403) and
    bodies over the path's limit (413, before they are spooled or parsed)."""

    def __init__(self, app: ASGIApp, origins: frozenset[str], max_add: int) -> None:
        self.app, self.origins, self.max_add = app, origins, max_add

    def _refusal(self, headers: dict[str, str]) -> str | None:
        origin = headers.get("origin")
        if origin is None and "referer" in headers:
            parts = urlsplit(headers["referer"])
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin is not None and origin not in self.origins:
            return f"cross-origin request from {origin} refused (the IPFS RPC API only answers its own origin)"
        if headers.get("sec-fetch-site") == "cross-site":
            return "cross-site request refused (the IPFS RPC API only answers its own origin)"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the Pinning Service API (/pins) is guarded by its token, not by origin; its bodies are bounded too
        if scope["type"] != "http" or not scope["path"].startswith(("/api/", "/pins")):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        why = self._refusal(headers) if scope["path"].startswith("/api/") else None
        if why is not None:
            await _err(why, 403)(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        limit = {"/api/v0/add": self.max_add + SMALL_BODY, "/api/v0/block/put": MAX_BLOCK + SMALL_BODY}.get(path, SMALL_BODY)
        too_big = f"request body over {limit} bytes refused"
        if path == "/api/v0/add":
            too_big += " (hearth ipfs daemon --max-add)"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _err(too_big, 413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, too_big)  # FastAPI passes it through body parsing to _http_error
            return message

        await self.app(scope, counted, send)


def create_app(data_dir: Path, host: str = "127.0.0.1", port: int = 5001, quota: int | None = None,
               max_add: int = DEFAULT_MAX_ADD, allow_origins: tuple[str, ...] = (),
               pin_tokens: frozenset[str] = frozenset()) -> FastAPI:
    """The daemon's app over a blockstore in `data_dir`; `host` and `port` are where it is served
    (its own origin), `allow_origins` further browser origins its RPC API answers; with
    `pin_tokens`, it also serves the IPFS Pinning Service API to their holders (hearth.ipfs.pinsvc)."""
    app = FastAPI(title="Hearth embedded IPFS daemon", version=__version__)
    store = Blockstore(data_dir, quota)
    app.state.store = store
    own = {f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]", host)}
    app.add_middleware(_Guard, origins=frozenset(own | set(allow_origins)), max_add=max_add)  # type: ignore[arg-type]

    @app.exception_handler(HearthError)
    def _hearth_error(_: Request, exc: HearthError) -> JSONResponse:
        return _err(str(exc), 507 if isinstance(exc, StorageFull) else 500)

    @app.exception_handler(HTTPException)
    def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _err(str(exc.detail), exc.status_code)

    @app.post("/api/v0/version")
    def version() -> dict[str, str]:
        return {"Version": f"hearth-{__version__}", "Commit": "", "Repo": "hearth", "System": "python"}

    @app.post("/api/v0/id")
    def ident() -> dict[str, object]:
        return {"ID": "hearth-embedded", "Addresses": [], "AgentVersion": f"hearth/{__version__}"}

    @app.post("/api/v0/add")
    def add(
        file: Annotated[UploadFile, File()],
        cid_version: Annotated[int, Query(alias="cid-version")] = 0,
        raw_leaves: Annotated[str | None, Query(alias="raw-leaves")] = None,
        chunker: str = "size-262144",
        hash_: Annotated[str, Query(alias="hash")] = "sha2-256",
        pin: str = "true",
        only_hash: Annotated[str, Query(alias="only-hash")] = "false",
        trickle: str = "false",
    ) -> Response:
        if hash_ != "sha2-256":
            return _err(f"unsupported hash {hash_}: this daemon speaks sha2-256", 400)
        if not chunker.startswith("size-") or not chunker[5:].isdigit():
            return _err(f"unsupported chunker {chunker}: use size-N", 400)
        chunk = int(chunker[5:])
        if not 1 <= chunk <= MAX_CHUNK:  # size-0 would never advance; Kubo caps chunks at 1 MiB
            return _err(f"chunker size must be between 1 and {MAX_CHUNK} bytes, not {chunk}", 400)
        if _bool(trickle, False):
            return _err("trickle layout is not supported: use the balanced default", 400)
        if cid_version not in (0, 1):
            return _err(f"unknown CID version {cid_version}", 400)
        rl = None if raw_leaves is None else _bool(raw_leaves, False)
        if rl and cid_version == 0:
            cid_version = 1  # Kubo upgrades to v1 when raw leaves are asked for
        hashing_only = _bool(only_hash, False)
        dag = FileDAG(cid_version, None if hashing_only else store.put, chunk, rl)
        src = file.file
        while piece := src.read(READ_SIZE):
            dag.update(piece)
            if dag.size > max_add:
                return _err(f"add is limited to {max_add} bytes (hearth ipfs daemon --max-add)", 413)
        root = dag.finish()
        if _bool(pin, True) and not hashing_only:
            store.pin(root)
        line = {"Name": file.filename or str(root), "Hash": str(root), "Size": str(dag.size)}
        return Response(json.dumps(line) + "\n", media_type="application/json")

    def _arg(arg: str) -> CID:
        try:
            return CID.parse(arg)
        except InvalidCID as e:
            raise HearthError(f"invalid path {arg!r}: {e}") from e

    @app.post("/api/v0/block/get")
    def block_get(arg: str) -> Response:
        cid = _arg(arg)
        return Response(store.get_block(cid), media_type="application/octet-stream")

    @app.post("/api/v0/block/stat")
    def block_stat(arg: str) -> dict[str, object]:
        cid = _arg(arg)
        return {"Key": str(cid), "Size": len(store.get_block(cid))}

    @app.post("/api/v0/block/put")
    def block_put(
        file: Annotated[UploadFile, File()],
        cid_codec: Annotated[str, Query(alias="cid-codec")] = "raw",
        mhtype: str = "sha2-256",
    ) -> Response:
        if mhtype != "sha2-256":
            return _err(f"unsupported mhtype {mhtype}", 400)
        codec = {"raw": RAW, "dag-pb": DAG_PB}.get(cid_codec)
        if codec is None:
            return _err(f"unsupported cid-codec {cid_codec}", 400)
        block = file.file.read(MAX_BLOCK + 1)
        if len(block) > MAX_BLOCK:
            return _err("produced block is over 2MiB: big blocks can't be exchanged with other peers", 400)
        cid = CID.for_block(block, codec, 1)
        store.put(cid, block)
        return JSONResponse({"Key": str(cid), "Size": len(block)})

    @app.post("/api/v0/pin/add")
    def pin_add(arg: str) -> dict[str, list[str]]:
        cid = _arg(arg)
        store.pin(cid)
        return {"Pins": [str(cid)]}

    @app.post("/api/v0/pin/ls")
    def pin_ls() -> dict[str, object]:
        return {"Keys": {c: {"Type": "recursive"} for c in store.pins()}}

    def _started(pieces: Iterator[bytes]) -> Iterator[bytes]:
        """`pieces` with its first item already taken (a missing or malformed root fails as an
        error answer, not as a stream cut short), regrouped into ~1 MiB writes: a sync iterator is
        run one item per thread hop, which costs more than the block it moves."""
        first = next(pieces, b"")
        return _batched(chain([first], pieces))

    def _file_stream(cid: CID) -> Iterator[bytes]:
        # the store is local: read in this thread, with no deadline (a slow reader is no stall of
        # ours), and any chunk size its own adds allow (the other bounds hold)
        return _started(iter_file(store, cid, timeout=math.inf, workers=0, min_chunk=1))

    def _car_stream(cid: CID) -> Iterator[bytes]:
        # relayed unverified: the receiving client verifies every block itself
        store.get_block(cid)
        blocks = walk_blocks(store, cid, verify=False, min_chunk=1)
        first = next(blocks)
        return _batched(write_car(cid, chain([first], blocks)))

    @app.post("/api/v0/cat")
    def cat(arg: str) -> Response:
        return StreamingResponse(_file_stream(_arg(arg)), media_type="application/octet-stream")

    @app.post("/api/v0/dag/export")
    def dag_export(arg: str) -> Response:
        return StreamingResponse(_car_stream(_arg(arg)), media_type="application/vnd.ipld.car")

    @app.get("/ipfs/{cid_str}")
    def gateway(cid_str: str, request: Request, format: str | None = None) -> Response:  # noqa: A002
        cid = _arg(cid_str)
        accept = request.headers.get("accept", "")
        fmt = format or ("raw" if "vnd.ipld.raw" in accept else "car" if "vnd.ipld.car" in accept else None)
        if not store.has(cid):
            return Response(f"{cid} not found", status_code=404)
        if fmt == "raw":
            return Response(store.get_block(cid), media_type="application/vnd.ipld.raw")
        if fmt == "car":
            return StreamingResponse(_car_stream(cid), media_type="application/vnd.ipld.car; version=1; order=dfs; dups=y")
        return StreamingResponse(_file_stream(cid), media_type="application/octet-stream")

    if pin_tokens:
        from hearth.ipfs.pinsvc import add_pin_service

        ip = "ip6" if ":" in host else "ip4"
        add_pin_service(app, store, pin_tokens, f"/{ip}/{host}/tcp/{port}/http", max_add)
    return app


def serve(data_dir: Path, host: str = "127.0.0.1", port: int = 5001, quota: int | None = None,
          max_add: int = DEFAULT_MAX_ADD, allow_origins: tuple[str, ...] = (), pin_tokens: frozenset[str] = frozenset()) -> None:
    """Run the daemon in the foreground until interrupted."""
    import uvicorn

    app = create_app(data_dir, host, port, quota, max_add, allow_origins, pin_tokens)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main() -> None:
    """`python -m hearth.ipfs.daemon --data DIR --port N` (what tests and scripts start)."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--quota", type=parse_size, help="blockstore size limit, e.g. 50G (default: none)")
    ap.add_argument("--max-add", type=parse_size, default=DEFAULT_MAX_ADD, help="largest file one add takes, e.g. 16G")
    ap.add_argument("--allow-origin", action="append", default=[], help="a browser origin the RPC API also answers")
    a = ap.parse_args()
    serve(a.data, a.host, a.port, a.quota, a.max_add, tuple(a.allow_origin))


if __name__ == "__main__":
    main()
