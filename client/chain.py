"""Chain access: one transaction sender per key, typed JobMarket/HearthToken bindings, and
decoding of every custom error into a ContractError carrying its name and arguments."""

from __future__ import annotations

import ast
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from client import artifacts
from client.errors import ChainError, ContractError

log = logging.getLogger(__name__)

STATES = ("None", "Posted", "Claimed", "Completed", "Disputed", "Settled", "Cancelled", "Expired", "Refunded")
PROVIDER_STATUS = ("None", "Active", "Unbonding")
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

_HINTS = {
    "InsufficientBalance": "deposit tokens first: hearth account deposit AMOUNT",
    "ProviderNotActive": "register first: hearth provider register --stake AMOUNT",
    "InvalidClaimDeadline": "the claim deadline must be in the future",
    "DeadlineNotPassed": "wait until the deadline has passed",
    "UnknownJob": "check the job id (hearth job list)",
}


def connect(rpc_url: str, timeout: float = 10.0) -> Web3:
    """A Web3 connected to `rpc_url`; raises ChainError naming the URL when it is unreachable."""
    if rpc_url.startswith(("ws://", "wss://")):
        raise ChainError(f"use the HTTP URL for RPC, not {rpc_url}")
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id  # noqa: B018  (a cheap call that proves the endpoint answers)
    except Exception as e:
        raise ChainError(
            f"cannot reach the RPC endpoint {rpc_url}: {type(e).__name__}",
            hint="start the devnet (hearth devnet up) or pass --rpc-url",
        ) from e
    return w3


# --------------------------------------------------------------------------- errors


