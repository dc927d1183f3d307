"""Node settings: the commented file from `hearth node init` loads; flags beat env beat file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hearth_node.config import commented_config, load_settings
from pydantic import ValidationError


def test_init_file_loads_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "node.toml"
    f.write_text(commented_config().replace("api_port = 8700", "api_port = 8801")
                 .replace("max_tokens = 1024", "max_tokens = 300"))
    s = load_settings(f)
    assert (s.network, s.models, s.api_port, s.max_tokens) == ("devnet", ["smollm2-135m"], 8801, 300)
    monkeypatch.setenv("HEARTH_API_PORT", "8802")
    assert load_settings(f).api_port == 8802  # env beats the file
    assert load_settings(f, api_port=8803).api_port == 8803  # flags beat env
    assert load_settings(f).max_tokens == 300


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="keystore must be set"):
        load_settings(None, network="sepolia")
    f = tmp_path / "bad.toml"
    f.write_text("no_such_setting = 1\n")
    with pytest.raises(ValidationError):
        load_settings(f)
