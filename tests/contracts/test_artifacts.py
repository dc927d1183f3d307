"""The committed artifacts are exactly what a fresh offline compile produces."""

from __future__ import annotations

import json

from hearth.dev.compile import CONTRACT_NAMES, TEST_CONTRACT_NAMES, artifact_path, compile_contracts, render


def test_fresh_compile_matches_committed_artifacts() -> None:
    fresh = compile_contracts()
    assert set(fresh) == set(CONTRACT_NAMES + TEST_CONTRACT_NAMES)
    for name, art in fresh.items():
        committed = artifact_path(name).read_text()
        assert render(art) == committed, f"{name}: artifacts are stale; run scripts/compile and commit"


def test_artifacts_pin_prague_and_optimizer() -> None:
    for name in CONTRACT_NAMES + TEST_CONTRACT_NAMES:
        art = json.loads(artifact_path(name).read_text())
        assert art["compiler"]["settings"]["evmVersion"] == "prague"
        assert art["compiler"]["settings"]["optimizer"]["enabled"] is True
        assert art["compiler"]["version"] == "0.8.30"


def test_only_deployed_contracts_ship_as_package_data() -> None:
    from hearth.settings import ARTIFACTS_DIR

    assert sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json")) == sorted(CONTRACT_NAMES)
