"""The watcher tells a lagging endpoint from a reorg."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hearth_node.journal import Journal
from hearth_node.watcher import Watcher


class FakeEth:
    def __init__(self, head: int) -> None:
        self.block_number = head
        self.asked: list[int] = []

    def get_block(self, n: int) -> dict[str, Any]:
        self.asked.append(n)
        if n > self.block_number:
            raise ValueError(f"block {n} not found")
        return {"hash": n.to_bytes(32, "big")}


def _watcher(tmp_path: Path, head: int) -> tuple[Watcher, FakeEth, Journal, list[tuple[int, int]]]:
    eth = FakeEth(head)
    scanned: list[tuple[int, int]] = []
    market = SimpleNamespace(w3=SimpleNamespace(eth=eth), deploy_block=0,
                             logs=lambda ev, a, b: scanned.append((a, b)) or [])
    journal = Journal(tmp_path / "j.db")
    return Watcher(market, journal, lambda job: None), eth, journal, scanned  # type: ignore[arg-type]


def test_head_behind_the_cursor_is_lag_not_a_reorg(tmp_path: Path) -> None:
    w, eth, journal, scanned = _watcher(tmp_path, head=100)
    w.poll_once()
    assert journal.get_kv("cursor") == "100" and scanned == [(0, 100)]
    eth.block_number = 98  # a load-balanced endpoint answers from a node two blocks behind
    w.poll_once()
    assert journal.get_kv("cursor") == "100", "the cursor must not rewind on lag"
    assert 100 not in eth.asked[1:] and len(scanned) == 1, "no reorg rescan, no logs asked beyond the answer"
    eth.block_number = 103
    w.poll_once()
    assert journal.get_kv("cursor") == "103" and scanned[-1] == (101, 103)
    journal.close()


def test_changed_hash_at_the_cursor_is_a_reorg(tmp_path: Path) -> None:
    w, eth, journal, scanned = _watcher(tmp_path, head=100)
    w.poll_once()
    journal.set_kv("cursor_hash", "00" * 32)  # what a replaced block looks like
    w.poll_once()
    assert scanned[1][0] < 100, "rescanned from below the cursor"
    journal.close()
