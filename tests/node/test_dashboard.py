"""The node dashboard shows attacker-written job data (skip reasons quote bad specs) as text only:
the API sends a strict Content-Security-Policy, the page has no inline script, a foreign Host
header is refused (DNS rebinding), and a real headless Chromium renders a hostile skip reason
as escaped text without running or creating any element from it."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
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
from hearth_node.journal import Journal
from hearth_node.processor import Metrics

XSS_IMG = "<img src=x onerror=\"document.title='pwned'\">"
XSS_BOLD = "<b>bold</b>"
CHROMIUM = Path("/usr/bin/chromium")


class _Market:
    address = "0x" + "11" * 20

    def account(self, addr: str) -> Any:
        raise ConnectionError("RPC down (fake)")  # views.status answers anyway


def _posted(job_id: int) -> dict[str, Any]:
    return {"job_id": job_id, "client": "0x" + "22" * 20, "payment": 10**18,
            "spec_cid": cid_of_bytes(f"spec {job_id}".encode()).to_bytes().hex()}


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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The real app over the hostile journal, on uvicorn in a thread."""
    svc = fake_service(tmp_path)
    port = free_port()
    app: FastAPI = create_app(svc)  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="test-api", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
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
