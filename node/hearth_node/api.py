"""The node's HTTP API (FastAPI): health, status, jobs, history, Prometheus metrics and a dashboard.

Job data is attacker-written (prompts, skip reasons quoting bad specs), so the dashboard renders
it only as text, and every response carries a Content-Security-Policy that forbids inline
script: markup slipped into the page can never run. The API listens on a home machine, so a
Host check stops DNS rebinding (a web page whose own name re-resolves to 127.0.0.1 reading it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, PlainTextResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth_node import views
from hearth_node.history import History

if TYPE_CHECKING:
    from hearth_node.service import NodeService

STATIC = Path(__file__).parent / "static"

# Only this origin's own files may load; no inline script or style, no plugins, no framing.
CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")  # noqa: S104  (names of binds, not a bind)


def _host_name(header: str) -> str | None:
    """The host part of a Host header, lowercased, IPv6 kept in brackets; None if malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[:end + 1], header[end + 1:]
    else:
        colon = header.find(":")
        name, rest = (header, "") if colon < 0 else (header[:colon], header[colon:])
    if not name or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
        return None
    return name


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def allowed_host_names(api_host: str) -> frozenset[str]:
    """Host header names this API answers: loopback names and the configured bind address."""
    names = set(LOCAL_HOSTS)
    host = api_host.strip().lower()
    if host not in WILDCARD_BINDS:
        names.add(f"[{host.strip('[]')}]" if ":" in host else host)
    return frozenset(names)


class HostCheck:
    """Answer 400 to any Host header not in `allowed` (DNS rebinding defence).

    A node bound to every interface (0.0.0.0 / ::) is reached over the LAN by address, so any IP
    literal is accepted there too: rebinding needs a name the attacker controls, never an IP.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str], any_ip: bool = False) -> None:
        self.app = app
        self.allowed = frozenset(allowed)
        self.any_ip = any_ip

    def permits(self, header: str | None) -> bool:
        """Whether a request with this Host header may be answered."""
        name = _host_name(header) if header is not None else None
        if name is None:
            return False
        return name in self.allowed or (self.any_ip and _is_ip_literal(name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.permits(Headers(scope=scope).get("host")):
            response = PlainTextResponse("Invalid host header", status_code=400, headers=SECURITY_HEADERS)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Add SECURITY_HEADERS to every HTTP response, errors and 404s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers[k] = v
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _service(request: Request) -> NodeService:
    svc: NodeService = request.app.state.service
    return svc


Service = Annotated["NodeService", Depends(_service)]


def _static(name: str, media_type: str) -> FileResponse:
    # no-cache: a node upgrade must not keep serving an old script against a new API
    return FileResponse(STATIC / name, media_type=media_type, headers={"cache-control": "no-cache"})


def create_app(service: NodeService, history: History | None = None) -> FastAPI:
    """The API app over a running node service; `history` (default: a fresh one over the service)
    is sampled while the app runs, so the dashboard's chart lives and dies with the server."""
    hist = history if history is not None else History(service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hist.start()
        try:
            yield
        finally:
            hist.stop()

    # No /docs or /redoc pages: they load script from a CDN, which the CSP forbids.
    app = FastAPI(title="Hearth provider node", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service
    app.state.history = hist
    api_host = str(service.settings.api_host)
    # added last = outermost: a bad Host is refused before anything else runs
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HostCheck, allowed=allowed_host_names(api_host),
                       any_ip=api_host.strip().lower() in WILDCARD_BINDS)

    @app.get("/health")
    def health(svc: Service) -> dict[str, Any]:
        return {"ok": svc.watcher.rpc_ok, "rpc": svc.watcher.rpc_ok}

    @app.get("/status")
    def status(svc: Service) -> dict[str, Any]:
        return views.status(svc)

    @app.get("/jobs")
    def jobs(svc: Service, step: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [views.job_view(r) for r in svc.journal.jobs(step, limit)]

    @app.get("/jobs/{job_id}")
    def job(job_id: int, svc: Service) -> dict[str, Any]:
        rec = svc.journal.get(job_id)
        if rec is None:
            raise HTTPException(404, f"job {job_id} is not known to this node")
        return views.job_view(rec, svc.journal.timeline(job_id))

    @app.get("/history")
    def history_(since: float | None = None) -> dict[str, Any]:
        return {"interval": hist.interval, "samples": hist.samples(since)}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(svc: Service) -> str:
        return views.prometheus(svc)

    @app.get("/", response_class=FileResponse)
    def dashboard() -> FileResponse:
        return _static("dashboard.html", "text/html; charset=utf-8")

    @app.get("/dashboard.js", response_class=FileResponse)
    def dashboard_js() -> FileResponse:
        return _static("dashboard.js", "text/javascript; charset=utf-8")

    @app.get("/dashboard.css", response_class=FileResponse)
    def dashboard_css() -> FileResponse:
        return _static("dashboard.css", "text/css; charset=utf-8")

    return app