def _error_table() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for name in ("JobMarket", "HearthToken", "SimpleArbiter"):
        for item in artifacts.load(name)["abi"]:
            if item["type"] != "error":
                continue
            types = [i["type"] if i["type"] != "tuple" else _tuple_type(i) for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            table[keccak(text=sig)[:4]] = (item["name"], [i["name"] for i in item["inputs"]], types)
    return table


def _tuple_type(item: dict[str, Any]) -> str:
    return "(" + ",".join(_tuple_type(c) if c["type"] == "tuple" else c["type"] for c in item["components"]) + ")"


_ERRORS: dict[bytes, tuple[str, list[str], list[str]]] | None = None


def decode_revert(data: str | bytes) -> ContractError | None:
    """Decode revert data into a ContractError (custom error or Error(string)), or None."""
    global _ERRORS
    if _ERRORS is None:
        _ERRORS = _error_table()
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    if len(raw) < 4:
        return None
    sel, body = raw[:4], raw[4:]
    if sel == keccak(text="Error(string)")[:4]:
        return ContractError("Error", {"message": abi_decode(["string"], body)[0]})
    if sel in _ERRORS:
        name, names, types = _ERRORS[sel]
        values = [to_checksum_address(v) if t == "address" else v for t, v in zip(types, abi_decode(types, body), strict=True)]
        args = {n: (STATES[int(v)] if name == "InvalidState" and n == "state" else v)
                for n, v in zip(names, values, strict=True)}
        return ContractError(name, args, _HINTS.get(name))
    return ContractError("UnknownError", {"data": "0x" + raw.hex()})


def _revert_data(exc: BaseException) -> str | None:
    for cand in (getattr(exc, "data", None), *getattr(exc, "args", ())):
        if isinstance(cand, bytes) and len(cand) >= 4:
            return "0x" + cand.hex()
        if isinstance(cand, str) and cand.startswith("0x") and len(cand) >= 10:
            return cand
        if isinstance(cand, dict) and isinstance(cand.get("data"), str):
            return cast(str, cand["data"])
        if isinstance(cand, str) and cand.startswith("execution reverted: b"):
            # eth-tester renders revert data as a Python bytes literal
            try:
                raw = ast.literal_eval(cand.removeprefix("execution reverted: "))
            except (ValueError, SyntaxError):
                continue
            if isinstance(raw, bytes) and len(raw) >= 4:
                return "0x" + raw.hex()
    cause = exc.__cause__ or exc.__context__
    return _revert_data(cause) if cause is not None and cause is not exc else None


def as_contract_error(exc: BaseException) -> ContractError | None:
    """The ContractError hidden in a web3 exception, if the exception is a revert."""
    data = _revert_data(exc)
    return decode_revert(data) if data else None


# --------------------------------------------------------------------------- sender


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


# --------------------------------------------------------------------------- bindings


@dataclass(frozen=True)
class JobTerms:
    """The terms the market commits to; passed back on every call that moves a job."""

    client: str
    payment: int
    provider: str
    completion_window: int
    fee_bps: int
    model_key: bytes

    def as_tuple(self) -> tuple[str, int, str, int, int, bytes]:
        """ABI form."""
        return (self.client, self.payment, self.provider, self.completion_window, self.fee_bps, self.model_key)

    def with_provider(self, provider: str) -> JobTerms:
        """The terms after `provider` claimed."""
        return JobTerms(self.client, self.payment, provider, self.completion_window, self.fee_bps, self.model_key)


@dataclass(frozen=True)
class PostedJob:
    """Everything JobPosted tells about a job."""

    job_id: int
    client: str
    provider: str
    model_key: bytes
    model_cid: bytes
    spec_cid: bytes
    payment: int
    claim_deadline: int
    completion_window: int
    fee_bps: int
    block_number: int
    tx_hash: str

    @property
    def terms(self) -> JobTerms:
        """Terms as committed at post."""
        return JobTerms(self.client, self.payment, self.provider, self.completion_window, self.fee_bps, self.model_key)


@dataclass(frozen=True)
class Account:
    """An account's internal balance and provider record."""

    balance: int
    stake: int
    open_jobs: int
    unbonding_end: int
    status: str


@dataclass(frozen=True)
class JobSlot:
    """What storage holds of a job."""

    state: str
    deadline: int
    commitment: int


def posted_from_event(ev: Any) -> PostedJob:
    """A PostedJob from a decoded JobPosted log."""
    a = ev["args"]
    return PostedJob(
        job_id=int(a["jobId"]),
        client=a["client"],
        provider=a["provider"],
        model_key=bytes(keccak(bytes(a["modelCid"]))),
        model_cid=bytes(a["modelCid"]),
        spec_cid=bytes(a["specCid"]),
        payment=int(a["payment"]),
        claim_deadline=int(a["claimDeadline"]),
        completion_window=int(a["completionWindow"]),
        fee_bps=int(a["feeBps"]),
        block_number=int(ev["blockNumber"]),
        tx_hash="0x" + bytes(ev["transactionHash"]).hex(),
    )


class Market:
    """Typed wrapper over JobMarket (and its token). Reads are free; writes go through `sender`."""

    def __init__(self, w3: Web3, market_address: str, token_address: str, deploy_block: int = 0) -> None:
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(
            address=to_checksum_address(market_address), abi=artifacts.load("JobMarket")["abi"]
        )
        self.token: Contract = w3.eth.contract(
            address=to_checksum_address(token_address), abi=artifacts.load("HearthToken")["abi"]
        )
        self.address = self.contract.address
        self.deploy_block = deploy_block
        self._job_events = {
            bytes(keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})")): str(e["name"])
            for e in self.contract.abi if e["type"] == "event" and str(e["name"]).startswith("Job")
        }

    # ---- reads
    def call(self, fn: ContractFunction) -> Any:
        """eth_call with custom errors decoded."""
        try:
            return fn.call()
        except Exception as e:
            err = as_contract_error(e)
            if err is not None:
                raise err from e
            raise ChainError(f"call failed: {e}") from e

    def account(self, address: str) -> Account:
        """Internal balance and provider record of `address`."""
        r = self.call(self.contract.functions.getAccount(to_checksum_address(address)))
        return Account(int(r[0]), int(r[1]), int(r[2]), int(r[3]), PROVIDER_STATUS[int(r[4])])

    def job(self, job_id: int) -> JobSlot:
        """State, deadline and commitment of a job."""
        r = self.call(self.contract.functions.getJob(job_id))
        return JobSlot(STATES[int(r[0])], int(r[1]), int(r[2]))

    def token_balance(self, address: str) -> int:
        """Wallet token balance."""
        return int(self.call(self.token.functions.balanceOf(to_checksum_address(address))))

    def serves(self, provider: str, model_cid: bytes) -> bool:
        """Whether `provider` registered this model."""
        return bool(self.call(self.contract.functions.serves(to_checksum_address(provider), keccak(model_cid))))

    def min_price(self, provider: str) -> int:
        """Advertised minimum price of `provider`."""
        return int(self.call(self.contract.functions.minPrice(to_checksum_address(provider))))

    def next_job_id(self) -> int:
        """The id the next job will get."""
        return int(self.call(self.contract.functions.nextJobId()))

    def collateral_for(self, payment: int) -> int:
        """Collateral a claimer locks for `payment`."""
        return int(self.call(self.contract.functions.collateralFor(payment)))

    def dispute_window(self) -> int:
        """Seconds to dispute after completion."""
        return int(self.call(self.contract.functions.disputeWindow()))

    # ---- events
    def logs(self, event: str, from_block: int, to_block: int | str, **topics: Any) -> list[Any]:
        """Decoded logs of `event` in a block range, filtered by indexed arguments."""
        ev = getattr(self.contract.events, event)()
        try:
            return list(
                ev.get_logs(from_block=from_block, to_block=to_block, argument_filters=topics or None)
            )
        except Exception as e:
            raise ChainError(f"get_logs {event} failed: {e}") from e

    def posted(self, job_id: int) -> PostedJob:
        """The JobPosted event of `job_id`."""
        logs = self.logs("JobPosted", self.deploy_block, "latest", jobId=job_id)
        if not logs:
            raise ChainError(f"job {job_id} not found on this market", hint="check the id: hearth job list")
        return posted_from_event(logs[0])

    def history(self, job_id: int) -> list[tuple[str, Any]]:
        """Every event of a job in block order: [(event name, decoded log)], from one get_logs
        (every Job* event indexes the job id first)."""
        try:
            raw = self.w3.eth.get_logs({
                "address": self.address, "fromBlock": self.deploy_block, "toBlock": "latest",
                "topics": [None, "0x" + job_id.to_bytes(32, "big").hex()],
            })
        except Exception as e:
            raise ChainError(f"get_logs for job {job_id} failed: {e}") from e
        out = []
        for lg in raw:
            name = self._job_events.get(bytes(lg["topics"][0]))
            if name is not None:
                out.append((name, getattr(self.contract.events, name)().process_log(lg)))
        return out  # get_logs answers in block and log order

    def current_terms(self, job_id: int) -> JobTerms:
        """The terms now committed for a job (reconstructed from its events)."""
        terms = self.posted(job_id).terms
        claims = self.logs("JobClaimed", self.deploy_block, "latest", jobId=job_id)
        if claims:
            terms = terms.with_provider(claims[-1]["args"]["provider"])
        return terms

    # ---- writes (each returns the function; the caller's Sender sends it)
    def fn(self, name: str, *args: Any) -> ContractFunction:
        """A bound JobMarket function."""
        return cast(ContractFunction, getattr(self.contract.functions, name)(*args))

    def post_params(
        self, model_cid: bytes, spec_cid: bytes, payment: int, claim_deadline: int, completion_window: int,
        provider: str = ZERO_ADDRESS,
    ) -> tuple[bytes, bytes, int, int, int, str]:
        """ABI form of PostParams."""
        return (model_cid, spec_cid, payment, claim_deadline, completion_window, to_checksum_address(provider))

    def job_posted_id(self, receipt: TxReceipt) -> int:
        """The job id a post transaction created."""
        from web3.logs import DISCARD

        evs = self.contract.events.JobPosted().process_receipt(receipt, errors=DISCARD)
        return int(evs[0]["args"]["jobId"])
