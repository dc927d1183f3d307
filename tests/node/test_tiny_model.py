"""A node serving a tiny generated GGUF (random weights, byte vocabulary): fetched from IPFS by
CID, verified, run, delivered, and re-executed to the same output hash by `hearth job verify`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hearth.dev.localnet import Localnet
from hearth.ipfs.kubo import KuboClient
from hearth.jobs import fetch_result

from tests.fixtures.tiny_gguf import write_tiny_gguf


def test_tiny_model_job_and_verify(env: Localnet, tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    added = env.hearth_json("model", "add", str(model), "--name", "tiny")
    assert added["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    model.unlink()  # the node must fetch the model from IPFS by CID and check its sha256
    node = env.start_node(extra=("--model", "tiny", "--model", "smollm2-135m"))
    out = env.hearth_json("job", "submit", "--model", "tiny", "--raw", "--prompt", "the cat", "--max-tokens", "64", "--public")
    assert out["usage"]["completion_tokens"] > 0
    with KuboClient(env.ipfs_api) as k:
        vr = fetch_result(env.market, k, out["job_id"])
    assert hashlib.sha256(vr.result.output.encode()).hexdigest() == vr.output_hash
    assert node.get(f"/jobs/{out['job_id']}")["step"] == "completed"
    assert any(p.suffix == ".gguf" for p in (env.home / "node" / "models").iterdir())  # downloaded, cached
    verify = env.hearth("job", "verify", str(out["job_id"]))
    assert verify.returncode == 0 and "MATCH" in verify.stdout
