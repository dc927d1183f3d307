"""The node's HTTP API (FastAPI): health, status, jobs, Prometheus metrics and a dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from hearth_node import views

if TYPE_CHECKING:
    from hearth_node.service import NodeService

STATIC = Path(__file__).parent / "static"


def _service(request: Request) -> NodeService:
    svc: NodeService = request.app.state.service
    return svc


Service = Annotated["NodeService", Depends(_service)]


def create_app(service: NodeService) -> FastAPI:
    """The API app over a running node service."""
    app = FastAPI(title="Hearth provider node")
    app.state.service = service

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

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(svc: Service) -> str:
        return views.prometheus(svc)

    @app.get("/", response_class=HTMLResponse)
    def dashboard() -> str:
        return (STATIC / "dashboard.html").read_text()

    return app
