"""`hearth bench latency` on 1-second blocks: the JSON it prints and the blocks a job needs. No
wall-clock time is asserted (the machine may be shared); the block order is deterministic: under
the node's offer one transaction posts and assigns the job, and complete comes in a later block."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_latency_json_shape_and_blocks() -> None:
    p = subprocess.run([sys.executable, "-m", "hearth", "bench", "latency", "--block-time", "1", "--jobs", "1",
                        "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)  # progress goes to stderr: stdout is only the JSON
    assert "job 1:" in p.stderr
    assert {k: r[k] for k in ("block_time", "jobs", "max_tokens")} == {"block_time": 1.0, "jobs": 1, "max_tokens": 8}
    (job,) = r["per_job"]
    assert r["offers"] is True and job["assigned"] is True
    assert job["blocks"] >= 2
    assert job["event_blocks"]["posted"] >= 1
    assert job["event_blocks"]["posted"] == job["event_blocks"]["claimed"] < job["event_blocks"]["completed"]
    assert job["event_blocks"]["completed"] <= job["blocks"]
    assert job["completion_tokens"] == 8
    assert r["median_blocks"] == job["blocks"] and r["median_seconds"] == job["seconds"] > 0
