"""The node dashboard shows attacker-written job data (skip reasons quote bad specs) as text only:
the API sends a strict Content-Security-Policy, the page has no inline script, a foreign Host
header is refused (DNS rebinding), and a real headless Chromium renders a hostile skip reason
as escaped text without running or creating any element from it. The dashboard's chart draws
samples the history sampler takes while the app runs; Chromium renders it, screenshot included."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hearth.dev.procs import free_port
from hearth.formats.cid import cid_of_bytes
from hearth_node.api import CSP, create_app
from hearth_node.history import History, Sample
from hearth_node.journal import Journal
from hearth_node.processor import Metrics

from tests.browser import chromium_or_skip, dump_dom, screenshot

XSS_IMG = "<img src=x onerror=\"document.title='pwned'\">"
XSS_BOLD = "<b>bold</b>"
CHROMIUM = Path("/usr/bin/chromium")


class _Market:
    address = "0x" + "11" * 20

    def account(self, addr: str) -> Any:
        raise ConnectionError("RPC down (fake)")  # views.status answers anyway


def _posted(job_id: int) -> dict[str, Any]:
    return {"job_id": job_id, "client": "0x" + "22" * 20, "payment": 10**18,
            "spec_cid": str(cid_of_bytes(f"spec {job_id}".encode()))}


def fake_service(tmp_path: Path, api_host: str = "127.0.0.1") -> SimpleNamespace:
    """Just what api.py and views.py read, with a real journal holding hostile skip reasons."""
    journal = Journal(tmp_path / "journal.db")
    for job_id, reason in ((1, f"model CID: not a CID: {XSS_IMG}"), (2, XSS_BOLD), (3, None)):
        journal.add(job_id, _posted(job_id))
        if reason is not None:
            journal.advance(job_id, "skipped", reason)
    return SimpleNamespace(
        settings=SimpleNamespace(api_host=api_host),
        watcher=SimpleNamespace(rpc_ok=True),
        journal=journal,
        account=SimpleNamespace(address="0x" + "33" * 20),
        deployment=SimpleNamespace(chain_id=31337),
        market=_Market(),
        processor=SimpleNamespace(runners=SimpleNamespace(loaded=lambda: []),
                                  metrics=Metrics()),
        model_refs=[],
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    svc = fake_service(tmp_path)
    with TestClient(create_app(svc), base_url="http://127.0.0.1:8700") as c:  # type: ignore[arg-type]
        yield c
    svc.journal.close()


def test_every_response_has_csp_and_nosniff(client: TestClient) -> None:
    for path in ("/", "/dashboard.js", "/dashboard.css", "/health", "/status", "/jobs", "/jobs/1",
                 "/jobs/99", "/metrics", "/nope"):
        r = client.get(path)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff", path
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP and "default-src 'none'" in CSP
    assert client.get("/dashboard.js").headers["content-type"].startswith("text/javascript")


def test_dashboard_html_has_no_inline_script_or_style(client: TestClient) -> None:
    html = client.get("/").text
    assert "Hearth provider node" in html
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I)
    assert scripts == [(' src="/dashboard.js" defer', "")]
    assert "<style" not in html.lower() and not re.search(r"\son\w+\s*=", html, re.I)
    js = client.get("/dashboard.js").text
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js


def test_hostile_reason_served_as_json_string(client: TestClient) -> None:
    reasons = {j["job_id"]: j["reason"] for j in client.get("/jobs").json()}
    assert XSS_IMG in reasons[1] and reasons[2] == XSS_BOLD


@pytest.mark.parametrize("host", ["localhost", "localhost:8700", "127.0.0.1:8700", "[::1]:8700", "[::1]"])
def test_local_hosts_allowed(client: TestClient, host: str) -> None:
    assert client.get("/health", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8700", "127.0.0.1.evil.example", "localhost.",
                                  "10.0.0.5", "", "127.0.0.1:x", "[::1"])
def test_foreign_host_refused(client: TestClient, host: str) -> None:
    r = client.get("/health", headers={"host": host})
    assert r.status_code == 400
    assert r.headers["content-security-policy"] == CSP


def test_configured_api_host_allowed(tmp_path: Path) -> None:
    svc = fake_service(tmp_path, api_host="node.lan")
    with TestClient(create_app(svc), base_url="http://node.lan:8700") as c:  # type: ignore[arg-type]
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"host": "localhost:8700"}).status_code == 200
        assert c.get("/health", headers={"host": "evil.example"}).status_code == 400
        assert c.get("/health", headers={"host": "10.0.0.5"}).status_code == 400
    svc.journal.close()


def test_wildcard_bind_allows_ip_literals_not_names(tmp_path: Path) -> None:
    svc = fake_service(tmp_path, api_host="0.0.0.0")  # noqa: S104
    with TestClient(create_app(svc), base_url="http://192.168.1.20:8700") as c:  # type: ignore[arg-type]
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"host": "[fe80::1]:8700"}).status_code == 200
        assert c.get("/health", headers={"host": "evil.example"}).status_code == 400
    svc.journal.close()


# ---- a real browser


@contextmanager
def serve(svc: SimpleNamespace, history: History | None = None) -> Iterator[str]:
    """The real app over `svc`, on uvicorn in a thread (its lifespan, and so the sampler, included)."""
    port = free_port()
    app: FastAPI = create_app(svc, history)  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The real app over the hostile journal."""
    svc = fake_service(tmp_path)
    try:
        with serve(svc) as url:
            yield url
    finally:
        svc.journal.close()


