"""The market's on-chain vocabulary as plain data: job states, terms, the JobPosted event.

The contract takes any bytes as a CID, so the CIDs of a JobPosted log are parsed here, once, where
the event enters: a PostedJob carries CID objects, and a log whose bytes are not a CID raises
InvalidCID (a reader skips such a job; `posted_record` shows it, bytes as hex)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from hearth.chain.states import PHASES as PHASES
from hearth.chain.states import PROVIDER_STATUS as PROVIDER_STATUS
from hearth.chain.states import STATES as STATES
from hearth.errors import InvalidCID
from hearth.formats.cid import CID

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class JobTerms:
    """The terms the market commits to (with the job id); passed back on every call that moves
    a job. The fee, its recipient and the salt are fixed at post and read from JobPosted."""

    client: str
    payment: int
    provider: str
    completion_window: int
    fee_bps: int
    fee_recipient: str
    model_key: bytes
    salt: int

    def as_tuple(self) -> tuple[str, int, str, int, int, str, bytes, int]:
        """ABI form."""
        return (self.client, self.payment, self.provider, self.completion_window, self.fee_bps,
                self.fee_recipient, self.model_key, self.salt)

    def with_provider(self, provider: str) -> JobTerms:
        """The terms after `provider` claimed."""
        return replace(self, provider=provider)


@dataclass(frozen=True)
class Completion:
    """What `complete` fixed about a result (the contract's Result): the commitment to the output
    and the completion block, whose hash draws the audit. Passed back on every later call."""

    commitment: bytes
    block: int

    def as_tuple(self) -> tuple[bytes, int]:
        """ABI form."""
        return (self.commitment, self.block)


def result_commitment(job_id: int, party: str, output_hash: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(jobId, party, outputHash, salt)): what a provider commits to at
    `complete` and an auditor at `commitAudit`. It names the job and the party, so nobody can
    reuse another's commitment, and opens only with the output hash and the salt."""
    return bytes(keccak(abi_encode(["uint256", "address", "bytes32", "bytes32"],
                                   [job_id, to_checksum_address(party), output_hash, salt])))


def completion_from_event(ev: Any) -> Completion:
    """The Completion of a decoded JobCompleted log."""
    return Completion(bytes(ev["args"]["commitment"]), int(ev["blockNumber"]))


@dataclass(frozen=True)
class AuditRecord:
    """A job's running audit (the contract's Audit)."""

    requester: str
    bond: int
    auditors: tuple[str, str]
    commits: tuple[bytes, bytes]
    outputs: tuple[bytes, bytes]
    provider_output: bytes
    round: int
    phase: str
    draw_block: int
    aged: bool = False  # drawn because the completion block's hash had left history
    redrawn: bool = False  # its draw moved to a later block once already (next time: the arbiter)


@dataclass(frozen=True)
class PostedJob:
    """Everything JobPosted tells about a job, its CIDs parsed."""

    job_id: int
    client: str
    provider: str
    model_key: bytes  # keccak256 of the model CID's bytes, as posted
    model_cid: CID
    spec_cid: CID
    payment: int
    claim_deadline: int
    completion_window: int
    fee_bps: int
    block_number: int
    tx_hash: str
    fee_recipient: str = ZERO_ADDRESS
    salt: int = 0

    @property
    def terms(self) -> JobTerms:
        """Terms as committed at post."""
        return JobTerms(self.client, self.payment, self.provider, self.completion_window, self.fee_bps,
                        self.fee_recipient, self.model_key, self.salt)


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


def _fields(ev: Any) -> dict[str, Any]:
    """A JobPosted log's fields under PostedJob's names, the CIDs still raw bytes."""
    a = ev["args"]
    return {
        "job_id": int(a["jobId"]),
        "client": str(a["client"]),
        "provider": str(a["provider"]),
        "model_key": bytes(keccak(bytes(a["modelCid"]))),
        "model_cid": bytes(a["modelCid"]),
        "spec_cid": bytes(a["specCid"]),
        "payment": int(a["payment"]),
        "claim_deadline": int(a["claimDeadline"]),
        "completion_window": int(a["completionWindow"]),
        "fee_bps": int(a["feeBps"]),
        "block_number": int(ev["blockNumber"]),
        "tx_hash": "0x" + bytes(ev["transactionHash"]).hex(),
        "fee_recipient": str(a["feeRecipient"]),
        "salt": int(a["salt"]),
    }


def posted_from_event(ev: Any) -> PostedJob:
    """A PostedJob from a decoded JobPosted log; InvalidCID (naming the job) if its model or spec
    CID bytes are not a CID, which the contract does not check."""
    f = _fields(ev)
    for key, what in (("model_cid", "model"), ("spec_cid", "spec")):
        raw: bytes = f[key]
        try:
            f[key] = CID.parse(raw)
        except InvalidCID:
            shown = "0x" + (raw.hex() if len(raw) <= 40 else f"{raw[:40].hex()}... ({len(raw)} bytes)")
            raise InvalidCID(f"job {f['job_id']}: its {what} CID is not a CID: {shown}",
                             hint="the market takes any bytes as a CID; no provider can serve this job") from None
    return PostedJob(**f)


def cid_text(raw: bytes) -> str:
    """CID bytes from an event as text: the CID, or 0x and the hex of bytes that are not one."""
    try:
        return str(CID.parse(raw))
    except InvalidCID:
        return "0x" + raw.hex()


def posted_record(ev: Any) -> dict[str, Any]:
    """A JobPosted log as JSON-ready plain data, whatever its CID bytes: the CIDs as `cid_text`,
    the model key as hex. For showing a job, and for journaling one that cannot be parsed."""
    f = _fields(ev)
    f.update(model_key=f["model_key"].hex(), model_cid=cid_text(f["model_cid"]), spec_cid=cid_text(f["spec_cid"]))
    return f
