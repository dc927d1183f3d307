"""The node's HTTP API (FastAPI): health, status, jobs, Prometheus metrics and a dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

if TYPE_CHECKING:
    from node.main import NodeService

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
        return {"ok": svc.processor.rpc_ok, "rpc": svc.processor.rpc_ok}

    @app.get("/status")
    def status(svc: Service) -> dict[str, Any]:
        return svc.status()

    @app.get("/jobs")
    def jobs(svc: Service, step: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [svc.job_view(r.job_id, timeline=False) for r in svc.journal.jobs(step, limit)]

    @app.get("/jobs/{job_id}")
    def job(job_id: int, svc: Service) -> dict[str, Any]:
        if svc.journal.get(job_id) is None:
            raise HTTPException(404, f"job {job_id} is not known to this node")
        return svc.job_view(job_id, timeline=True)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(svc: Service) -> str:
        return svc.prometheus()

    @app.get("/", response_class=HTMLResponse)
    def dashboard() -> str:
        return (STATIC / "dashboard.html").read_text()

    return app
