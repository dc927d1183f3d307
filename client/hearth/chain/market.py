"""Typed JobMarket/HearthToken bindings and the RPC connection."""

from __future__ import annotations

import threading
from typing import Any, cast

from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from hearth.chain import artifacts
from hearth.chain.revert import as_contract_error
from hearth.chain.rpc import LogSpan, RetryingHTTPProvider
from hearth.chain.types import (
    PHASES,
    PROVIDER_STATUS,
    STATES,
    ZERO_ADDRESS,
    Account,
    AuditRecord,
    Completion,
    JobSlot,
    JobTerms,
    PostedJob,
    completion_from_event,
    posted_from_event,
)
from hearth.errors import ChainError


def connect(rpc_url: str, timeout: float = 10.0, retry_budget: float = 60.0) -> Web3:
    """A Web3 connected to `rpc_url`; raises ChainError naming the URL when it is unreachable.

    Calls that the endpoint rate-limits (HTTP 429, a "rate limit" JSON-RPC error) or that a
    gateway fails (5xx) are retried, honouring Retry-After, for up to `retry_budget` seconds of
    waiting per call (see hearth.chain.rpc)."""
    if rpc_url.startswith(("ws://", "wss://")):
        raise ChainError(f"use the HTTP URL for RPC, not {rpc_url}")
    w3 = Web3(RetryingHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, max_wait=retry_budget))
    try:
        w3.eth.chain_id  # noqa: B018  (a cheap call that proves the endpoint answers)
    except Exception as e:
        raise ChainError(
            f"cannot reach the RPC endpoint {rpc_url}: {type(e).__name__}",
            hint="start the devnet (hearth devnet up) or pass --rpc-url",
        ) from e
    return w3