def test_browser_renders_hostile_reasons_as_text(served: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip(f"{CHROMIUM} not installed (scripts/setup installs Debian's chromium when run as root)")
    assert httpx.get(served + "/jobs/1").json()["step"] == "skipped"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000",
           "--dump-dom", served + "/"]
    # subprocess.run kills chromium if it overruns, so no browser outlives the test
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    dom = out.stdout
    assert out.returncode == 0 and 'data-rendered="yes"' in dom, (out.returncode, dom[-2000:], out.stderr[-2000:])
    # the script ran and filled the table: the hostile reasons are there, as escaped text
    assert "&lt;img src=x onerror=" in dom and "&lt;b&gt;bold&lt;/b&gt;" in dom
    assert 'href="/jobs/1"' in dom and "status unavailable" not in dom
    # ... and nothing was parsed out of them: no element, no handler run
    assert "<img" not in dom.lower() and "<b>" not in dom.lower()
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and title.group(1) == "Hearth node"  # not 'pwned': onerror never ran


# ---- history: the sampler behind the chart

HOSTILE_MODEL = "tiny-<img src=x onerror=alert(1)>.gguf"  # a file name: no slash


def busy_service(tmp_path: Path) -> SimpleNamespace:
    """The hostile journal plus jobs further along, a model loaded with work queued, money earned."""
    svc = fake_service(tmp_path)
    for job_id, steps in ((4, ("claimed", "ran", "completed")), (5, ("claimed", "ran", "completed")), (6, ("claimed",))):
        svc.journal.add(job_id, _posted(job_id))
        for step in steps:
            svc.journal.advance(job_id, step)
    m = svc.processor.metrics
    m.earnings, m.tokens_generated, m.last_tokens_per_second, m.jobs_run = 3_250_000_000_000_000_000, 1234, 42.5, 2
    svc.processor.runners.loaded = lambda: [{"path": f"/models/{HOSTILE_MODEL}", "bytes": 3 * 2**20,
                                             "queued": 2, "leases": 1}]
    return svc


