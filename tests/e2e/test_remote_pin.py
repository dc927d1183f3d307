"""Results that outlive the home node: a provider node pins each job's spec and result on a remote
pinning service (a second embedded daemon serving the Pinning Service API, fetching from the
node's IPFS as its origin) before completing; with the node and its IPFS gone, the client still
fetches the result from the remote pin and verifies it (`hearth job result`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hearth.dev.localnet import Localnet
from hearth.dev.procs import free_port, port_open, stop_proc, wait_until
from hearth.ipfs.pinning import PinningService

from tests.node.test_node import PROMPT

TOKEN = "pin-token-for-tests"  # noqa: S105  (a test token)


@pytest.fixture
def pin_service(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HEARTH_IPFS_PIN_TOKENS": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "hearth", "ipfs", "daemon", "--data", str(tmp_path / "remote"),
                             "--port", str(port), "--serve-pins"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 30, "pinning service", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_proc(proc)


def test_result_is_fetched_and_verified_from_the_remote_pin_after_the_home_node_is_gone(
        env: Localnet, pin_service: str, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'pin_service_url = "{pin_service}"\npin_service_token = "{TOKEN}"\n'
                      f'pin_origin = "/ip4/127.0.0.1/tcp/{env.ipfs_port}/http"\npin_wait_seconds = 30\n')
    node = env.start_node(extra=("--config", str(config)))
    client_env = {"HEARTH_PIN_SERVICE_URL": pin_service, "HEARTH_PIN_SERVICE_TOKEN": TOKEN,
                  "HEARTH_PIN_ORIGIN": f"http://127.0.0.1:{env.ipfs_port}"}
    out = env.hearth_json("job", "submit", "--prompt", PROMPT, "--max-tokens", "16", extra_env=client_env)
    job_id = out["job_id"]
    assert out["spec_pins"]["service"] in ("queued", "pinning", "pinned")
    view = node.get(f"/jobs/{job_id}")
    assert view["remote_pin"]["result"] == {"service": "pinned"}, view
    with PinningService(pin_service, TOKEN) as ps:
        assert [p.status for p in ps.find(out["result_cid"])] == ["pinned"]
        assert ps.find(out["spec_cid"], "pinned"), "the spec is kept too (client and node both asked)"

    env.kill_node(node)
    stop_proc(env.ipfs_proc)  # the home node's IPFS goes offline
    r = env.hearth("job", "result", str(job_id), "--json")
    assert r.returncode != 0 and "not reachable" in r.stderr, "without the remote pin there is nowhere to read from"
    got = env.hearth_json("job", "result", str(job_id), extra_env=client_env)
    assert got["verified"] is True and got["output"] == out["output"] and got["result_cid"] == out["result_cid"]

    # the client's own IPFS is up but never had the content: the same fallback
    shutil.rmtree(env.home / "ipfs")
    env.ipfs_proc = subprocess.Popen([sys.executable, "-m", "hearth", "ipfs", "daemon", "--data", str(env.home / "ipfs"),
                                      "--port", str(env.ipfs_port)], env=env.env, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(env.ipfs_port), 30, "ipfs daemon", env.ipfs_proc)
    got = env.hearth_json("job", "result", str(job_id), extra_env={"HEARTH_PIN_GATEWAY": pin_service,
                                                                   **client_env})
    assert got["output"] == out["output"]
