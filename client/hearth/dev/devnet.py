"""The devnet: anvil from npm as a Sepolia-like chain, with Hearth deployed and dev accounts funded."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from hearth.chain import deployments
from hearth.chain.deployments import Deployment
from hearth.chain.market import connect
from hearth.chain.sender import Sender
from hearth.dev import deploy as deploy_mod
from hearth.dev.procs import free_port, pid_alive, port_open, stop_pid, stop_proc, wait_until
from hearth.errors import ChainError, ContractError
from hearth.formats.units import TOKEN
from hearth.settings import DEFAULT_RPC_PORT, data_dir, npm_binary

CHAIN_ID = 11155111  # Sepolia's id, so wallets and tools treat the devnet like Sepolia
DEV_MNEMONIC = "test test test test test test test test test test test junk"  # anvil's public dev mnemonic
DEV_FUNDS = 1_000_000 * TOKEN
DEFAULT_PORT = DEFAULT_RPC_PORT

Account.enable_unaudited_hdwallet_features()


def dev_account(index: int) -> LocalAccount:
    """anvil's dev account `index` (public keys, for the devnet only)."""
    acct: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return acct


def dev_accounts(n: int = 10) -> list[LocalAccount]:
    """The first `n` dev accounts."""
    return [dev_account(i) for i in range(n)]


def anvil_command(port: int, state_file: Path | None, block_time: float | None) -> list[str]:
    """The anvil command line of a Sepolia-like chain.

    `--max-persisted-states 0`: by default anvil writes the state of every block that leaves its
    in-memory window to ~/.foundry/anvil/tmp (about 150 KB a block) and never deletes it, even on
    a clean exit: a day of 12-second blocks is a gigabyte, and this project's test runs had left
    76 GB there. Only old blocks' state is lost (an eth_call at a block far behind the head);
    blocks, receipts and logs stay."""
    cmd = [
        str(npm_binary("anvil", "anvil")), "--port", str(port), "--chain-id", str(CHAIN_ID),
        "--hardfork", "prague", "--accounts", "10", "--mnemonic", DEV_MNEMONIC, "--silent",
        "--max-persisted-states", "0",
    ]
    if state_file is not None:
        cmd += ["--state", str(state_file)]
    if block_time:
        cmd += ["--block-time", str(block_time)]
    return cmd


def _answers(port: int) -> bool:
    return port_open(port) and Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}")).is_connected()