def fed_history(svc: SimpleNamespace, n: int = 12) -> History:
    """A history that samples only once by itself (an hour apart), fed `n` samples of the last minute."""
    hist = History(svc, interval=3600)
    now = time.time()
    for i in range(n):
        hist.add(Sample(t=now - 5 * (n - i), tokens_per_second=[0, 12, 30, 41, 38, 44][i % 6], queue_depth=i % 4,
                        jobs={"completed": i // 3}, earnings_tokens=0.25 * i))
    return hist


def test_live_figures_fall_back_to_zero() -> None:
    # a bare service (nothing the sampler reads) samples as zeros instead of failing
    s = History(SimpleNamespace()).sample()
    assert s is not None and (s.tokens_per_second, s.queue_depth, s.jobs, s.earnings_tokens) == (0.0, 0, {}, 0.0)


def test_history_ring_is_bounded_and_filters_since() -> None:
    hist = History(SimpleNamespace(), size=3, clock=iter(range(100, 110)).__next__)
    for _ in range(5):
        hist.sample()
    assert [s["t"] for s in hist.samples()] == [102, 103, 104]
    assert [s["t"] for s in hist.samples(since=103)] == [104]


def test_history_endpoint_and_sampler_lifecycle(tmp_path: Path) -> None:
    svc = busy_service(tmp_path)
    hist = History(svc, interval=0.05)
    app = create_app(svc, hist)  # type: ignore[arg-type]
    with TestClient(app, base_url="http://127.0.0.1:8700") as c:
        deadline = time.monotonic() + 10
        while len(c.get("/history").json()["samples"]) < 3:  # the lifespan started the sampler
            assert time.monotonic() < deadline, "the sampler took no samples"
            time.sleep(0.05)
        body = c.get("/history").json()
        last = body["samples"][-1]
        assert body["interval"] == 0.05 and last["queue_depth"] == 2 and last["tokens_per_second"] == 42.5
        assert last["earnings_tokens"] == 3.25 and last["jobs"] == {"skipped": 2, "seen": 1, "completed": 2, "claimed": 1}
        assert c.get("/history", params={"since": last["t"]}).json()["samples"] == []
        status = c.get("/status").json()
        assert status["queue_depth"] == 2 and status["tokens_generated"] == 1234
    assert hist._thread is None  # the lifespan's end stopped it
    n = len(hist.samples())
    time.sleep(0.2)
    assert len(hist.samples()) == n
    svc.journal.close()


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a well-formed PNG: signature, IHDR first, chunks' CRCs right, IDAT, IEND last."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + data) == int.from_bytes(png[pos + 8 + length:pos + 12 + length], "big"), kind
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_browser_dashboard_chart_and_figures(tmp_path: Path) -> None:
    browser = chromium_or_skip()
    svc = busy_service(tmp_path)
    try:
        with serve(svc, fed_history(svc)) as url:
            png = screenshot(browser, url + "/", tmp_path / "dashboard.png", tmp_path / "chromium-shot")
            dom = dump_dom(browser, url + "/", tmp_path / "chromium-dom")
    finally:
        svc.journal.close()
    if keep := os.environ.get("HEARTH_DASHBOARD_PNG"):  # a copy to look at by hand
        shutil.copy(png, keep)
    data = png.read_bytes()
    assert _png_size(data) == (1280, 900)
    assert 20_000 < len(data) < 5_000_000, len(data)  # a blank page is a few kB
    assert 'data-rendered="yes"' in dom and "status unavailable" not in dom
    # the chart: one SVG per series, each with a line through every sample (12 fed + 1 taken at start)
    for series in ("tokens_per_second", "queue_depth", "earnings_tokens"):
        chart = re.search(rf'<svg[^>]*data-series="{series}".*?</svg>', dom, re.S)
        assert chart is not None, series
        line = re.search(r'<polyline[^>]*points="([^"]*)"', chart.group(0))
        assert line is not None and len(line.group(1).split()) >= 12, series
    # the figures
    assert re.search(r'data-figure="earnings"><div class="value">3\.25</div>', dom)
    assert re.search(r'data-figure="queue-depth"><div class="value">2</div>', dom)
    for step, n in (("skipped", 2), ("completed", 2), ("claimed", 1), ("seen", 1)):
        assert re.search(rf'<tr data-step="{step}"><td>{step}</td><td class="num">{n}</td>', dom), step
    # models loaded, its hostile name as text; the hostile reasons still text
    assert "tiny-&lt;img src=x onerror=alert(1)&gt;.gguf" in dom and "&lt;img src=x onerror=\"document" in dom
    assert "<img" not in dom.lower() and "<b>" not in dom.lower()
    assert re.search(r"<title>(.*?)</title>", dom, re.S).group(1) == "Hearth node"  # type: ignore[union-attr]
