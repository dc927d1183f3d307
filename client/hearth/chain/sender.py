"""The one transaction sender of an account: local nonces, EIP-1559 fees, retries, and
reverts decoded before any gas is paid."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from hearth.chain.revert import as_contract_error
from hearth.errors import ChainError, ContractError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A signed transaction not yet (or not surely) broadcast."""

    tx_hash: str
    raw: bytes
    nonce: int


class Sender:
    """The one transaction sender of an account: local nonce, EIP-1559 fees, retries.

    `fill_nonce` asks the node for the pending count on every transaction, so concurrent
    sends collide; here one lock and a local counter assign nonces, resynced from the chain on
    a nonce error. Every transaction is simulated first (gas estimation), so a revert is raised
    as a ContractError before any gas is paid.
    """

    def __init__(
        self, w3: Web3, account: LocalAccount, retries: int = 5, receipt_timeout: float = 120.0,
        fixed_gas: int | None = None,
    ) -> None:
        self.w3 = w3
        # fixed_gas skips simulation (tests on eth-tester, whose estimator re-executes many
        # times); a revert is then decoded from the mined receipt instead.
        self.fixed_gas = fixed_gas
        self.account = account
        self.address = to_checksum_address(account.address)
        self.retries = retries
        self.receipt_timeout = receipt_timeout
        self._lock = threading.Lock()
        self._nonce: int | None = None
        self._chain_id: int | None = None

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        delay = 0.25
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (ContractError, ChainError):
                raise
            except Exception as e:
                err = as_contract_error(e)
                if err is not None:
                    raise err from e
                if not _is_transient(e) or attempt == self.retries:
                    raise ChainError(f"{what} failed: {e}") from e
                log.warning("%s failed (%s), retrying in %.2fs", what, type(e).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def resync(self) -> None:
        """Forget the local nonce; the next transaction asks the chain."""
        with self._lock:
            self._nonce = None

    def prepare(self, fn: ContractFunction, gas: int | None = None) -> Prepared:
        """Simulate, fill and sign `fn` as a transaction, reserving the next nonce."""
        with self._lock:
            if self._chain_id is None:
                self._chain_id = self._retry("chain id", lambda: self.w3.eth.chain_id)
            if self._nonce is None:
                self._nonce = self._retry(
                    "nonce", lambda: self.w3.eth.get_transaction_count(self.address, "pending")
                )
            params: dict[str, Any] = {"from": self.address, "nonce": self._nonce, "chainId": self._chain_id}
            params.update(self._fees())
            gas = gas or self.fixed_gas
            if gas is None:
                estimate = self._retry("simulation", lambda: fn.estimate_gas({"from": self.address}))
                gas = int(estimate * 1.25) + 10_000
            params["gas"] = gas
            tx = self._retry("build", lambda: fn.build_transaction(cast(Any, params)))
            signed = self.account.sign_transaction(tx)
            self._nonce += 1
            return Prepared("0x" + signed.hash.hex().removeprefix("0x"), bytes(signed.raw_transaction), tx["nonce"])

    def _fees(self) -> dict[str, int]:
        block = self._retry("block", lambda: self.w3.eth.get_block("latest"))
        base = int(block.get("baseFeePerGas", 0) or 0)
        tip = 1_000_000_000
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def broadcast(self, p: Prepared) -> None:
        """Send a signed transaction; re-sending one already known is not an error."""

        def send() -> None:
            try:
                self.w3.eth.send_raw_transaction(p.raw)
            except Exception as e:
                text = str(e).lower()
                if "already known" in text or "already imported" in text:
                    return
                if "nonce too low" in text:
                    if self._receipt_or_none(p.tx_hash) is not None:
                        return  # our own earlier broadcast landed
                    self.resync()
                    raise ChainError(f"nonce {p.nonce} already used by another transaction") from e
                raise

        self._retry("broadcast", send)

    def _receipt_or_none(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(cast(Any, tx_hash))
        except Exception:
            return None

    def wait(self, tx_hash: str, fn: ContractFunction | None = None) -> TxReceipt:
        """Wait for a receipt; a failed transaction raises its decoded error."""
        deadline = time.monotonic() + self.receipt_timeout
        delay = 0.02
        while True:
            receipt = self._receipt_or_none(tx_hash)
            if receipt is not None:
                break
            if time.monotonic() > deadline:
                raise ChainError(f"no receipt for {tx_hash} after {self.receipt_timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        if receipt["status"] != 1:
            err: ChainError | None = None
            if fn is not None:
                try:
                    fn.call({"from": self.address}, block_identifier=receipt["blockNumber"] - 1)
                except Exception as e:
                    err = as_contract_error(e)
            raise err or ChainError(f"transaction {tx_hash} reverted")
        return receipt

    def transact(self, fn: ContractFunction, gas: int | None = None) -> TxReceipt:
        """Simulate, sign, send and wait: the whole path for one call."""
        p = self.prepare(fn, gas)
        try:
            self.broadcast(p)
        except ChainError:
            self.resync()
            raise
        return self.wait(p.tx_hash, fn)


def _is_transient(e: BaseException) -> bool:
    name = type(e).__name__
    text = str(e).lower()
    return (
        "connection" in name.lower()
        or "timeout" in name.lower()
        or "connection" in text
        or "timed out" in text
        or "max retries" in text
    )
