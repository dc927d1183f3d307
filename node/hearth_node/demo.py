"""scripts/demo: the whole market on one machine. Starts a fresh devnet, the embedded IPFS
daemon and a provider node with the bundled model, submits one prompt through the client,
prints the verified answer, the timeline, transaction hashes and gas, and stops everything."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hearth.dev.localnet import Localnet

DEFAULT_PROMPT = "What is the capital of France? Answer in one word."


def log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def wait_paid(net: Localnet, job_id: int, timeout: float = 30) -> Any:
    """The job's JobSettled log once the node has settled it, or None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        logs = net.market.logs("JobSettled", net.deployment.deploy_block, "latest", jobId=job_id)
        if logs:
            return logs[0]
        time.sleep(0.5)
    return None


def main() -> int:
    prompt = " ".join(sys.argv[1:]) or DEFAULT_PROMPT
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hearth-demo-") as home, Localnet(Path(home)) as net:
        log(f"devnet (anvil, chain id 11155111) at {net.rpc}; JobMarket {net.deployment.market}")
        log(f"embedded IPFS daemon at {net.ipfs_api}")
        try:
            node = net.start_node()
        except (RuntimeError, TimeoutError):
            for n in net.nodes:
                sys.stderr.write(n.log.read_text())
            raise
        log(f"provider node up (dashboard {node.api}/) after {time.monotonic() - t0:.1f}s")
        log(f"submitting: {prompt!r}")
        sub = net.hearth("job", "submit", "--prompt", prompt, "--json", timeout=600)
        if sub.returncode != 0:
            sys.stderr.write(sub.stderr)
            sys.stderr.write(node.log.read_text())
            return 1
        out = json.loads(sub.stdout)
        node_view = node.get(f"/jobs/{out['job_id']}")
        w3 = net.w3
        print(f"\nAnswer (verified against result CID and on-chain commitment): {out['output'].strip()}\n")
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
        # The provider is paid after the audit window (a few seconds on the devnet), by its node.
        paid = wait_paid(net, int(out["job_id"]))
        if paid is not None:
            gas = w3.eth.get_transaction_receipt(paid["transactionHash"])["gasUsed"]
            print(f"    {'settled':10} 0x{bytes(paid['transactionHash']).hex()}  {gas} gas  (provider paid "
                  f"{paid['args']['providerAmount'] / 10**18:g} HRT after the audit window)")
        print(f"\ndone in {time.monotonic() - t0:.1f}s")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
