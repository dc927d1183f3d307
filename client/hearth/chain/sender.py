"""The one transaction sender of an account: local nonces, EIP-1559 fees read from the chain
under an operator's ceiling, replacement of transactions that are not mined, retries, and
reverts decoded before any gas is paid."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from hearth.chain.revert import as_contract_error
from hearth.errors import ChainError, ContractError

log = logging.getLogger(__name__)

GWEI = 10**9
BUMP = 1.125  # nodes refuse a replacement that raises maxFee or tip by less (geth: 10%, others 12.5%)
# What nodes answer to a transaction refused for paying too little (geth, erigon, nethermind, anvil/reth).
_TOO_CHEAP = ("underpriced", "fee too low", "less than block base fee", "fee cap less than", "feecap too low",
              "max fee per gas less than")
URGENT_BUMP = 2.0  # fees double per replacement when the deadline is only a few blocks away
FEE_BLOCKS = 10  # blocks of eth_feeHistory the tip suggestion is the median of
TIP_PERCENTILE = 50


@dataclass(frozen=True)
class Prepared:
    """A signed transaction not yet (or not surely) broadcast. `raw` holds everything needed to
    re-sign it with other fees (`unsigned()`), so a journal of these three fields suffices."""

    tx_hash: str
    raw: bytes
    nonce: int

    def unsigned(self) -> dict[str, Any]:
        """The fields the signature covers, decoded from `raw` (an EIP-1559 transaction)."""
        try:
            tx = dict(TypedTransaction.from_bytes(HexBytes(self.raw)).as_dict())
        except Exception as e:
            raise ChainError(f"transaction {self.tx_hash} is not an EIP-1559 transaction: {e}") from e
        for k in ("v", "r", "s"):
            tx.pop(k, None)
        if not tx.get("to"):
            tx.pop("to", None)  # a contract creation
        return tx

    @property
    def max_fee(self) -> int:
        """maxFeePerGas of this version, in wei."""
        return int(self.unsigned()["maxFeePerGas"])

    @property
    def tip(self) -> int:
        """maxPriorityFeePerGas of this version, in wei."""
        return int(self.unsigned()["maxPriorityFeePerGas"])


def _scaled(x: int, factor: float) -> int:
    """ceil(x * factor) in integers (fees in wei exceed a float's exact range), and > x."""
    per_mille = round(factor * 1000)
    return max(x + 1, -(-x * per_mille // 1000))


class Sender:
    """The one transaction sender of an account: local nonce, fees from the chain, replacement.

    `fill_nonce` asks the node for the pending count on every transaction, so concurrent
    sends collide; here one lock and a local counter assign nonces, resynced from the chain on
    a nonce error. Every transaction is simulated first (gas estimation), so a revert is raised
    as a ContractError before any gas is paid.

    Fees: the next block's base fee and the median tip of recent blocks (eth_feeHistory, else
    the latest block and eth_maxPriorityFeePerGas), maxFee = 2 x base + tip (room for six full
    blocks of base-fee rises). `max_fee_per_gas` is the operator's ceiling (None: none): no
    transaction is signed with a higher maxFee, and one whose next-block base fee plus
    `min_tip` is above it is refused with a ChainError.

    Replacement (`send`): a transaction not mined `wait_blocks` blocks after it was sent is
    re-signed with the same nonce and fees raised by at least 12.5% (and to at least 2 x the
    base fee now + the tip now), up to the ceiling; within `urgent_blocks` of the caller's
    deadline fees double and the wait is one block; past the deadline nothing is bumped. A
    chain that mines no block meanwhile (an idle automining devnet) gets the replacement after
    twice the time the blocks would take (`block_time`: None measures it from the chain).
    """

    def __init__(
        self, w3: Web3, account: LocalAccount, retries: int = 5, receipt_timeout: float = 120.0,
        fixed_gas: int | None = None, *, max_fee_per_gas: int | None = None, min_tip: int = 10**6,
        wait_blocks: int = 3, urgent_blocks: int = 5, block_time: float | None = None,
    ) -> None:
        self.w3 = w3
        # fixed_gas skips simulation (tests on eth-tester, whose estimator re-executes many
        # times); a revert is then decoded from the mined receipt instead.
        self.fixed_gas = fixed_gas
        self.account = account
        self.address = to_checksum_address(account.address)
        self.retries = retries
        self.receipt_timeout = receipt_timeout
        self.max_fee_per_gas = max_fee_per_gas
        self.min_tip = min_tip
        self.wait_blocks = max(1, wait_blocks)
        self.urgent_blocks = urgent_blocks
        self.block_time = block_time
        self._lock = threading.Lock()
        self._nonce: int | None = None
        self._chain_id: int | None = None
        self._fee_history_ok = True  # False once the node answered without base fees (eth-tester)

    def _retry(self, what: str, fn: Callable[[], Any], optional: bool = False) -> Any:
        """`fn()` with retries of transient failures; a revert raises its ContractError; a
        permanent failure raises ChainError, or returns None when `optional`."""
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
                if not _is_transient(e) and optional:
                    log.debug("%s unavailable: %s", what, e)
                    return None
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

    # ---- fees
    def fee_quote(self) -> tuple[int, int]:
        """(base fee of the next block, suggested tip), in wei, from the chain."""
        base: int | None = None
        tip: int | None = None
        if self._fee_history_ok:
            h = self._retry("fee history", lambda: self.w3.eth.fee_history(FEE_BLOCKS, "latest", [TIP_PERCENTILE]),
                            optional=True)
            fees = list(h.get("baseFeePerGas") or []) if h else []
            if fees:
                base = int(fees[-1])  # the last entry is the block after `latest`
                rewards = sorted(int(r[0]) for r in h.get("reward") or [] if r and int(r[0]) > 0)
                tip = rewards[len(rewards) // 2] if rewards else None  # empty blocks say nothing
            else:
                self._fee_history_ok = False
        if base is None:
            block = self._retry("block", lambda: self.w3.eth.get_block("latest"))
            base = int(block.get("baseFeePerGas", 0) or 0)
        if tip is None:
            tip = self._retry("priority fee", lambda: self.w3.eth.max_priority_fee, optional=True)
        return base, max(self.min_tip, int(tip or 0))

    def _fees(self) -> dict[str, int]:
        base, tip = self.fee_quote()
        max_fee = 2 * base + tip
        ceiling = self.max_fee_per_gas
        if ceiling is not None and max_fee > ceiling:
            if base + self.min_tip > ceiling:
                raise ChainError(
                    f"fees are above the ceiling: the next block's base fee is {base / GWEI:.3f} gwei (+ a tip of at "
                    f"least {self.min_tip / GWEI:.3f}), the ceiling (max fee per gas) is {ceiling / GWEI:.3f} gwei",
                    hint="wait for the base fee to fall, or raise the max fee per gas in the configuration",
                )
            max_fee, tip = ceiling, min(tip, ceiling - base)
        return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}

    # ---- signing
    def _sign(self, tx: dict[str, Any]) -> Prepared:
        signed = self.account.sign_transaction(tx)
        return Prepared("0x" + signed.hash.hex().removeprefix("0x"), bytes(signed.raw_transaction), int(tx["nonce"]))

    def prepare(self, fn: ContractFunction, gas: int | None = None, min_gas: int = 0) -> Prepared:
        """Simulate, fill and sign `fn` as a transaction, reserving the next nonce. `min_gas`:
        the least gas limit, for a call whose cost depends on what lands before it in its block
        (the estimate is of the state now)."""
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
                gas = max(int(estimate * 1.25) + 10_000, min_gas)
            params["gas"] = gas
            tx = self._retry("build", lambda: fn.build_transaction(cast(Any, params)))
            p = self._sign(tx)
            self._nonce += 1
            return p

    def bump(self, p: Prepared, factor: float = BUMP) -> Prepared:
        """`p` re-signed with the same nonce and fees raised by `factor` (at least 12.5%, which
        nodes require of a replacement) and to at least what the chain asks now, capped by the
        ceiling; a ChainError when the ceiling leaves no room for a valid replacement."""
        tx = p.unsigned()
        old_max, old_tip = int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"])
        base, tip_now = self.fee_quote()
        f = max(factor, BUMP)
        tip = max(_scaled(old_tip, f), tip_now)
        max_fee = max(_scaled(old_max, f), 2 * base + tip)
        if self.max_fee_per_gas is not None:
            max_fee = min(max_fee, self.max_fee_per_gas)
            tip = min(tip, max_fee)
        if max_fee < _scaled(old_max, BUMP) or tip < _scaled(old_tip, BUMP):
            raise ChainError(
                f"cannot replace {p.tx_hash}: a 12.5% higher maxFee ({_scaled(old_max, BUMP) / GWEI:.3f} gwei) is "
                f"above the ceiling of {(self.max_fee_per_gas or 0) / GWEI:.3f} gwei",
                hint="raise the max fee per gas in the configuration, or wait for the base fee to fall",
            )
        tx.update(maxFeePerGas=max_fee, maxPriorityFeePerGas=tip)
        return self._sign(tx)

    # ---- sending
    def _push(self, p: Prepared) -> str:
        """Broadcast `p`: "sent", "known" (already in the pool), "underpriced" (refused for its
        fees: another version pays more, or it is below the base fee, which anvil and some nodes
        refuse instead of queueing) or "nonce_used" (this nonce is mined, by a version or not)."""

        def send() -> str:
            try:
                self.w3.eth.send_raw_transaction(p.raw)
                return "sent"
            except Exception as e:
                text = str(e).lower()
                if "already known" in text or "already imported" in text or "known transaction" in text:
                    return "known"
                if "nonce too low" in text or "nonce has already been used" in text or "oldnonce" in text:
                    return "nonce_used"
                if any(t in text for t in _TOO_CHEAP):
                    return "underpriced"
                raise

        return cast(str, self._retry("broadcast", send))

    def broadcast(self, p: Prepared) -> None:
        """Send a signed transaction; re-sending one already known is not an error."""
        status = self._push(p)
        if status == "nonce_used" and self._receipt_or_none(p.tx_hash) is None:
            self.resync()
            raise ChainError(f"nonce {p.nonce} already used by another transaction")
        if status == "underpriced":
            raise ChainError(f"transaction {p.tx_hash} refused: another one with nonce {p.nonce} pays more")

    def _receipt_or_none(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(cast(Any, tx_hash))
        except Exception:
            return None

    def _checked(self, receipt: TxReceipt, fn: ContractFunction | None) -> TxReceipt:
        """The receipt, or the decoded error of a failed transaction."""
        if receipt["status"] != 1:
            err: ChainError | None = None
            if fn is not None:
                try:
                    fn.call({"from": self.address}, block_identifier=receipt["blockNumber"] - 1)
                except Exception as e:
                    err = as_contract_error(e)
            raise err or ChainError(f"transaction {Web3.to_hex(receipt['transactionHash'])} reverted")
        return receipt

    def wait(self, tx_hash: str, fn: ContractFunction | None = None) -> TxReceipt:
        """Wait for a receipt; a failed transaction raises its decoded error."""
        deadline = time.monotonic() + self.receipt_timeout
        delay = 0.02
        while True:
            receipt = self._receipt_or_none(tx_hash)
            if receipt is not None:
                return self._checked(receipt, fn)
            if time.monotonic() > deadline:
                raise ChainError(f"no receipt for {tx_hash} after {self.receipt_timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _block_seconds(self) -> float:
        """Seconds per block: configured, else measured once over the last 20 blocks."""
        if self.block_time is None:
            try:
                latest = self.w3.eth.get_block("latest")
                n = min(20, int(latest["number"]))
                older = self.w3.eth.get_block(int(latest["number"]) - n) if n else latest
                self.block_time = max(1.0, (int(latest["timestamp"]) - int(older["timestamp"])) / n) if n else 12.0
            except Exception:
                return 12.0  # Ethereum's slot time, until the chain answers
        return self.block_time

    def urgency(self, deadline: float | None, chain_now: float) -> tuple[float, int] | None:
        """(fee factor, blocks to wait) for the next replacement, or None past the deadline."""
        if deadline is None:
            return BUMP, self.wait_blocks
        left = (deadline - chain_now) / self._block_seconds()
        if left <= 0:
            return None
        if left < self.urgent_blocks:
            return URGENT_BUMP, 1
        return BUMP, self.wait_blocks

    def send(
        self, tx: ContractFunction | Prepared, deadline: float | None = None,
        on_signed: Callable[[Prepared], None] | None = None, *, fn: ContractFunction | None = None,
        gas: int | None = None, previous: Sequence[Prepared] = (), min_gas: int = 0,
    ) -> TxReceipt:
        """Send `tx` and see it mined, replacing it while it is not; returns the receipt of the
        version that was mined (its `transactionHash` says which).

        `tx` is a function (prepared here: simulated, signed with the next nonce) or an already
        signed Prepared (e.g. re-sent from a journal after a restart). `on_signed` is called
        with every version this call signs, before that version is broadcast: a journal that
        records them all can recognise whichever is mined after a crash (if it raises, that
        version is not broadcast and the exception ends the call). `previous` are versions
        with the same nonce signed before (by an earlier run): their receipts are checked too.
        `deadline` (unix time of the chain; None: no deadline) makes the bumping more
        aggressive as it nears and stops it once passed. `fn` decodes a revert when `tx` is a
        Prepared. Raises the decoded ContractError if the mined version reverted, ChainError
        if no version is mined within `receipt_timeout` seconds or another transaction took
        the nonce.
        """
        if isinstance(tx, Prepared):
            p = tx
        else:
            fn = tx
            p = self.prepare(tx, gas, min_gas)
            if on_signed is not None:
                on_signed(p)
        versions = [*previous, p]
        try:
            status = self._push(p)
        except ChainError:
            self.resync()
            raise
        stop_at = time.monotonic() + self.receipt_timeout
        # The head is read only after the first receipt check: on an automining chain the
        # receipt is already there and sending costs no extra call.
        sent_block: int | None = None
        sent_time = time.monotonic()
        nonce_used_time = sent_time if status == "nonce_used" else None
        wait, can_bump, delay = self.wait_blocks, True, 0.02
        while True:
            for v in reversed(versions):
                receipt = self._receipt_or_none(v.tx_hash)
                if receipt is not None:
                    if v is not versions[-1]:
                        log.info("nonce %d: version %s was mined", v.nonce, v.tx_hash)
                    return self._checked(receipt, fn)
            now = time.monotonic()
            if now > stop_at:
                # The nonce may be in no pool at all (every version refused or dropped): ask the
                # chain's pending count next time rather than leave a gap that blocks the next ones.
                self.resync()
                raise ChainError(f"none of {len(versions)} version(s) of nonce {p.nonce} mined after "
                                 f"{self.receipt_timeout:.0f}s (last {versions[-1].tx_hash})")
            if nonce_used_time is not None and now - nonce_used_time > max(3.0, 2 * self._block_seconds()):
                # 'nonce too low' and, a while later (a load-balanced endpoint may answer the
                # receipt from a node a block behind), no receipt of ours: another transaction.
                self.resync()
                raise ChainError(f"nonce {p.nonce} already used by another transaction")
            number, timestamp = self._head()
            if sent_block is None:
                sent_block = number
                first_plan = self.urgency(deadline, timestamp)
                wait = first_plan[1] if first_plan else wait  # near the deadline, replace after one block
            # A chain that mines no block (an idle automining devnet, a stalled endpoint) gets its
            # replacement after twice the time those blocks would take.
            due = number >= sent_block + wait or now - sent_time > 2 * wait * self._block_seconds()
            if can_bump and due:
                plan = self.urgency(deadline, timestamp)
                if plan is None:
                    can_bump = False
                    log.warning("nonce %d: deadline passed, no more replacements", p.nonce)
                else:
                    factor, wait = plan
                    try:
                        nxt = self.bump(versions[-1], factor)
                    except ChainError as e:
                        can_bump = False
                        log.warning("nonce %d: %s", p.nonce, e)
                    else:
                        if on_signed is not None:
                            on_signed(nxt)
                        versions.append(nxt)
                        status = self._push(nxt)
                        log.info("nonce %d: replaced by %s (maxFee %.3f gwei, %s)", p.nonce, nxt.tx_hash,
                                 nxt.max_fee / GWEI, status)
                        sent_block, sent_time = number, now
                        if status == "nonce_used" and nonce_used_time is None:
                            nonce_used_time = now
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _head(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        block = self._retry("block", lambda: self.w3.eth.get_block("latest"))
        return int(block["number"]), int(block["timestamp"])

    def transact(self, fn: ContractFunction, gas: int | None = None, deadline: float | None = None,
                 min_gas: int = 0) -> TxReceipt:
        """Simulate, sign, send and wait (replacing while not mined): the whole path for one call."""
        return self.send(fn, deadline, gas=gas, min_gas=min_gas)


def _is_transient(e: BaseException) -> bool:
    """Failures worth retrying: the connection, a timeout, a rate limit or a gateway error
    (an endpoint that is not RetryingHTTPProvider answers those as HTTP errors)."""
    name = type(e).__name__.lower()
    text = str(e).lower()
    return (
        "connection" in name
        or "timeout" in name
        or "connection" in text
        or "timed out" in text
        or "max retries" in text
        or "429 client error" in text
        or "too many requests" in text
        or "rate limit" in text
        or any(f"{code} server error" in text for code in (500, 502, 503, 504))
    )
