"""`hearth bench node`'s throughput run on a real node: the node is stopped, the jobs are posted,
the node started again drains them, and the figure is timed from the node's own timeline and
its runner's timings (first inference's start to the last complete). No
wall-clock figure is asserted (the machine may be shared), only that every job completed after
the restart and that the figures come from that drain."""

from __future__ import annotations

from hearth.dev.localnet import Localnet
from hearth.models import bundled
from hearth_node.bench import SHORT_TOKENS, _NodeSide


def test_throughput_drains_jobs_posted_while_the_node_was_down(env: Localnet) -> None:
    model = bundled()
    side = _NodeSide(env, model.cid, model.sha256)
    try:
        first = side.node
        jpm, drained, posting = side.throughput(env, 3)
        assert first.proc.poll() is not None, "the node that ran before the posting was stopped"
        assert side.node is not first and side.node.proc.poll() is None
        views = [side.node.get(f"/jobs/{j}") for j in (1, 2, 3)]
        assert [v["step"] for v in views] == ["completed"] * 3
        at = [{t["step"]: t["at"] for t in v["timeline"]} for v in views]
        bodies = [side.result(j) for j in (1, 2, 3)]
        # timed from the first inference's start (its end less its seconds) to the last complete
        start = min(a["ran"] - float(b["timings"]["inference_seconds"]) for a, b in zip(at, bodies, strict=True))
        assert start >= min(a["seen"] for a in at)  # all posted before the restarted node saw one
        assert drained == max(a["completed"] for a in at) - start > 0 and posting > 0
        assert jpm == 3 / drained * 60
        assert all(int(b["usage"]["completion_tokens"]) <= SHORT_TOKENS for b in bodies)
    finally:
        side.close()

