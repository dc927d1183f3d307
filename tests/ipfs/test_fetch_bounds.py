"""A verified fetch does no more work than a file's declared, capped size justifies, keeps a
deadline, and verifies every block while fetching concurrently: DAG bombs, sizes that do not add
up, too many links or levels, stalled daemons and tampered blocks, against a real daemon."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hearth.errors import InvalidCID, IPFSError, VerificationError
from hearth.formats.car import CarReader, write_car
from hearth.formats.cid import CHUNK_SIZE, CID, DAG_PB, RAW, FileDAG, decode_pb_node, pb_node, unixfs_file, varint
from hearth.ipfs.fetch import MAX_DEPTH, MAX_NODE_LINKS, MIN_CHUNK, fetch_bytes, fetch_to_file, iter_file
from hearth.ipfs.kubo import KuboClient

from tests.ipfs.conftest import Daemon

T = TypeVar("T")


def guarded(fn: Callable[[], T], seconds: float = 60) -> T:
    """Run `fn` in a thread: a regression that hangs fails the test instead of hanging the suite."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001  (handed to the test below)
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: the work is not bounded"
    if "error" in out:
        raise out["error"]
    return out["value"]  # type: ignore[no-any-return]


class Counting:
    """A KuboClient seen as a plain BlockSource (block by block), counting what it is asked for."""

    def __init__(self, inner: KuboClient) -> None:
        self.inner = inner
        self.asked: list[CID] = []

    def get_block(self, cid: CID) -> bytes:
        self.asked.append(cid)
        return self.inner.get_block(cid)


def dag_bomb(k: KuboClient, with_blocksizes: bool) -> CID:
    """A 0-byte "file" of three blocks with 40,000 links each: 6 MB of blocks, 1.6e9 links to walk."""
    child = k.put_block(pb_node([], unixfs_file(b"", 0)), DAG_PB)
    for _ in range(3):
        sizes = [0] * 40_000 if with_blocksizes else []
        child = k.put_block(pb_node([(child.to_bytes(), 0)] * 40_000, unixfs_file(b"", 0, sizes)), DAG_PB)
    return child


def node(k: KuboClient, children: list[tuple[CID, int]], filesize: int | None = None,
         sizes: list[int] | None = None) -> CID:
    """An internal node linking `children` (cid, size), declaring what it is told to."""
    sizes = [s for _, s in children] if sizes is None else sizes
    fs = sum(sizes) if filesize is None else filesize
    return k.put_block(pb_node([(c.to_bytes(), s) for c, s in children], unixfs_file(b"", fs, sizes)), DAG_PB)


@pytest.mark.parametrize("with_blocksizes", [True, False])
def test_dag_bomb_is_refused_at_its_root(daemon: Daemon, with_blocksizes: bool) -> None:
    with KuboClient(daemon.api) as k:
        bomb = dag_bomb(k, with_blocksizes)
        with pytest.raises(VerificationError, match="declares 0 bytes but links 40000 blocks"):
            guarded(lambda: fetch_bytes(k, bomb, max_size=1 << 20))
        with pytest.raises(VerificationError, match="declares 0 bytes"):
            guarded(lambda: list(iter_file(k, bomb)))
        counting = Counting(k)
        with pytest.raises(VerificationError):
            guarded(lambda: fetch_bytes(counting, bomb))
        assert counting.asked == [bomb]  # not one of its 40,000 links followed
    # the daemon's own walks (cat, pin, CAR export) are bounded the same way
    for path in ("cat", "pin/add", "dag/export"):
        r = guarded(partial(httpx.post, f"{daemon.api}/api/v0/{path}", params={"arg": str(bomb)}, timeout=60))
        assert r.status_code == 500 and "declares 0 bytes" in r.json()["Message"], (path, r.text)


