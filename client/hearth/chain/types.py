"""The market's on-chain vocabulary as plain data: job states, terms, the JobPosted event."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from eth_utils import keccak

STATES = ("None", "Posted", "Claimed", "Completed", "Disputed", "Settled", "Cancelled", "Expired", "Refunded")
PROVIDER_STATUS = ("None", "Active", "Unbonding")
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
        fee_recipient=str(a["feeRecipient"]),
        salt=int(a["salt"]),
    )