def start_anvil(
    port: int | None = None, state_file: Path | None = None, block_time: float | None = None, log: Path | None = None,
    extra: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """Start anvil (with `extra` arguments) and wait for its RPC; returns the process and its URL.

    A free port is only free when asked: another process can take it before anvil binds it.
    Then this anvil exits while the port answers (the other one's RPC), so a port picked here is
    tried again, and the anvil must still be running once its port answers."""
    for attempt in range(3):
        chosen = port or free_port()
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115  (the child keeps its own descriptor)
        try:
            proc = subprocess.Popen(
                [*anvil_command(chosen, state_file, block_time), *extra], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{chosen}"
        try:
            wait_until(partial(_answers, chosen), 30, "anvil", proc)
            time.sleep(0.2)  # an anvil that lost its port exits as soon as its bind fails
            if proc.poll() is None:
                return proc, url
        except RuntimeError:  # exited while starting
            pass
        stop_proc(proc)
        if port or attempt == 2:
            break
    where = f"; its log: {log}" if log else ""
    raise ChainError(f"anvil exited at start on port {chosen} (is another program listening there?){where}")


@dataclass
class DevnetInfo:
    """What `hearth devnet up` reports."""

    rpc_url: str
    chain_id: int
    pid: int
    deployment: Deployment
    reused: bool


def _state_dir() -> Path:
    d = data_dir() / "devnet"
    d.mkdir(parents=True, exist_ok=True)
    return d


def ensure_deployed(
    w3: Web3, network: str = "devnet", path: Path | None = None, params: deploy_mod.MarketParams | None = None
) -> tuple[Deployment, bool]:
    """Reuse the recorded deployment if it is live on this chain (and, when `params` are given,
    deployed with them), else deploy and fund dev accounts."""
    try:
        d = deployments.load(network, path)
        if deployments.is_live(w3, d) and (params is None or d.params == asdict(params)):
            return d, True
    except Exception:  # noqa: S110  (no or stale record: deploy afresh)
        pass
    deployer = dev_account(0)
    sender = Sender(w3, deployer)
    d = deploy_mod.deploy(w3, sender, network, params or deploy_mod.DEVNET_PARAMS)
    market = d.market_binding(w3)
    deploy_mod.fund(sender, market, dev_accounts()[1:], DEV_FUNDS)
    deployments.save(d, path)
    return d, False


def up(port: int = DEFAULT_PORT, block_time: float | None = None, audit_rate: float | None = None) -> DevnetInfo:
    """Start (or find running) the devnet and make sure Hearth is deployed on it; `audit_rate`
    (0 to 1) deploys a market that audits that share of jobs (a fresh market if the running one
    audits another share)."""
    sd = _state_dir()
    pid_file, meta_file = sd / "anvil.pid", sd / "anvil.json"
    if pid_file.exists() and pid_alive(int(pid_file.read_text())):
        meta = json.loads(meta_file.read_text())
        url, pid = meta["rpc_url"], int(pid_file.read_text())
    else:
        if port_open(port):
            raise ChainError(
                f"port {port} is taken by another program", hint="pass --port N or stop that program"
            )
        proc, url = start_anvil(port, sd / "state.json", block_time, sd / "anvil.log")
        pid = proc.pid
        pid_file.write_text(str(pid))
        meta_file.write_text(json.dumps({"rpc_url": url, "block_time": block_time}))
    w3 = connect(url)
    params = None if audit_rate is None else replace(deploy_mod.DEVNET_PARAMS, audit_bps=round(audit_rate * 10_000))
    d, reused = ensure_deployed(w3, params=params)
    return DevnetInfo(url, int(w3.eth.chain_id), pid, d, reused)


def down() -> bool:
    """Stop the devnet (its state stays on disk for the next `up`). True if one was running."""
    pid_file = _state_dir() / "anvil.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    running = pid_alive(pid)
    stop_pid(pid, timeout=15)  # SIGTERM lets anvil write --state
    pid_file.unlink()
    return running


def status() -> dict[str, object]:
    """Whether the devnet runs, its URL, block and deployment."""
    sd = _state_dir()
    pid_file = sd / "anvil.pid"
    if not pid_file.exists() or not pid_alive(int(pid_file.read_text())):
        return {"running": False}
    url = json.loads((sd / "anvil.json").read_text())["rpc_url"]
    w3 = connect(url)
    out: dict[str, object] = {"running": True, "rpc_url": url, "chain_id": w3.eth.chain_id,
                              "block": w3.eth.block_number, "pid": int(pid_file.read_text())}
    try:
        d = deployments.load("devnet")
        out["deployed"] = deployments.is_live(w3, d)
        out["market"], out["token"] = d.market, d.token
    except Exception:
        out["deployed"] = False
    return out


def rpc_url() -> str:
    """The running devnet's URL (default if unknown)."""
    meta = _state_dir() / "anvil.json"
    if meta.exists():
        return str(json.loads(meta.read_text())["rpc_url"])
    return f"http://127.0.0.1:{DEFAULT_PORT}"


def transact_past_deadline(sender: Sender, fn: Any, devnet: bool, min_gas: int = 0) -> TxReceipt:
    """Send a call that needs time or blocks to have passed (settle, startAudit, finalize,
    expire). An idle automining devnet mines no blocks, so its clock and its block number stand
    still, and anvil simulates a call in the latest block: when the deadline has passed in real
    time (DeadlineNotPassed), or the call needs the hash of the latest block (RandomnessNotReady),
    mine one empty block and try again."""
    try:
        return sender.transact(fn, min_gas=min_gas)
    except ContractError as e:
        if not devnet or e.name not in ("DeadlineNotPassed", "RandomnessNotReady"):
            raise
        if e.name == "DeadlineNotPassed" and time.time() <= int(e.error_args["deadline"]):
            raise
    sender.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    sender.resync()
    return sender.transact(fn, min_gas=min_gas)
