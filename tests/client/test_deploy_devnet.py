"""`hearth deploy` to any chain with a keystore, and `hearth devnet up|down|status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hearth.dev.devnet import dev_account
from hearth.dev.localnet import HEARTH, Localnet
from hearth.dev.procs import free_port


def test_deploy_with_keystore_writes_record(env: Localnet, tmp_path: Path) -> None:
    key = tmp_path / "key.hex"
    key.write_text(dev_account(9).key.hex())
    imported = env.hearth_json("account", "import", "--key-file", str(key), extra_env={"HEARTH_PASSWORD": "pw"})
    out = env.hearth_json("--keystore", imported["keystore"], "deploy", "--network", "testnet", "--dispute-window",
                          "30m", account=None, extra_env={"HEARTH_PASSWORD": "pw"})
    record = json.loads((Path(env.env["HEARTH_DEPLOYMENTS_DIR"]) / "testnet.json").read_text())
    assert record["chain_id"] == 11155111 and record["deployer"] == dev_account(9).address
    assert record["params"]["dispute_window"] == 1800
    assert set(record["artifacts_sha256"]) == {"HearthToken", "SimpleArbiter", "JobAudits", "JobMarket"}
    assert record["params"]["audit_bps"] == 1000 and record["params"]["collateral_bps"] == 150_000
    for addr in (out["market"], out["token"], out["arbiter"]):
        assert len(env.w3.eth.get_code(addr)) > 0
    assert record["deploy_block"] <= env.w3.eth.block_number


def test_devnet_up_down_up_reuses_chain(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_DEPLOYMENTS_DIR": str(tmp_path / "dep")}
    port = str(free_port())

    def hearth(*args: str) -> dict:  # type: ignore[type-arg]
        r = subprocess.run([*HEARTH, *args, "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    try:
        first = hearth("devnet", "up", "--port", port)
        assert first["chain_id"] == 11155111 and first["reused_deployment"] is False
        assert first["rpc_url"].endswith(port)
        record = json.loads((tmp_path / "dep" / "devnet.json").read_text())
        assert record["market"] == first["market"]
        assert hearth("devnet", "status")["running"] is True
        assert hearth("devnet", "down")["stopped"] is True
        assert hearth("devnet", "status")["running"] is False
        second = hearth("devnet", "up", "--port", port)
        assert second["reused_deployment"] is True and second["market"] == first["market"]
    finally:
        subprocess.run([*HEARTH, "devnet", "down"], env=env, capture_output=True, timeout=60)
    _ = sys