def test_child_sizes_must_add_up(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as k:
        full = k.put_block(os.urandom(CHUNK_SIZE))
        short = k.put_block(os.urandom(50))
        cases = {
            "holds 50 bytes, but its parent declares 100": node(k, [(full, CHUNK_SIZE), (short, 100)]),
            "declares 10 bytes, but its data and children add up to": node(k, [(full, CHUNK_SIZE), (short, 50)], 10),
            "has 2 links but 1 blocksizes": node(k, [(full, CHUNK_SIZE), (short, 50)], CHUNK_SIZE, [CHUNK_SIZE]),
            "links a block of 0 bytes": node(k, [(full, CHUNK_SIZE), (short, 0)]),
            f"links a 50-byte chunk before the end of the file \\(at least {MIN_CHUNK}":
                node(k, [(short, 50), (full, CHUNK_SIZE)]),
        }
        for why, root in cases.items():
            with pytest.raises(VerificationError, match=why):
                guarded(partial(fetch_bytes, k, root))
        # a child lying about its size is caught when it arrives; one that is refused up front,
        # before any of its parent's links is followed
        counting = Counting(k)
        with pytest.raises(VerificationError):
            fetch_bytes(counting, cases["has 2 links but 1 blocksizes"])
        assert len(counting.asked) == 1
        # and the same shape with honest sizes is a file
        assert fetch_bytes(k, node(k, [(full, CHUNK_SIZE), (short, 50)])) == k.get_block(full) + k.get_block(short)


def test_too_many_links_or_levels_or_blocks(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as k:
        leaf = k.put_block(os.urandom(CHUNK_SIZE))
        wide = node(k, [(leaf, CHUNK_SIZE)] * (MAX_NODE_LINKS + 1))
        counting = Counting(k)
        with pytest.raises(IPFSError, match=f"{MAX_NODE_LINKS + 1} links, over the limit of {MAX_NODE_LINKS}"):
            guarded(lambda: fetch_bytes(counting, wide, timeout=60))
        assert counting.asked == [wide]
        deep = leaf
        for _ in range(MAX_DEPTH + 1):
            deep = node(k, [(deep, CHUNK_SIZE)])
        with pytest.raises(IPFSError, match=f"more than {MAX_DEPTH} levels deep"):
            guarded(lambda: fetch_bytes(k, deep))
        # within the depth limit, but a chain of single-link nodes above every leaf: more blocks
        # than the file's 4 KiB justify
        small = k.put_block(os.urandom(MIN_CHUNK))
        chain = small
        for _ in range(20):
            chain = node(k, [(chain, MIN_CHUNK)])
        padded = node(k, [(chain, MIN_CHUNK)] * 4)
        with pytest.raises(IPFSError, match="needs more than 42 blocks for 4096 bytes"):
            guarded(lambda: fetch_bytes(k, padded))


def test_max_size_is_checked_before_any_data(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as k:
        cid = k.add(os.urandom(3 * CHUNK_SIZE))
        counting = Counting(k)
        with pytest.raises(IPFSError, match="over the limit of 1000"):
            fetch_bytes(counting, cid, max_size=1000)
        assert counting.asked == [cid]


def test_deadline_against_a_daemon_that_never_answers(tmp_path: Path) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        cid = FileDAG(0).finish()
        with KuboClient(f"http://127.0.0.1:{port}", timeout=600) as k:
            t0 = time.monotonic()
            with pytest.raises(IPFSError, match="timed out"):
                guarded(lambda: fetch_bytes(k, cid, timeout=1))
            with pytest.raises(IPFSError, match="timed out"):
                guarded(lambda: fetch_to_file(k, cid, tmp_path / "out", timeout=1))
            assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()
            assert time.monotonic() - t0 < 60  # both gave up at their deadline, not at the client's 600 s


def test_deadline_against_slow_blocks_and_a_stalled_car() -> None:
    blocks: dict[bytes, bytes] = {}
    dag = FileDAG(1, lambda c, b: blocks.__setitem__(c.digest, b))
    dag.update(os.urandom(10 * CHUNK_SIZE))
    root = dag.finish()
    release = threading.Event()

    class Slow:
        def get_block(self, cid: CID) -> bytes:
            release.wait(0.5)
            return blocks[cid.digest]

    class Stalled(Slow):
        def car_stream(self, root: CID, timeout: float | None) -> Iterator[bytes]:
            pieces = write_car(root, iter([(root, blocks[root.digest])]))
            yield from pieces  # the header and the root, then nothing
            release.wait(120)

    try:
        for source in (Slow(), Stalled()):
            with pytest.raises(IPFSError, match="timed out after 1 s"):
                guarded(partial(fetch_bytes, source, root, timeout=1))
    finally:
        release.set()


def _tamper(daemon: Daemon, cid: CID) -> None:
    h = cid.digest.hex()
    path = daemon.data / "blocks" / h[:2] / h
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


class CountingCar(Counting):
    """A KuboClient as a CAR source, counting CAR streams and single blocks asked for."""

    def __init__(self, inner: KuboClient) -> None:
        super().__init__(inner)
        self.streams = 0

    def car_stream(self, root: CID, timeout: float | None) -> Iterator[bytes]:
        self.streams += 1
        return self.inner.car_stream(root, timeout)


def test_concurrent_fetch_verifies_every_block_in_order(daemon: Daemon, tmp_path: Path) -> None:
    data = os.urandom(12 * CHUNK_SIZE + 99)
    with KuboClient(daemon.api) as k:
        cid = k.add(data)
        src = CountingCar(k)
        assert fetch_bytes(src, cid) == data
        assert src.streams == 1 and src.asked == []  # one CAR request, not one request per block
        links, _ = decode_pb_node(k.get_block(cid))
        _tamper(daemon, CID.parse(links[6][0]))
        def collect(s: Counting, got: bytearray) -> None:
            for piece in iter_file(s, cid):
                got.extend(piece)

        for source in (CountingCar(k), Counting(k)):  # the CAR stream and block/get ahead of the walk
            got = bytearray()
            with pytest.raises(VerificationError, match="failed verification"):
                guarded(partial(collect, source, got))
            assert bytes(got) == data[:6 * CHUNK_SIZE]  # everything before the tampered block, nothing of it
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(VerificationError):
            fetch_to_file(k, cid, out / "file")
        assert not list(out.iterdir())  # no partial file left behind


class DictCar:
    """An exporter over a dict of blocks that sends `order` as its CAR."""

    def __init__(self, blocks: dict[bytes, bytes], order: list[CID]) -> None:
        self.blocks, self.order = blocks, order
        self.asked: list[CID] = []

    def get_block(self, cid: CID) -> bytes:
        self.asked.append(cid)
        return self.blocks[cid.digest]

    def car_stream(self, root: CID, timeout: float | None) -> Iterator[bytes]:
        for piece in write_car(root, iter([(c, self.blocks[c.digest]) for c in self.order])):
            yield from (piece[i:i + 1000] for i in range(0, len(piece), 1000))  # arriving in small pieces


def test_car_repeats_skipped_or_out_of_order() -> None:
    """Kubo's dag export sends each block once: a repeated chunk comes from the cache; an exporter
    that sends another order makes the walk go on block by block, still correct."""
    a, b = os.urandom(CHUNK_SIZE), os.urandom(CHUNK_SIZE // 2)
    data = a * 3 + b
    blocks: dict[bytes, bytes] = {}
    order: list[CID] = []

    def sink(c: CID, block: bytes) -> None:
        if c.digest not in blocks:
            order.append(c)
        blocks[c.digest] = block

    dag = FileDAG(0, sink)
    dag.update(data)
    root = dag.finish()
    walk_order = [root, *order[:-1]]  # the root is made last, sent first; then a once, then b
    once = DictCar(blocks, walk_order)
    assert fetch_bytes(once, root) == data and once.asked == []
    backwards = DictCar(blocks, list(reversed(walk_order)))
    assert fetch_bytes(backwards, root) == data and len(backwards.asked) == 5  # root, a, a, a, b


def test_car_reader_refuses_a_hostile_length_before_buffering() -> None:
    r = CarReader(max_section=1 << 21)
    with pytest.raises(InvalidCID, match="over the 2097152-byte limit"):
        r.feed(varint(1 << 40) + b"x" * 100)
    r = CarReader(max_section=1 << 21)
    r.feed(next(write_car(CID.for_block(b"x", RAW, 1), iter([]))))
    r.feed(varint(5) + b"\x01")
    with pytest.raises(InvalidCID, match="ended part-way"):
        r.finish()
