"""Chain backends for contract tests: eth-tester (py-evm, in process) and anvil (real devnet).

One suite runs on both; each backend offers the same small interface: accounts with keys,
time travel, snapshot and revert."""

from __future__ import annotations

import subprocess
from typing import Any, Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount
from hearth.dev.devnet import dev_accounts, start_anvil
from hearth.dev.procs import stop_proc
from web3 import Web3


class Backend(Protocol):
    """What a test needs from a chain."""

    name: str
    w3: Web3
    accounts: list[LocalAccount]

    def advance(self, seconds: int) -> None: ...
    def now(self) -> int: ...
    def snapshot(self) -> Any: ...
    def revert(self, snap: Any) -> None: ...
    def close(self) -> None: ...


class EthTesterBackend:
    """py-evm in process, through web3's EthereumTesterProvider."""

    name = "eth-tester"

    def __init__(self) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider

        self.tester = EthereumTester(PyEVMBackend())
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        keys = self.tester.backend.account_keys
        self.accounts = [Account.from_key(k.to_bytes()) for k in keys[:10]]

    def now(self) -> int:
        # the next transaction is mined in the pending block, whose clock may run ahead
        return max(int(self.w3.eth.get_block("latest")["timestamp"]),
                   int(self.tester.get_block_by_number("pending")["timestamp"]))

    def advance(self, seconds: int) -> None:
        # eth-tester has no evm_increaseTime: time_travel mines a block at the new timestamp
        # (counted from the pending block, which may already be ahead of the latest).
        pending = int(self.tester.get_block_by_number("pending")["timestamp"])
        self.tester.time_travel(max(pending, self.now()) + seconds)

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snap: Any) -> None:
        self.tester.revert_to_snapshot(snap)

    def close(self) -> None:
        pass


class AnvilBackend:
    """anvil from npm on a free port, automine, Sepolia-like.

    With `fixed_clock`, time is a function of what the test did, not of the wall clock: the
    genesis time is fixed and each block is one second after its parent (advance jumps exactly).
    A block's hash covers its timestamp, so the hashes, and the audit draws that read them, are
    then the same on every run, and a derandomized hypothesis run reaches the same paths on CI as
    here."""

    name = "anvil"
    GENESIS_TIME = 1_800_000_000

    def __init__(self, fixed_clock: bool = False) -> None:
        self.proc: subprocess.Popen[bytes]
        self.fixed_clock = fixed_clock
        self.proc, self.url = start_anvil(extra=("--timestamp", str(self.GENESIS_TIME)) if fixed_clock else ())
        self.w3 = Web3(Web3.HTTPProvider(self.url))
        self.accounts = dev_accounts(10)
        if fixed_clock:
            self.rpc("anvil_setBlockTimestampInterval", 1)

    def rpc(self, method: str, *params: Any) -> Any:
        return self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        if self.fixed_clock:  # the interval overrides evm_increaseTime; an exact timestamp does not
            self.rpc("evm_setNextBlockTimestamp", self.now() + seconds)
        else:
            self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")

    def snapshot(self) -> Any:
        return self.rpc("evm_snapshot")["result"]

    def revert(self, snap: Any) -> None:
        self.rpc("evm_revert", snap)

    def close(self) -> None:
        stop_proc(self.proc)
