"""Verified fetch: every block is hashed against its CID before a byte of it is used, and files
are rebuilt from their DAG block by block, from any BlockSource (Kubo RPC, gateway, a CAR)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from hearth.errors import IPFSError, VerificationError
from hearth.formats.cid import CID, DAG_PB, RAW, decode_pb_node, unixfs_data

Progress = Callable[[int, int], None]  # (bytes done, bytes total or 0 if unknown)
MAX_BLOCK = 2 * 1024 * 1024  # Kubo refuses blocks over 2 MiB too


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
