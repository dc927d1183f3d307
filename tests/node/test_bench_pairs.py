"""`hearth bench node`'s pairing, with stand-ins for the node and plain llama-cpp-python: the
order flips each pair, the reported ratio is the median of the pairs' ratios, and every pair's
ratio is reported."""

from __future__ import annotations

from typing import Any

from hearth_node import bench


class _Side:
    def __init__(self, name: str, speeds: list[float], order: list[str]) -> None:
        self.name, self.speeds, self.order = name, speeds, order

    def spec(self, messages: Any, max_tokens: int) -> str:
        return "story"

    def story_speed(self, story: str) -> tuple[float, int]:
        self.order.append(self.name)
        return self.speeds.pop(0), 200

    def speed(self, messages: Any, max_tokens: int) -> tuple[float, int]:
        return self.story_speed("story")


def test_pairs_alternate_and_report_median_of_ratios() -> None:
    order: list[str] = []
    node = _Side("node", [90.0, 100.0, 50.0], order)
    plain = _Side("plain", [100.0, 100.0, 100.0], order)
    r = bench._pairs(node, plain, 3, lambda _: None)  # type: ignore[arg-type]
    assert order == ["node", "plain", "plain", "node", "node", "plain"]
    assert r["tokens_per_s_pair_ratios"] == [0.9, 1.0, 0.5]
    assert r["tokens_per_s_ratio_median"] == 0.9  # one disturbed pair does not move it
    assert r["tokens_per_s_ratio"] == 1.0  # best of each side, the figure kept from before
    assert r["completion_tokens"] == {"node": 200, "plain": 200}