# Events whose first indexed argument is the job id: a job's whole history comes from one get_logs.
JOB_EVENTS = frozenset({
    "JobPosted", "JobClaimed", "JobCompleted", "JobSettled", "JobCancelled", "JobDeclined", "JobExpired", "JobDisputed",
    "JobRefunded", "AuditStarted", "AuditorAssigned", "AuditCommitted", "OutputRevealed", "AuditMismatch",
    "AuditSkipped", "AuditEnded", "AuditorPaid", "Slashed",
})


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
        # get_logs block spans this endpoint accepts, learned from its refusals (hearth.chain.rpc)
        self.log_span = LogSpan()
        self._head_seen = 0
        self._head_lock = threading.Lock()
        self._topics = {  # event name -> topic 0
            str(e["name"]): bytes(keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"))
            for e in self.contract.abi if e["type"] == "event"
        }
        self._job_events = {t: name for name, t in self._topics.items() if name in JOB_EVENTS}

    # ---- reads
    def call(self, fn: ContractFunction, sender: str | None = None, block: int | str = "latest") -> Any:
        """eth_call (from `sender` if given, in `block`) with custom errors decoded."""
        try:
            return fn.call({"from": sender} if sender else {}, block_identifier=cast(Any, block))
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
        """Seconds after completion during which an audit can be started or requested."""
        return int(self.call(self.contract.functions.disputeWindow()))

    def encryption_key(self, address: str) -> tuple[bytes, int]:
        """The X25519 public key `address` published for private jobs and its version ((0 * 32,
        0) when it has published none)."""
        key, version = self.call(self.contract.functions.encryptionKey(to_checksum_address(address)))
        return bytes(key), int(version)

    def audit(self, job_id: int) -> AuditRecord:
        """A job's running audit (all zero when none)."""
        r = self.call(self.contract.functions.getAudit(job_id))
        return AuditRecord(str(r[0]), int(r[1]), (str(r[2][0]), str(r[2][1])), (bytes(r[3][0]), bytes(r[3][1])),
                           (bytes(r[4][0]), bytes(r[4][1])), bytes(r[5]), int(r[6]), PHASES[int(r[7])], int(r[8]),
                           bool(r[9]), bool(r[10]))

    def completion(self, job_id: int) -> Completion:
        """What `complete` fixed for a job, from its JobCompleted event."""
        logs = self.logs("JobCompleted", self.deploy_block, "latest", jobId=job_id)
        if not logs:
            raise ChainError(f"job {job_id} has not been completed", hint=f"follow it: hearth job status {job_id}")
        return completion_from_event(logs[-1])

    def audit_selected(self, job_id: int, terms: JobTerms, completion: Completion) -> bool:
        """Whether a completed job was drawn for a random audit (RandomnessNotReady until a block
        after its completion exists)."""
        return bool(self.call(self.contract.functions.auditSelected(job_id, terms.as_tuple(), completion.as_tuple())))

    # ---- events
    def head_number(self) -> int:
        """The latest block number, never less than the highest this Market has seen.

        A load-balanced endpoint may answer from a node a block or two behind the one that
        answered before; that is not a reorg, and a head that moved backwards would make a
        watcher rescan (or worse, think blocks vanished). Reorgs are detected from block hashes,
        never from this number going down."""
        try:
            n = int(self.w3.eth.block_number)
        except Exception as e:
            raise ChainError(f"eth_blockNumber failed: {e}") from e
        with self._head_lock:
            self._head_seen = max(self._head_seen, n)
            return self._head_seen

    def logs(self, event: str, from_block: int, to_block: int | str, **topics: Any) -> list[Any]:
        """Decoded logs of `event` in a block range, filtered by indexed arguments.

        A range the endpoint refuses as too large (or as too many results) is split and walked
        in chunks, transparently; see LogSpan."""
        ev = getattr(self.contract.events, event)()

        def query(a: int, b: int | str) -> list[Any]:
            return list(ev.get_logs(from_block=a, to_block=b, argument_filters=topics or None))

        try:
            return self.log_span.fetch(from_block, to_block, query, self.head_number)
        except ChainError:
            raise
        except Exception as e:
            raise ChainError(f"get_logs {event} failed: {e}") from e

    def posted(self, job_id: int) -> PostedJob:
        """The JobPosted event of `job_id`, parsed; InvalidCID if its CID bytes are not CIDs."""
        return posted_from_event(self.posted_log(job_id))

    def posted_log(self, job_id: int) -> Any:
        """The decoded JobPosted log of `job_id`, unparsed (to show a job whatever its bytes)."""
        logs = self.logs("JobPosted", self.deploy_block, "latest", jobId=job_id)
        if not logs:
            raise ChainError(f"job {job_id} not found on this market", hint="check the id: hearth job list")
        return logs[0]

    def history(self, job_id: int) -> list[tuple[str, Any]]:
        """Every event of a job in block order: [(event name, decoded log)], from one get_logs
        (every Job* event indexes the job id first)."""
        raw = self._raw_logs([None, "0x" + job_id.to_bytes(32, "big").hex()], f"job {job_id}")
        out = []
        for lg in raw:
            name = self._job_events.get(bytes(lg["topics"][0]))
            if name is not None:
                out.append((name, getattr(self.contract.events, name)().process_log(lg)))
        return out  # get_logs answers in block and log order

    def record(self, account: str, now: int) -> dict[str, int]:
        """How many JobCompleted, JobDeclined and Slashed logs name `account` (each indexes it
        second), and how many of its JobClaimed jobs are decided by `now` (completed, declined, or
        past their completion deadline: a job still running is neither a success nor a failure),
        from one get_logs over the market's life."""
        names = {self._topics[n]: n for n in ("JobClaimed", "JobCompleted", "JobDeclined", "Slashed")}
        topics = [["0x" + t.hex() for t in names], None, "0x" + bytes(12).hex() + account[2:].lower()]
        counts = dict.fromkeys(names.values(), 0)
        deadlines: dict[int, int] = {}  # claimed job -> its completion deadline (JobClaimed's second word)
        ended: set[int] = set()
        for lg in self._raw_logs(topics, f"the record of {account}"):
            name, job_id = names[bytes(lg["topics"][0])], int.from_bytes(bytes(lg["topics"][1]), "big")
            if name == "JobClaimed":
                deadlines[job_id] = int.from_bytes(bytes(lg["data"])[32:64], "big")
                continue
            counts[name] += 1
            if name != "Slashed":
                ended.add(job_id)
        counts["JobClaimed"] = sum(1 for j, deadline in deadlines.items() if j in ended or deadline < now)
        return counts

    def _raw_logs(self, topics: list[Any], what: str) -> list[Any]:
        """Undecoded logs of this market matching `topics` over its life (LogSpan-chunked)."""
        def query(a: int, b: int | str) -> list[Any]:
            return list(self.w3.eth.get_logs({"address": self.address, "fromBlock": a, "toBlock": cast(Any, b),
                                              "topics": topics}))

        try:
            return self.log_span.fetch(self.deploy_block, "latest", query, self.head_number)
        except ChainError:
            raise
        except Exception as e:
            raise ChainError(f"get_logs for {what} failed: {e}") from e

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
