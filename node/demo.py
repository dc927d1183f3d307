"""scripts/demo: the whole market on one machine. Starts a fresh devnet, the embedded IPFS
daemon and a provider node with the bundled model, submits one prompt through the client,
prints the verified answer, the timeline, transaction hashes and gas, and stops everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from client.chain import connect
from client.devnet import ensure_deployed, start_anvil
from client.procs import free_port, port_open, stop_proc, wait_until

DEFAULT_PROMPT = "What is the capital of France? Answer in one word."
HEARTH = [sys.executable, "-m", "client"]


def log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    prompt = " ".join(sys.argv[1:]) or DEFAULT_PROMPT
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="hearth-demo-") as home:
        env = {**os.environ, "HEARTH_HOME": home}
        try:
            t0 = time.monotonic()
            anvil, rpc = start_anvil(state_file=Path(home) / "chain.json", log=Path(home) / "anvil.log")
            procs.append(anvil)
            d, _ = ensure_deployed(connect(rpc))
            log(f"devnet (anvil, chain id 11155111) at {rpc}; JobMarket {d.market}")
            ipfs_port = free_port()
            ipfs_api = f"http://127.0.0.1:{ipfs_port}"
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "client.ipfs_daemon", "--data", f"{home}/ipfs", "--port", str(ipfs_port)],
                env=env))
            wait_until(lambda: port_open(ipfs_port), 30, "IPFS daemon", procs[-1])
            log(f"embedded IPFS daemon at {ipfs_api}")
            api_port = free_port()
            common = ["--rpc-url", rpc, "--ipfs-api", ipfs_api]
            with open(Path(home) / "node.log", "wb") as node_log:  # the child keeps its own descriptor
                procs.append(subprocess.Popen([*HEARTH, *common, "node", "run", "--api-port", str(api_port)],
                                              env=env, stdout=node_log, stderr=subprocess.STDOUT))
            try:
                wait_until(lambda: httpx.get(f"http://127.0.0.1:{api_port}/health").status_code == 200, 120,
                           "provider node", procs[-1])
            except (RuntimeError, TimeoutError):
                sys.stderr.write((Path(home) / "node.log").read_text())
                raise
            log(f"provider node up (dashboard http://127.0.0.1:{api_port}/) after {time.monotonic() - t0:.1f}s")
            log(f"submitting: {prompt!r}")
            sub = subprocess.run([*HEARTH, *common, "job", "submit", "--prompt", prompt, "--json"],
                                 env=env, capture_output=True, text=True, timeout=600)
            if sub.returncode != 0:
                sys.stderr.write(sub.stderr)
                sys.stderr.write((Path(home) / "node.log").read_text())
                return 1
            out = json.loads(sub.stdout)
            node_view = httpx.get(f"http://127.0.0.1:{api_port}/jobs/{out['job_id']}").json()
            w3 = connect(rpc)
            print(f"\nAnswer (verified against result CID and on-chain hash): {out['output'].strip()}\n")
            print(f"job {out['job_id']}  provider {out['provider']}")
            print(f"  result  {out['result_cid']}  sha256(output) {out['output_sha256']}")
            print("  client timeline:")
            for t in out["timeline"]:
                print(f"    {t['elapsed']:7.2f}s  {t['state']}")
            start = node_view["timeline"][0]["at"]
            print("  node timeline:")
            for t in node_view["timeline"]:
                print(f"    {t['at'] - start:7.2f}s  {t['step']}")
            print("  transactions:")
            seen = set()
            for name, tx in out["transactions"].items():
                if tx in seen:
                    continue
                seen.add(tx)
                gas = w3.eth.get_transaction_receipt(tx)["gasUsed"]
                print(f"    {name:10} {tx}  {gas} gas")
            print(f"\ndone in {time.monotonic() - t0:.1f}s")
            return 0
        finally:
            for p in reversed(procs):
                stop_proc(p)


if __name__ == "__main__":
    sys.exit(main())
