"""The embedded daemon against web pages and careless or hostile clients: cross-origin browser
requests refused as Kubo refuses them, chunk sizes bounded, adds bounded in size, the blockstore
bounded by a quota, and ordinary adds unchanged (the same CIDs as Kubo)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hearth.dev.procs import free_port, port_open, stop_proc, wait_until
from hearth.errors import IPFSError, VerificationError
from hearth.formats.cid import FileDAG, cid_of_bytes
from hearth.ipfs.kubo import KuboClient

from tests.ipfs.conftest import Daemon


def stored(data_dir: Path) -> int:
    return sum(1 for p in (data_dir / "blocks").rglob("*") if p.is_file())


def test_cross_origin_browser_requests_are_refused(daemon: Daemon) -> None:
    add = f"{daemon.api}/api/v0/add"
    files = {"file": ("f", b"written by a web page")}
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://127.0.0.1:{daemon.port + 1}"},  # another local service
                    {"Referer": "https://evil.example/page.html"},
                    {"Sec-Fetch-Site": "cross-site"}):
        r = httpx.post(add, files=files, headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert "refused" in r.json()["Message"]
        pre = httpx.options(add, headers={**headers, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    r = httpx.post(f"{daemon.api}/api/v0/pin/add", params={"arg": str(cid_of_bytes(b"x"))},
                   headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert stored(daemon.data) == 0  # nothing was written
    # the daemon's own origin (its web page, if it had one) and non-browser clients are answered
    for headers in ({"Origin": daemon.api}, {"Origin": f"http://localhost:{daemon.port}"},
                    {"Sec-Fetch-Site": "same-origin"}, {}):
        assert httpx.post(add, files=files, headers=headers).status_code == 200, headers
    # the read-only gateway stays open to pages, as gateways are
    cid = cid_of_bytes(b"written by a web page")
    r = httpx.get(f"{daemon.api}/ipfs/{cid}", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and r.content == b"written by a web page"


@pytest.mark.parametrize("chunker", ["size-0", "size-1048577", "size-99999999999999999999", "rabin", "size--1"])
def test_chunker_out_of_bounds_is_refused(daemon: Daemon, chunker: str) -> None:
    r = httpx.post(f"{daemon.api}/api/v0/add", params={"chunker": chunker}, files={"file": ("f", b"abc")}, timeout=10)
    assert r.status_code == 400, r.text
    assert "chunker" in r.json()["Message"]


def test_chunker_within_bounds_matches_kubo_layout(daemon: Daemon) -> None:
    data = os.urandom(3 << 20)
    for size in (1 << 20, 1 << 18, 1):
        body = data if size > 1 else data[:3000]
        r = httpx.post(f"{daemon.api}/api/v0/add", params={"chunker": f"size-{size}"}, files={"file": ("f", body)})
        dag = FileDAG(0, chunk_size=size)
        dag.update(body)
        assert r.status_code == 200 and r.json()["Hash"] == str(dag.finish())
    # the daemon serves what it stored, whatever the chunker (its walks keep the other bounds)...
    cid = r.json()["Hash"]
    assert httpx.post(f"{daemon.api}/api/v0/cat", params={"arg": cid}).content == data[:3000]
    # ...while a client's verified fetch holds chunks to at least MIN_CHUNK bytes: 3,000 one-byte
    # blocks for 3,000 bytes is the kind of work a DAG's author should not be able to ask for
    with KuboClient(daemon.api) as k, pytest.raises(VerificationError, match="-byte chunk before the end of the file"):
        k.cat(cid)


def test_ordinary_adds_unchanged(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as k:
        for n in (0, 1, 262_144, 262_145, 1_000_000):
            data = os.urandom(n)
            assert k.add(data) == cid_of_bytes(data)
            assert k.add(data, cid_version=1) == cid_of_bytes(data, 1)
            assert k.cat(cid_of_bytes(data)) == data


def start(tmp_path: Path, *args: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hearth.ipfs.daemon", "--data", str(tmp_path / "ipfs"),
                             "--port", str(port), *args])
    wait_until(lambda: port_open(port), 30, "ipfs daemon", proc)
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A daemon with a 2 MiB quota and 1 MiB adds."""
    api, proc = start(tmp_path, "--quota", "2M", "--max-add", "1MiB")
    yield api, tmp_path / "ipfs"
    stop_proc(proc)


def test_add_over_max_add_is_refused(limited: tuple[str, Path]) -> None:
    api, data_dir = limited
    with KuboClient(api) as k:
        with pytest.raises(IPFSError, match="refused \\(413\\)"):
            k.add(os.urandom(3 << 20))  # streamed with no length: cut off as it arrives
        assert k.add(os.urandom(1 << 20)) is not None  # exactly the limit is fine
    r = httpx.post(f"{api}/api/v0/add", files={"file": ("f", os.urandom(3 << 20))})
    assert r.status_code == 413 and "--max-add" in r.json()["Message"]
    r = httpx.post(f"{api}/api/v0/block/put", files={"file": ("b", os.urandom(3 << 20))})
    assert r.status_code == 413
    assert stored(data_dir) == 5  # the one add that fit: 4 leaves and a root


def test_quota_refuses_writes_instead_of_filling_the_disk(tmp_path: Path, limited: tuple[str, Path]) -> None:
    api, data_dir = limited
    with KuboClient(api) as k:
        first = os.urandom(900_000)
        cid = k.add(first)
        with pytest.raises(IPFSError, match="quota of 2097152 bytes reached"):
            for _ in range(3):  # the second still fits (with its 4 KiB per block), the third does not
                k.add(os.urandom(900_000))
        with pytest.raises(IPFSError, match="quota"):
            k.put_block(os.urandom(1 << 20))
        assert k.cat(cid) == first  # what was stored is intact and readable
        assert k.add(first) == cid  # and adding it again costs nothing
    used = sum(p.stat().st_size for p in (data_dir / "blocks").rglob("*") if p.is_file())
    assert used <= 2 << 20


def test_quota_counts_what_is_already_stored(tmp_path: Path) -> None:
    api, proc = start(tmp_path)
    with KuboClient(api) as k:
        k.add(os.urandom(1 << 20))
    stop_proc(proc)
    api, proc = start(tmp_path, "--quota", "1M")  # the store already holds more than this
    try:
        with KuboClient(api) as k, pytest.raises(IPFSError, match="quota"):
            k.add(os.urandom(10_000))
    finally:
        stop_proc(proc)
