"""The watcher's new-block subscription through a WebSocket endpoint that drops connections
(tests/wsproxy.py in front of anvil): it reconnects with backoff, subscribes again, and the pushes
keep waking the poller, so jobs are still seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hearth.chain.types import PostedJob
from hearth_node.journal import Journal
from hearth_node.watcher import Watcher

from tests.chain.conftest import Chain
from tests.wsproxy import WsProxy


def _until(check: Callable[[], bool], what: str, timeout: float = 60, tick: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        tick()
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_pushes_keep_coming_after_drops(chain: Chain, tmp_path: Path, mode: str) -> None:
    seen: list[PostedJob] = []
    journal = Journal(tmp_path / "j.db")
    mine = lambda: chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # noqa: E731
    with WsProxy(chain.url.replace("http://", "ws://"), drop_every=1.0, mode=mode) as proxy:
        # polling alone would look once every 10 minutes: only pushes (and reconnects) wake it
        w = Watcher(chain.market(), journal, seen.append, poll_interval=600, ws_url=proxy.url)
        w.ws_retry_first = 0.1
        w.start()
        try:
            _until(lambda: w.ws_connects >= 4, "three reconnections", tick=mine)
            assert proxy.counts["drops"] >= 3 and w.ws_drops >= 3
            assert proxy.counts["subscribed"] >= 4, "every new connection subscribed again"
            pushes, connects = w.ws_pushes, w.ws_connects
            _until(lambda: w.ws_connects > connects and w.ws_pushes > pushes + 2, "pushes after a reconnection",
                   tick=mine)
            # a job posted now is seen without a poll timer: the push wakes the poller
            job_id = chain.post_job(chain.client(3))
            _until(lambda: any(j.job_id == job_id for j in seen), f"job {job_id} seen", tick=mine)
        finally:
            w.stop()
            journal.close()
    assert w.ws_pushes <= proxy.counts["pushes"]


def test_refused_reconnects_back_off_and_recover(chain: Chain, tmp_path: Path) -> None:
    """An endpoint that refuses the handshake for a while after a drop (HTTP 503): the watcher
    keeps trying, and subscribes again once it is let in."""
    journal = Journal(tmp_path / "j.db")
    mine = lambda: chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # noqa: E731
    with WsProxy(chain.url.replace("http://", "ws://"), drop_every=1.0, refuse_for=1.5) as proxy:
        w = Watcher(chain.market(), journal, lambda job: None, poll_interval=600, ws_url=proxy.url)
        w.ws_retry_first = 0.1
        w.start()
        try:
            _until(lambda: w.ws_connects >= 3 and proxy.counts["refused"] >= 2, "reconnection after refusals",
                   tick=mine)
            pushes = w.ws_pushes
            _until(lambda: w.ws_pushes > pushes, "a push after the refusals", tick=mine)
        finally:
            w.stop()
            journal.close()
    # backoff: refused attempts are fewer than 0.1 s polling of the refusal windows would make
    assert proxy.counts["refused"] < 15 * proxy.counts["drops"]
