"""What the node's HTTP API shows, built from the service's state (one journal read per job)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hearth.formats.units import TOKEN

from hearth_node.journal import JobRecord

if TYPE_CHECKING:
    from hearth_node.service import NodeService


def _attr(obj: object, *path: str) -> Any:
    """obj.a.b..., or None where a link is missing: the service is being reworked, and tests serve
    the API over small fakes, so the live figures degrade to zeros rather than failing a page."""
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _call(obj: object, *path: str) -> Any:
    fn = _attr(obj, *path)
    return fn() if callable(fn) else None


def live(svc: NodeService) -> dict[str, Any]:
    """The node's own figures, read locally without touching the chain: what /status shows beside
    the chain's view, and what the history sampler records every few seconds."""
    m = _attr(svc, "processor", "metrics")
    loaded = _call(svc, "processor", "runners", "loaded") or []
    return {
        "models_loaded": loaded,
        # jobs queued on loaded models' runners: work admitted but not yet decoding
        "queue_depth": sum(int(r.get("queued", 0)) for r in loaded),
        "jobs": _call(svc, "journal", "counts") or {},
        "earnings_tokens": int(getattr(m, "earnings", 0)) / TOKEN,
        "tokens_per_second": float(getattr(m, "last_tokens_per_second", 0.0)),
        "tokens_generated": int(getattr(m, "tokens_generated", 0)),
        "jobs_run": int(getattr(m, "jobs_run", 0)),
        "errors": int(getattr(m, "errors", 0)),
    }


def status(svc: NodeService) -> dict[str, Any]:
    """What /status serves."""
    addr = svc.account.address
    out: dict[str, Any] = {
        "address": addr, "chain_id": svc.deployment.chain_id, "market": svc.market.address,
        "rpc_ok": svc.watcher.rpc_ok,
        "websocket": {"live": bool(_attr(svc, "watcher", "ws_live")),
                      "connects": int(_attr(svc, "watcher", "ws_connects") or 0),
                      "drops": int(_attr(svc, "watcher", "ws_drops") or 0),
                      "pushes": int(_attr(svc, "watcher", "ws_pushes") or 0)},
        "models_served": [{"name": m.name, "cid": m.cid} for m in svc.model_refs],
        **live(svc),
        "cursor_block": int(svc.journal.get_kv("cursor") or -1),
    }
    try:
        a = svc.market.account(addr)
        out.update(balance_tokens=a.balance / TOKEN, stake_tokens=a.stake / TOKEN, open_jobs=a.open_jobs,
                   provider_status=a.status, wallet_tokens=svc.market.token_balance(addr) / TOKEN)
    except Exception as e:  # noqa: BLE001  (RPC down: still answer)
        out.update(balance_tokens=None, stake_tokens=None, open_jobs=None, chain_error=str(e))
    return out


def job_view(rec: JobRecord, timeline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One job for /jobs and /jobs/{id}, from its journal record."""
    view: dict[str, Any] = {
        "job_id": rec.job_id, "step": rec.step, "reason": rec.reason,
        "payment_tokens": rec.posted["payment"] / TOKEN, "client": rec.posted["client"],
        "spec_cid": rec.posted["spec_cid"],  # journaled as text (0x-hex where the bytes were not a CID)
    }
    data = {k: v for k, v in rec.data.items() if not k.endswith("_raw")}
    if "run" in data:
        view["result"] = {"output": data["run"]["output"], "finish_reason": data["run"]["finish_reason"],
                          "completion_tokens": data["run"]["completion_tokens"]}
    for k in ("claim_tx", "complete_tx", "result_cid", "claim_gas", "complete_gas", "remote_pin"):
        if k in data:
            view[k] = data[k]
    if timeline is not None:
        view["timeline"] = timeline
    return view


def prometheus(svc: NodeService) -> str:
    """Metrics in Prometheus text format."""
    m = svc.processor.metrics
    lines = ["# HELP hearth_jobs Jobs by journal step.", "# TYPE hearth_jobs gauge"]
    for step, n in sorted(svc.journal.counts().items()):
        lines.append(f'hearth_jobs{{step="{step}"}} {n}')
    for name, kind, help_, value in (
        ("hearth_tokens_generated_total", "counter", "Completion tokens generated.", m.tokens_generated),
        ("hearth_tokens_per_second", "gauge", "Speed of the last job.", m.last_tokens_per_second),
        ("hearth_earnings_wei_total", "counter", "Payments earned this run, in token wei.", m.earnings),
        ("hearth_errors_total", "counter", "Job errors.", m.errors),
        ("hearth_rpc_errors_total", "counter", "RPC errors while watching.", m.rpc_errors),
        ("hearth_inference_seconds_total", "counter", "Time spent in inference.", m.inference_seconds),
        ("hearth_ws_connects_total", "counter", "WebSocket new-block subscriptions opened.",
         int(_attr(svc, "watcher", "ws_connects") or 0)),
        ("hearth_ws_drops_total", "counter", "WebSocket subscriptions dropped.", int(_attr(svc, "watcher", "ws_drops") or 0)),
        ("hearth_ws_pushes_total", "counter", "New-block pushes received.", int(_attr(svc, "watcher", "ws_pushes") or 0)),
    ):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"
