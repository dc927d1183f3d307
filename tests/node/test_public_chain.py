"""A provider node process on a chain that behaves like a public one: its WebSocket endpoint
drops connections (tests/wsproxy.py), and reorgs replace more than one block."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from hearth.dev.localnet import Localnet

from tests.node.test_node import post_only, submit
from tests.wsproxy import WsProxy


def _until(check: Callable[[], bool], what: str, timeout: float = 90, tick: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        tick()
        time.sleep(0.2)


def _config(tmp_path: Path, **fields: object) -> Path:
    f = tmp_path / "node.toml"
    f.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in fields.items()))
    return f


def test_node_completes_jobs_through_a_dropping_websocket(env: Localnet, tmp_path: Path) -> None:
    mine = lambda: env.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # noqa: E731
    with WsProxy(env.rpc.replace("http://", "ws://"), drop_every=2.0, mode="reset") as proxy:
        # polls every 5 s: pushes through the proxy are what make the node quick
        node = env.start_node(extra=("--config", str(_config(tmp_path, ws_url=proxy.url, poll_interval=5.0))))
        for i in range(3):
            out = submit(env, prompt=f"Count to {i + 2}.")
            assert env.market.job(out["job_id"]).state == "Settled"
            connects = node.get("/status")["websocket"]["connects"]
            _until(lambda c=connects: node.get("/status")["websocket"]["connects"] > c, "a reconnection", tick=mine)
        ws = node.get("/status")["websocket"]
        assert ws["connects"] >= 4 and ws["drops"] >= 3 and ws["pushes"] > 0
        assert proxy.counts["drops"] >= 3 and proxy.counts["subscribed"] >= 4
        # and after the last reconnection, a job posted is still picked up and completed
        job_id = post_only(env)
        node.wait_job(job_id, ("completed",), timeout=90)
    assert "websocket reconnected" in node.log.read_text()
