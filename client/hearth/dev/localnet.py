"""The one-machine market: anvil, the contracts, the embedded IPFS daemon and provider nodes as
separate processes, on free ports, all stopped by PID on close. The demo, the benchmarks and the
tests start it through this one class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hearth.chain.market import Market, connect
from hearth.dev.deploy import MarketParams
from hearth.dev.devnet import ensure_deployed, start_anvil
from hearth.dev.procs import free_port, port_open, stop_proc, wait_until
from hearth.formats.cid import CID

HEARTH = [sys.executable, "-m", "hearth"]


@dataclass
class NodeProc:
    """A provider node process."""

    proc: subprocess.Popen[bytes]
    api: str
    log: Path
    dev_account: int
    # One client for all polls: httpx.get builds a client, and with it an SSL context (about 50 ms
    # of CPU), on every call; polling ten times a second that took half a core from the node.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def get(self, path: str) -> Any:
        return self.http.get(self.api + path).json()

    def wait_job(self, job_id: int, steps: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.http.get(f"{self.api}/jobs/{job_id}")
            if r.status_code == 200 and r.json()["step"] in steps:
                return dict(r.json())
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} not in {steps}; node log:\n{self.log.read_text()[-3000:]}")


@dataclass
class Localnet:
    """anvil + contracts + IPFS daemon, and the nodes started on them. Use as a context manager
    (or call start() and close())."""

    home: Path
    block_time: float | None = None
    params: MarketParams | None = None  # None: the devnet's
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    nodes: list[NodeProc] = field(default_factory=list)

    def __enter__(self) -> Localnet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Localnet:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.anvil, self.rpc = start_anvil(self.port, self.home / "chain.json", self.block_time, log=self.home / "anvil.log")
        # children see this market's state and deployment record, never the user's
        self.env = {**os.environ, "HEARTH_HOME": str(self.home), "HEARTH_DEPLOYMENTS_DIR": str(self.home / "deploy")}
        for var in ("HEARTH_TEST_CRASH_AT", "HEARTH_TEST_WRONG_OUTPUT"):
            self.env.pop(var, None)
        self.w3 = connect(self.rpc)
        self.deployment, _ = ensure_deployed(self.w3, path=self.home / "deploy" / "devnet.json", params=self.params)
        self.market: Market = self.deployment.market_binding(self.w3)
        self.ipfs_port = free_port()
        self.ipfs_api = f"http://127.0.0.1:{self.ipfs_port}"
        self.ipfs_proc = subprocess.Popen([*HEARTH, "ipfs", "daemon", "--data", str(self.home / "ipfs"),
                                           "--port", str(self.ipfs_port)], env=self.env, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.ipfs_port), 30, "ipfs daemon", self.ipfs_proc)
        return self

    def stop_anvil(self) -> None:
        stop_proc(self.anvil, 15)  # SIGTERM: anvil writes --state

    def restart_anvil(self) -> None:
        self.anvil, _ = start_anvil(self.port, self.home / "chain.json", self.block_time)

    def hearth(self, *args: str, account: int | None = 2, input_: str | None = None,
               extra_env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the hearth CLI as a client would."""
        pre = ["--rpc-url", self.rpc, "--ipfs-api", self.ipfs_api]
        if account is not None:
            pre += ["--account", str(account)]
        return subprocess.run([*HEARTH, *pre, *args], env={**self.env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=timeout, input=input_)

    def hearth_json(self, *args: str, **kw: Any) -> Any:
        r = self.hearth(*args, "--json", **kw)
        assert r.returncode == 0, f"hearth {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    def start_node(self, dev_account: int = 1, crash_at: str | None = None, wait: bool = True,
                   extra: tuple[str, ...] = (), extra_env: dict[str, str] | None = None) -> NodeProc:
        """A provider node process (`hearth node run`) on a free API port, logging to the home folder."""
        port = free_port()
        log = self.home / f"node-{dev_account}-{len(self.nodes)}.log"
        env = {**self.env, **(extra_env or {})}
        if crash_at:
            env["HEARTH_TEST_CRASH_AT"] = crash_at
        with open(log, "ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [*HEARTH, "--rpc-url", self.rpc, "--ipfs-api", self.ipfs_api, "node", "run", "--api-port", str(port),
                 "--dev-account", str(dev_account), *extra],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        node = NodeProc(proc, f"http://127.0.0.1:{port}", log, dev_account)
        self.nodes.append(node)
        if wait:
            wait_until(lambda: node.http.get(node.api + "/health").status_code == 200, 120, "node", proc)
        return node

    def kill_node(self, node: NodeProc) -> None:
        node.proc.kill()
        node.proc.wait()

    def close(self) -> None:
        for n in self.nodes:
            stop_proc(n.proc)
            n.http.close()
        for attr in ("ipfs_proc", "anvil"):
            if hasattr(self, attr):
                stop_proc(getattr(self, attr))

    def block_path(self, cid: CID | str) -> Path:
        """Where the daemon stores the block of a one-block `cid`."""
        digest = (cid if isinstance(cid, CID) else CID.parse(cid)).digest.hex()
        return self.home / "ipfs" / "blocks" / digest[:2] / digest

    def corrupt_block_of(self, cid: CID | str) -> None:
        """Flip a byte of a stored block of `cid` in the daemon's blockstore (tampering)."""
        path = self.block_path(cid)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
