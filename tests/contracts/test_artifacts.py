"""The committed artifacts are exactly what a fresh offline compile produces."""

from __future__ import annotations

from client.compile import CONTRACT_NAMES, compile_contracts, render
from client.paths import ARTIFACTS_DIR


def test_fresh_compile_matches_committed_artifacts() -> None:
    fresh = compile_contracts()
    assert set(fresh) == set(CONTRACT_NAMES)
    for name, art in fresh.items():
        committed = (ARTIFACTS_DIR / f"{name}.json").read_text()
        assert render(art) == committed, f"{name}: artifacts are stale; run scripts/compile and commit"


def test_artifacts_pin_prague_and_optimizer() -> None:
    for name in CONTRACT_NAMES:
        import json

        art = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        assert art["compiler"]["settings"]["evmVersion"] == "prague"
        assert art["compiler"]["settings"]["optimizer"]["enabled"] is True
        assert art["compiler"]["version"] == "0.8.30"
