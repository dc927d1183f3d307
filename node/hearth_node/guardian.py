"""The guardian: decides from a job alone whether to take it. Pure: no I/O, no clock reads.

It returns Accepted or Rejected(reason) instead of raising, so the processor logs the reason
and moves on before any gas is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.formats.jobspec import JobSpec


@dataclass(frozen=True)
class Accepted:
    """Take the job."""


@dataclass(frozen=True)
class Rejected:
    """Skip the job, for this reason."""

    reason: str


Decision = Accepted | Rejected


@dataclass(frozen=True)
class Policy:
    """What this node serves and accepts."""

    address: str
    models: dict[bytes, str]  # model CID bytes -> expected GGUF sha256
    min_price: int
    max_tokens: int
    max_spec_bytes: int
    n_ctx: int
    tokens_per_second: float
    safety_seconds: float = 5.0


def check_event(job: PostedJob, policy: Policy, now: int) -> Decision:
    """First look, from the on-chain event: is it for us, is it worth it, is there time?"""
    if job.provider != ZERO_ADDRESS and job.provider.lower() != policy.address.lower():
        return Rejected(f"reserved for provider {job.provider}")
    if job.model_cid not in policy.models:
        return Rejected("model not served here")
    if job.payment < policy.min_price:
        return Rejected(f"payment {job.payment} below our price {policy.min_price}")
    if job.claim_deadline <= now:
        return Rejected("claim deadline already passed")
    return Accepted()


def check_spec(
    job: PostedJob, spec: JobSpec, spec_size: int, prompt_tokens: int, policy: Policy, now: int
) -> Decision:
    """Second look, from the verified spec: does it match the job and fit this node?"""
    from hearth.formats.cid import CID

    if spec_size > policy.max_spec_bytes:
        return Rejected(f"spec is {spec_size} bytes, over {policy.max_spec_bytes}")
    if CID.parse(spec.model_cid).to_bytes() != job.model_cid and CID.parse(spec.model_cid).digest != CID.parse(
        job.model_cid
    ).digest:
        return Rejected("spec names a different model than the posted job")
    expected_sha = policy.models.get(job.model_cid)
    if expected_sha is not None and spec.model_sha256 != expected_sha:
        return Rejected("spec's model sha256 does not match the model served under that CID")
    if spec.params.max_tokens > policy.max_tokens:
        return Rejected(f"max_tokens {spec.params.max_tokens} over our limit {policy.max_tokens}")
    if prompt_tokens + spec.params.max_tokens > policy.n_ctx:
        return Rejected(
            f"prompt ({prompt_tokens} tokens) + max_tokens ({spec.params.max_tokens}) exceed context {policy.n_ctx}"
        )
    needed = spec.params.max_tokens / policy.tokens_per_second + policy.safety_seconds
    if job.completion_window < needed:
        return Rejected(f"completion window {job.completion_window}s too short (need about {needed:.0f}s)")
    if job.claim_deadline <= now:
        return Rejected("claim deadline passed while fetching the spec")
    return Accepted()
