"""The embedded daemon through the Kubo RPC client and the trustless gateway: round trips,
persistence, concurrency, corruption, bad input."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hearth.dev.procs import free_port
from hearth.errors import InvalidCID, IPFSError, VerificationError
from hearth.formats.cid import CID, cid_of_bytes
from hearth.ipfs.fetch import fetch_bytes
from hearth.ipfs.gateway import GatewayClient
from hearth.ipfs.kubo import KuboClient

from tests.ipfs.conftest import Daemon


def test_add_cat_round_trip_v0_and_v1(daemon: Daemon) -> None:
    data = os.urandom(700_000)
    with KuboClient(daemon.api) as k:
        c0, c1 = k.add(data), k.add(data, cid_version=1)
        assert c0 == cid_of_bytes(data) and c1 == cid_of_bytes(data, 1)
        assert k.cat(c0) == data and k.cat(c1) == data


def test_only_hash_stores_nothing(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as k:
        cid = k.add(b"not stored", only_hash=True)
        with pytest.raises(IPFSError, match="not found"):
            k.cat(cid)


def test_second_process_fetches_what_first_added(daemon: Daemon, tmp_path: Path) -> None:
    f = tmp_path / "in.bin"
    f.write_bytes(os.urandom(600_000))
    hearth = [sys.executable, "-m", "hearth", "--ipfs-api", daemon.api, "ipfs"]
    cid = subprocess.run([*hearth, "add", str(f)], capture_output=True, text=True, check=True).stdout.strip()
    only = subprocess.run([*hearth, "add", "--only-hash", str(f)], capture_output=True, text=True, check=True)
    assert only.stdout.strip() == cid
    out = tmp_path / "out.bin"
    subprocess.run([*hearth, "get", cid, "-o", str(out)], capture_output=True, check=True)
    assert out.read_bytes() == f.read_bytes()


def test_blocks_survive_restart(daemon: Daemon) -> None:
    data = os.urandom(300_000)
    with KuboClient(daemon.api) as k:
        cid = k.add(data)
    daemon.stop()
    daemon.start()
    with KuboClient(daemon.api) as k:
        assert k.cat(cid) == data


def test_same_content_stored_once_and_concurrent_adds(daemon: Daemon) -> None:
    data = os.urandom(CHUNK := 262_144 * 3)
    with KuboClient(daemon.api) as k:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            cids = list(pool.map(lambda _: k.add(data), range(8)))
        assert len(set(cids)) == 1
        assert k.cat(cids[0]) == data
    files = [p for p in (daemon.data / "blocks").rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".tmp")]
    assert len(files) == 4  # 3 leaves + 1 root, once each
    _ = CHUNK


def test_gateway_raw_and_car_are_verified(daemon: Daemon) -> None:
    data = os.urandom(600_000)
    with KuboClient(daemon.api) as k:
        cid = k.add(data, cid_version=1)
    g = GatewayClient(daemon.api)
    assert g.fetch_car(cid) == data
    assert fetch_bytes(g, cid) == data
    g.close()


def test_corrupted_block_is_caught_and_nothing_used(daemon: Daemon) -> None:
    data = os.urandom(400_000)
    with KuboClient(daemon.api) as k:
        cid = k.add(data)
        # tamper with one stored leaf on disk
        leaf = next(p for p in (daemon.data / "blocks").rglob("*") if p.is_file() and p.stat().st_size > 100_000)
        raw = bytearray(leaf.read_bytes())
        raw[5000] ^= 0xFF
        leaf.write_bytes(bytes(raw))
        with pytest.raises(VerificationError, match="failed verification"):
            k.cat(cid)
    g = GatewayClient(daemon.api)
    with pytest.raises(VerificationError):
        g.fetch_car(cid)
    g.close()


def test_lying_daemon_is_caught() -> None:
    """A daemon that answers with other bytes than asked for (MockTransport stand-in)."""
    good = cid_of_bytes(b"the real content")

    def handler(request: httpx.Request) -> httpx.Response:
        from hearth.formats.cid import leaf_header, leaf_trailer

        fake = b"evil content!!!!"
        return httpx.Response(200, content=leaf_header(len(fake)) + fake + leaf_trailer(len(fake)))

    with KuboClient("http://fake", transport=httpx.MockTransport(handler)) as k, pytest.raises(VerificationError):
        k.cat(good)


def test_oversized_file_refused(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as k:
        cid = k.add(os.urandom(100_000))
        with pytest.raises(IPFSError, match="over the limit"):
            k.cat(cid, max_size=1000)


def test_daemon_down_is_a_clear_error() -> None:
    with KuboClient(f"http://127.0.0.1:{free_port()}") as k, pytest.raises(IPFSError, match="not reachable"):
        k.version()


def test_malformed_and_unknown_cids(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as k:
        with pytest.raises(InvalidCID):
            k.cat("not-a-cid")
        with pytest.raises(IPFSError, match="not found"):
            k.cat(CID.parse("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"))
    r = httpx.post(f"{daemon.api}/api/v0/block/get", params={"arg": "garbage"})
    assert r.status_code == 500 and "invalid path" in r.json()["Message"]


def test_cli_errors_have_no_traceback(daemon: Daemon) -> None:
    hearth = [sys.executable, "-m", "hearth", "--ipfs-api", daemon.api, "ipfs"]
    bad = subprocess.run([*hearth, "cat", "nonsense"], capture_output=True, text=True)
    assert bad.returncode == 1 and "not a CID" in bad.stderr and "Traceback" not in bad.stderr
    down = subprocess.run([sys.executable, "-m", "hearth", "--ipfs-api", f"http://127.0.0.1:{free_port()}", "ipfs",
                           "cat", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"], capture_output=True, text=True)
    assert down.returncode == 1 and "not reachable" in down.stderr and "Traceback" not in down.stderr


@pytest.mark.slow
def test_one_gib_add_and_fetch_bounded_memory(daemon: Daemon, tmp_path: Path) -> None:
    """1 GiB through the daemon; the fetching process stays under 64 MB above its baseline."""
    big = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for i in range(1024):
            f.write(i.to_bytes(4, "little") + chunk[4:])
    hearth = [sys.executable, "-m", "hearth", "--ipfs-api", daemon.api, "ipfs"]
    cid = subprocess.run([*hearth, "add", str(big)], capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / "out.bin"
    # VmHWM (peak resident set of this process image) rather than ru_maxrss, which survives exec
    code = (
        "from hearth.ipfs.kubo import KuboClient;from hearth.ipfs.fetch import fetch_to_file;from pathlib import Path;"
        "st=lambda k: next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith(k));"
        "base=st('VmRSS');"
        f"fetch_to_file(KuboClient('{daemon.api}'),'{cid}',Path('{out}'));"
        "print(st('VmHWM')-base)"
    )
    grown_kb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert grown_kb < 64 * 1024
    assert out.stat().st_size == big.stat().st_size
    assert str(cid_of_bytes(b"")) != cid
    big.unlink()
    out.unlink()
