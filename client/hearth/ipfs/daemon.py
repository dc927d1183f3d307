"""The embedded IPFS daemon: an on-disk blockstore behind the Kubo RPC subset Hearth uses and
the trustless gateway paths, for machines with no Kubo node. Binds to localhost by default.

Blocks live in `<data>/blocks/<2 hex>/<sha256 hex>` (keyed by multihash, like Kubo's flatfs),
written to a unique temporary name and renamed into place, so the same content added twice is
stored once and concurrent adds cannot corrupt each other.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth import __version__
from hearth.errors import HearthError, InvalidCID
from hearth.formats.car import write_car
from hearth.formats.cid import CID, DAG_PB, RAW, FileDAG
from hearth.ipfs.fetch import iter_file, walk_blocks

READ_SIZE = 1 << 20


class BlockNotFound(HearthError):
    """A block this store does not have."""


class Blockstore:
    """Blocks on disk keyed by their sha256 digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blocks").mkdir(parents=True, exist_ok=True)
        (root / "pins").mkdir(parents=True, exist_ok=True)
        self._pin_lock = threading.Lock()

    def _path(self, digest: bytes) -> Path:
        h = digest.hex()
        return self.root / "blocks" / h[:2] / h

    def has(self, cid: CID) -> bool:
        """Whether the block is stored."""
        return self._path(cid.digest).exists()

    def put(self, cid: CID, block: bytes) -> None:
        """Store a block (no-op if present)."""
        path = self._path(cid.digest)
        if path.exists():
            return
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(block)
        os.replace(tmp, path)

    def get_block(self, cid: CID) -> bytes:
        """A stored block's bytes."""
        try:
            return self._path(cid.digest).read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"block was not found locally (offline): {cid}") from None

    def pin(self, cid: CID) -> None:
        """Record a recursive pin (all blocks must be present)."""
        for _ in walk_blocks(self, cid):
            pass
        with self._pin_lock:
            (self.root / "pins" / str(cid)).touch()

    def pins(self) -> list[str]:
        """Pinned CIDs."""
        return sorted(p.name for p in (self.root / "pins").iterdir())


def _err(message: str, status: int = 500) -> JSONResponse:
    # Kubo's RPC error shape
    return JSONResponse({"Message": message, "Code": 0, "Type": "error"}, status_code=status)


def _bool(v: str | None, default: bool) -> bool:
    return default if v is None else v.lower() in ("1", "true", "yes")


def create_app(data_dir: Path) -> FastAPI:
    """The daemon's app over a blockstore in `data_dir`."""
    app = FastAPI(title="Hearth embedded IPFS daemon", version=__version__)
    store = Blockstore(data_dir)
    app.state.store = store

    @app.exception_handler(HearthError)
    def _hearth_error(_: Request, exc: HearthError) -> JSONResponse:
        return _err(str(exc))

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
        if _bool(trickle, False):
            return _err("trickle layout is not supported: use the balanced default", 400)
        if cid_version not in (0, 1):
            return _err(f"unknown CID version {cid_version}", 400)
        rl = None if raw_leaves is None else _bool(raw_leaves, False)
        if rl and cid_version == 0:
            cid_version = 1  # Kubo upgrades to v1 when raw leaves are asked for
        hashing_only = _bool(only_hash, False)
        dag = FileDAG(cid_version, None if hashing_only else store.put, int(chunker[5:]), rl)
        src = file.file
        while chunk := src.read(READ_SIZE):
            dag.update(chunk)
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
        block = file.file.read(2 * 1024 * 1024 + 1)
        if len(block) > 2 * 1024 * 1024:
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

    def _file_stream(cid: CID) -> Iterator[bytes]:
        yield from iter_file(store, cid)

    @app.post("/api/v0/cat")
    def cat(arg: str) -> Response:
        cid = _arg(arg)
        store.get_block(cid)  # fail with a clear error before the stream starts
        return StreamingResponse(_file_stream(cid), media_type="application/octet-stream")

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
            return StreamingResponse(
                write_car(cid, walk_blocks(store, cid, verify=False)), media_type="application/vnd.ipld.car; version=1"
            )
        return StreamingResponse(_file_stream(cid), media_type="application/octet-stream")

    return app


def serve(data_dir: Path, host: str = "127.0.0.1", port: int = 5001) -> None:
    """Run the daemon in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(create_app(data_dir), host=host, port=port, log_level="warning")


def main() -> None:
    """`python -m client.ipfs_daemon --data DIR --port N` (what tests and scripts start)."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    serve(a.data, a.host, a.port)


if __name__ == "__main__":
    main()
