"""Remote pinning: the Pinning Service API served by the embedded daemon (`hearth ipfs daemon
--serve-pins`, a real process) fetching from an origin daemon with the verified fetch, the client
in hearth.ipfs.pinning, a second daemon as a Kubo mirror, and reading back with fallbacks."""

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
from hearth.formats.cid import CID
from hearth.ipfs.gateway import GatewayClient
from hearth.ipfs.kubo import KuboClient
from hearth.ipfs.pinning import KuboMirror, PinningService, RemotePins, cat_any
from hearth.ipfs.pinsvc import multiaddr_url

from tests.ipfs.conftest import Daemon, start_daemon

TOKEN = "s3cret-pin-token"  # noqa: S105  (a test token)


class PinService:
    """`hearth ipfs daemon --serve-pins` as a process, restartable on its data."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "HEARTH_IPFS_PIN_TOKENS": f"other-token,{TOKEN}"}
        proc = subprocess.Popen([sys.executable, "-m", "hearth", "ipfs", "daemon", "--data", str(self.data),
                                 "--port", str(self.port), "--serve-pins"], env=env, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 30, "pinning service", proc)
        return proc

    def restart(self) -> None:
        stop_proc(self.proc)
        self.proc = self._start()

    def client(self, token: str = TOKEN) -> PinningService:
        return PinningService(self.url, token)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[PinService]:
    s = PinService(tmp_path / "pins")
    yield s
    stop_proc(s.proc)


def _origin(d: Daemon) -> str:
    return f"/ip4/127.0.0.1/tcp/{d.port}/http"


def test_multiaddrs_and_urls_of_http_origins() -> None:
    assert multiaddr_url("/ip4/10.0.0.2/tcp/8080/http") == "http://10.0.0.2:8080"
    assert multiaddr_url("/dns4/pins.example/tcp/443/tls/http") == "https://pins.example:443"
    assert multiaddr_url("/ip6/::1/tcp/8080/http") == "http://[::1]:8080"
    assert multiaddr_url("http://gw.example:8080/") == "http://gw.example:8080"
    assert multiaddr_url("/ip4/1.2.3.4/tcp/4001/p2p/QmPeer") is None  # libp2p: not for this daemon
    assert multiaddr_url("/ip4/1.2.3.4/udp/4001/quic-v1") is None


def test_service_fetches_from_the_origin_and_serves_it_after_the_origin_is_gone(
        daemon: Daemon, service: PinService) -> None:
    data = os.urandom(700_000)  # several blocks
    with KuboClient(daemon.api) as k:
        cid = k.add(data)
    with service.client() as ps:
        st = ps.add(cid, "result of job 1", origins=[_origin(daemon)], meta={"job": "1"})
        assert st.status in ("queued", "pinning", "pinned") and st.delegates
        st = ps.wait(st.requestid, timeout=60)
        assert st.status == "pinned", st.info
        assert st.info["source"] == f"http://127.0.0.1:{daemon.port}"
        assert [p.requestid for p in ps.find(cid, "pinned")] == [st.requestid]
        daemon.stop()  # the home node goes offline
        with KuboClient(daemon.api) as home, GatewayClient(service.url) as gw:
            with pytest.raises(IPFSError):
                home.cat(cid)
            assert cat_any([home, gw], cid) == data
        # asking again (a retry, a restart of the node) finds the pin instead of piling up requests
        assert ps.ensure(cid, "again").requestid == st.requestid


def test_every_call_needs_a_valid_token(daemon: Daemon, service: PinService) -> None:
    with service.client("wrong") as ps, pytest.raises(IPFSError, match="refused the access token"):
        ps.find("QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR")
    r = httpx.post(f"{service.url}/pins", json={"cid": "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"})
    assert r.status_code == 401 and r.json()["error"]["reason"] == "UNAUTHORIZED"
    r = httpx.post(f"{service.url}/pins", json={"cid": "not-a-cid"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and r.json()["error"]["reason"] == "BAD_REQUEST"
    r = httpx.post(f"{service.url}/pins", json={"name": "no cid"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400
    # the gateway paths stay open, as gateways are
    with KuboClient(service.url) as k, GatewayClient(service.url) as gw:
        assert gw.fetch_car(k.add(b"public")) == b"public"


def test_unreachable_or_tampering_origins_fail_the_pin(daemon: Daemon, service: PinService) -> None:
    data = os.urandom(300_000)
    with KuboClient(daemon.api) as k:
        cid = k.add(data)
    with service.client() as ps:
        st = ps.wait(ps.add(cid, origins=[f"/ip4/127.0.0.1/tcp/{free_port()}/http"]).requestid, timeout=60)
        assert st.status == "failed" and any("not reachable" in e for e in st.info["errors"])
        # the origin flips a byte of a block: the service refuses it, pins nothing
        leaf = next(p for p in (daemon.data / "blocks").rglob("*") if p.is_file() and p.stat().st_size > 200_000)
        raw = bytearray(leaf.read_bytes())
        raw[1000] ^= 1
        leaf.write_bytes(bytes(raw))
        st = ps.wait(ps.add(cid, origins=[_origin(daemon)]).requestid, timeout=60)
        assert st.status == "failed" and any("failed verification" in e for e in st.info["errors"])
    assert str(cid) not in httpx.post(f"{service.url}/api/v0/pin/ls").json()["Keys"]
    with KuboClient(daemon.api) as home, KuboClient(service.url) as k, pytest.raises(VerificationError):
        cat_any([home, k], cid)  # tampering is reported, not hidden behind the other's "not found"


def test_origin_in_meta_as_a_kubo_rpc_url(daemon: Daemon, service: PinService) -> None:
    with KuboClient(daemon.api) as k:
        cid = k.add(b"spec bytes " * 100)
    with service.client() as ps:
        st = ps.wait(ps.add(cid, meta={"hearth.kubo_rpc": daemon.api}).requestid, timeout=60)
    assert st.status == "pinned" and st.info["source"] == daemon.api


def test_listing_replacing_removing_and_a_restart(daemon: Daemon, service: PinService) -> None:
    with KuboClient(daemon.api) as k:
        a, b = k.add(b"first"), k.add(b"second")
    ps = service.client()
    ra = ps.wait(ps.add(a, "Job Result 7", origins=[_origin(daemon)], meta={"kind": "result"}).requestid, 60)
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    listed = httpx.get(f"{service.url}/pins", params={"name": "result", "match": "ipartial"}, headers=hdr).json()
    assert listed["count"] == 1 and listed["results"][0]["requestid"] == ra.requestid
    by_meta = httpx.get(f"{service.url}/pins", params={"meta": '{"kind": "spec"}'}, headers=hdr).json()
    assert by_meta["count"] == 0
    r = httpx.post(f"{service.url}/pins/{ra.requestid}", json={"cid": str(b), "origins": [_origin(daemon)]},
                   headers=hdr)
    assert r.status_code == 202
    rb = ps.wait(r.json()["requestid"], 60)
    assert rb.status == "pinned" and rb.cid == str(b)
    assert httpx.get(f"{service.url}/pins/{ra.requestid}", headers=hdr).status_code == 404
    service.restart()  # requests are on disk
    assert ps.get(rb.requestid).status == "pinned"
    ps.remove(rb.requestid)
    assert ps.find(b) == []
    ps.close()
    assert str(b) not in httpx.post(f"{service.url}/api/v0/pin/ls").json()["Keys"]


def test_kubo_mirror_copies_verified_blocks_and_pins(daemon: Daemon, tmp_path: Path) -> None:
    port = free_port()
    mirror_proc = start_daemon(tmp_path / "mirror", port)
    try:
        data = os.urandom(600_000)
        with KuboClient(daemon.api) as home:
            cid = home.add(data)
            pins = RemotePins(mirror=KuboMirror(f"http://127.0.0.1:{port}"))
            assert pins.pin(home, cid, "result") == {"kubo": "pinned"}
        assert str(cid) in httpx.post(f"http://127.0.0.1:{port}/api/v0/pin/ls").json()["Keys"]
        daemon.stop()
        with KuboClient(daemon.api) as home:
            assert cat_any([home, *pins.readers()], cid) == data
        pins.close()
    finally:
        stop_proc(mirror_proc)


def test_remote_pins_report_failures_without_raising(daemon: Daemon) -> None:
    with KuboClient(daemon.api) as home:
        cid = home.add(b"x" * 5000)
        dead = f"http://127.0.0.1:{free_port()}"
        pins = RemotePins.from_config(dead, "t", kubo_api=dead)
        assert pins is not None
        with pins:
            out = pins.pin(home, cid, "spec", wait=1)
    assert out["kubo"].startswith("failed:") and out["service"].startswith("failed:")
    assert RemotePins.from_config(None, None) is None
    with pytest.raises(IPFSError, match="without a token"):
        RemotePins.from_config(dead, None)
    assert CID.parse(str(cid)) == cid
