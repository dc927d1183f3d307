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
    """anvil from npm on a free port, automine, Sepolia-like."""

    name = "anvil"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes]
        self.proc, self.url = start_anvil()
        self.w3 = Web3(Web3.HTTPProvider(self.url))
        self.accounts = dev_accounts(10)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def snapshot(self) -> Any:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snap: Any) -> None:
        self.w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]

    def close(self) -> None:
        stop_proc(self.proc)
