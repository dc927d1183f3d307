"""Gas is deterministic on anvil: the committed table (contracts/gas.json) must not be beaten
upward by more than 1% without being updated (`hearth bench gas --json > contracts/gas.json`)."""

from __future__ import annotations

import json

from hearth.dev.gas import gas_table
from hearth.settings import CONTRACTS_DIR

LIFECYCLE = "lifecycle: postJob + claim + complete"
TARGET = 150_000


def test_gas_within_committed_table() -> None:
    committed = json.loads((CONTRACTS_DIR / "gas.json").read_text())
    measured = gas_table()
    assert set(measured) == set(committed), "functions measured differ from contracts/gas.json: regenerate it"
    grown = {k: (committed[k], v) for k, v in measured.items() if v > committed[k] * 1.01}
    assert not grown, f"gas grew by more than 1% (committed, now): {grown}; update contracts/gas.json if intended"


def test_lifecycle_within_target() -> None:
    committed = json.loads((CONTRACTS_DIR / "gas.json").read_text())
    assert committed[LIFECYCLE] <= TARGET
    assert committed[LIFECYCLE] == committed["postJob"] + committed["claim"] + committed[
        "complete (dispute window 0, pays at once)"]
