"""The guardian: decides whether to take a job. Pure: no I/O, no clock reads, no shared state.

Three looks, each with everything it needs passed in:
  check_event  the on-chain event alone (is it for us, is it worth it);
  check_spec   the verified spec (does it match the job and fit this node at all);
  admit        the node's load at this moment (can we finish it in time, counting the work
               already claimed, and can our stake cover its collateral).

They return Accepted, Rejected(reason) (never take it) or Deferred(reason) (not now: ask again
when work finishes), instead of raising, so the processor logs the reason before any gas is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.formats.cid import CID
from hearth.formats.jobspec import JobSpec


@dataclass(frozen=True)
class Accepted:
    """Take the job."""


@dataclass(frozen=True)
class Rejected:
    """Skip the job, for this reason."""

    reason: str


@dataclass(frozen=True)
class Deferred:
    """Not now (busy, or collateral tied up): the job may fit once claimed work finishes."""

    reason: str


Decision = Accepted | Rejected | Deferred


@dataclass(frozen=True)
class Policy:
    """What this node serves and accepts."""

    address: str
    models: dict[CID, str]  # model CID (exactly as posted: the market keys on its bytes) -> GGUF sha256
    min_price: int
    max_tokens: int
    max_spec_bytes: int
    n_ctx: int
    tokens_per_second: float  # generation speed assumed until the runner has measured its own
    safety_factor: float = 2.0  # estimated seconds are multiplied by this (contention, variance)
    margin_seconds: float = 3.0  # added after: claim and complete latency, block-time rounding
    max_open_jobs: int = 8  # claimed-but-unfinished jobs at most
    prompt_speedup: float = 4.0  # prompt tokens are batched: assumed this much faster until measured
    assigned_fetch_seconds: float = 60.0  # then an offer-assigned job whose spec will not come is declined


@dataclass(frozen=True)
class Load:
    """The node at the moment of a decision (the processor's ledger, read under its lock)."""

    queued_seconds: float  # estimated seconds of claimed (or being claimed) work not yet finished
    open_jobs: int  # claimed (or being claimed) jobs not yet finished
    free_stake: int  # on-chain stake not locked, minus the collateral of claims still in flight


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
    """Second look, from the verified spec: does it match the job and fit this node at all?
    `prompt_tokens` is the prompt as the runner will render it (chat template included)."""
    if spec_size > policy.max_spec_bytes:
        return Rejected(f"spec is {spec_size} bytes, over {policy.max_spec_bytes}")
    if CID.parse(spec.model_cid).digest != job.model_cid.digest:  # any CID version of the same content
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
    if job.claim_deadline <= now:
        return Rejected("claim deadline passed while fetching the spec")
    return Accepted()


def estimate_seconds(
    prompt_tokens: int, max_tokens: int, policy: Policy,
    gen_seconds_per_token: float | None = None, prompt_seconds_per_token: float | None = None,
    load_seconds: float = 0.0,
) -> float:
    """Seconds one job takes on its runner: loading the model if it is not loaded, evaluating the
    prompt, and generating every token it may ask for (max_tokens: a job may not stop early).
    Measured per-token times win; until there are some, the configured floor speed is used."""
    gen = gen_seconds_per_token if gen_seconds_per_token is not None else 1.0 / policy.tokens_per_second
    prompt = (
        prompt_seconds_per_token if prompt_seconds_per_token is not None
        else 1.0 / (policy.tokens_per_second * policy.prompt_speedup)
    )
    return load_seconds + prompt_tokens * prompt + max_tokens * gen


def admit(
    job: PostedJob, work_seconds: float, load: Load, collateral: int, policy: Policy, best_seconds: float | None = None
) -> Decision:
    """Third look, against the node's load: claim only what surely finishes in time.

    The job's deadline is its claim time plus its completion window, and the runner works
    through claimed jobs in turn, so the job is done after the work queued ahead of it and its
    own: (queued + work) * safety_factor + margin must fit the window. A job is rejected for good
    only if it would not fit even alone at the best speed ever measured (`best_seconds`; None: not
    measured yet), safety factor aside; one that does not fit today waits, as the node may speed up."""
    if best_seconds is not None and best_seconds + policy.margin_seconds > job.completion_window:
        need = best_seconds + policy.margin_seconds
        return Rejected(f"completion window {job.completion_window}s too short (need at least {need:.0f}s)")
    alone = work_seconds * policy.safety_factor + policy.margin_seconds
    if alone > job.completion_window:
        return Deferred(f"completion window {job.completion_window}s too short at the current speed "
                        f"(need about {alone:.0f}s)")
    if load.open_jobs >= policy.max_open_jobs:
        return Deferred(f"{load.open_jobs} jobs open, the most this node takes at once")
    needed = (load.queued_seconds + work_seconds) * policy.safety_factor + policy.margin_seconds
    if needed > job.completion_window:
        return Deferred(
            f"busy: about {load.queued_seconds:.1f}s of work queued; would need {needed:.1f}s "
            f"of a {job.completion_window}s window"
        )
    if collateral > load.free_stake:
        return Deferred(f"collateral {collateral} over the free stake {load.free_stake}")
    return Accepted()
