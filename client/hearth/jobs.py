"""Client-side job operations: post with locked payment, follow, fetch and verify results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.chain.types import ZERO_ADDRESS, posted_from_event, result_commitment
from hearth.errors import ContractError, HearthError, UserError, VerificationError
from hearth.formats import sealed
from hearth.formats.cid import CID
from hearth.formats.jobspec import JobSpec, Result, output_hash, parse_result
from hearth.formats.receipt import result_signer
from hearth.formats.units import format_amount
from hearth.ipfs.fetch import FETCH_TIMEOUT, BlockSource
from hearth.ipfs.kubo import KuboClient
from hearth.ipfs.pinning import RemotePins, cat_any
from hearth.offers import Candidate, live_offers, ranked
from hearth.privacy import job_key, providers_for, seal_spec

TOKEN = 10**18
MAX_RESULT_BYTES = 1 << 20
MAX_UINT32 = 2**32 - 1  # PostParams.completionWindow
MAX_UINT40 = 2**40 - 1  # PostParams.claimDeadline


def chain_now(market: Market) -> int:
    """The time the next block will carry: the latest block may be old on an idle automining
    devnet, whose clock only moves when a block is mined."""
    return max(int(market.w3.eth.get_block("latest")["timestamp"]), int(time.time()))


class ShortBalance(UserError):
    """Not enough tokens to pay."""


@contextmanager
def deposit_kept(wei: int) -> Iterator[None]:
    """For a transaction that follows a deposit of `wei` of its own: if it fails, its error says
    that the tokens stay in the deposit and how to take them back."""
    if wei <= 0:
        yield
        return
    note = f"{format_amount(wei)} HRT was moved to your deposit: hearth account withdraw {format_amount(wei)}"
    try:
        yield
    except HearthError as e:
        e.args = (f"{e.args[0]}; {note}", *e.args[1:])  # the same error, its message extended
        raise
    except BaseException as e:  # Ctrl-C, or a bug: the CLI prints the notes too
        e.add_note(note)
        raise


@dataclass(frozen=True)
class Posted:
    """A posted job."""

    job_id: int
    spec_cid: str
    tx_hash: str
    gas_used: int
    claim_deadline: int
    spec_pins: dict[str, str] = field(default_factory=dict)  # what each remote pin said of the spec
    readers: tuple[str, ...] = ()  # a private job: who its key is sealed to (the client included)
    assigned: str = ""  # the provider whose offer took the job at post ("" for an open or directed job)
    payment: int = 0  # what the job pays (an offer's price when one took it)


def permit_signature(acct: LocalAccount, market: Market, value: int, deadline: int) -> tuple[int, bytes, bytes]:
    """EIP-2612 permit letting the market pull `value` tokens from `acct`."""
    token = market.token
    nonce = int(token.functions.nonces(acct.address).call())
    sig = Account.sign_typed_data(
        acct.key,
        domain_data={"name": "Hearth", "version": "1", "chainId": int(market.w3.eth.chain_id),
                     "verifyingContract": token.address},
        message_types={"Permit": [
            {"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]},
        message_data={"owner": acct.address, "spender": market.address, "value": value, "nonce": nonce,
                      "deadline": deadline},
    )
    return int(sig.v), int(sig.r).to_bytes(32, "big"), int(sig.s).to_bytes(32, "big")


def post(
    market: Market, sender: Sender, acct: LocalAccount, ipfs: KuboClient, spec: JobSpec, payment: int,
    claim_timeout: int, completion_window: int, provider: str = ZERO_ADDRESS, pins: RemotePins | None = None,
    private: bool = False, use_offers: bool = True,
) -> Posted:
    """Add the spec to IPFS (and ask `pins` to pin it remotely), and post the job, paying from the
    internal balance or, when it is short, pulling the rest from the wallet with a permit in the
    same transaction. A `private` job's spec goes to IPFS encrypted, its key sealed to the client
    and to the provider(s) that may run it (see hearth.privacy). With `use_offers`, the job goes
    under the best live offer that fits it (of `provider` if one is given; see hearth.offers) at
    the offer's price (`payment` is the most the client pays): one transaction pays and assigns
    it; with none, it is posted open (or to `provider`) paying `payment`."""
    if payment <= 0:
        raise UserError("the payment must be positive")
    if claim_timeout <= 0 or completion_window <= 0:
        raise UserError("timeouts must be positive", hint="e.g. --claim-timeout 5m --timeout 10m")
    # checked before any transaction: under an offer the deposit is a transaction of its own
    longest = min(int(market.call(market.contract.functions.maxCompletionWindow())), MAX_UINT32)
    if completion_window > longest:
        raise UserError(f"a completion window of {completion_window} s is longer than this market allows ({longest} s)",
                        hint=f"pass --timeout {longest}s or less")
    now = chain_now(market)
    if now + claim_timeout > MAX_UINT40:
        raise UserError(f"a claim timeout of {claim_timeout} s is longer than the market can record",
                        hint="pass a shorter --claim-timeout, e.g. 5m")
    balance = market.account(acct.address).balance
    short = max(0, payment - balance)
    if short:
        wallet = market.token_balance(acct.address)
        if wallet < short:
            raise ShortBalance(
                f"payment {payment / TOKEN:g} HRT but only {balance / TOKEN:g} HRT deposited and "
                f"{wallet / TOKEN:g} HRT in the wallet: {(short - wallet) / TOKEN:g} HRT missing",
                hint="get tokens (on the devnet: hearth account faucet), then retry",
            )
    model_cid = CID.parse(spec.model_cid).to_bytes()
    chosen = None
    if use_offers:
        live = [c for c in live_offers(market, ipfs, model_cid, now) if provider in (ZERO_ADDRESS, c.offer.provider)]
        chosen = _first_taken(market, acct, ranked(market, live, payment, completion_window), model_cid,
                              now + claim_timeout, completion_window)
        if chosen is not None:  # exactly the offer's price, which is at most the payment offered
            provider, payment = chosen.offer.provider, chosen.offer.price
            short = max(0, payment - balance)
    spec_bytes = spec.to_bytes()
    readers: tuple[str, ...] = ()
    if private:
        env, _ = seal_spec(market, acct, spec_bytes, providers_for(market, model_cid, provider))
        spec_bytes, readers = env.to_bytes(), tuple(env.reader_addresses())
    spec_cid = ipfs.add(spec_bytes, pin=True)
    spec_pins = pins.pin(ipfs, spec_cid, "hearth job spec") if pins is not None else {}
    deadline = now + claim_timeout
    params = market.post_params(model_cid, spec_cid.to_bytes(), payment, deadline, completion_window, provider)
    if chosen is not None:
        if short:  # no permit variant of postJobWithOffer: deposit first (one block more)
            v, r, s = permit_signature(acct, market, short, now + 3600)
            sender.transact(market.fn("depositWithPermit", short, now + 3600, v, r, s))
        o = chosen.offer
        with deposit_kept(short):
            receipt = sender.transact(market.fn("postJobWithOffer", params, o.as_tuple(), o.signature))
    elif short:
        v, r, s = permit_signature(acct, market, short, now + 3600)
        receipt = sender.transact(market.fn("postJobWithPermit", params, short, now + 3600, v, r, s))
    else:
        receipt = sender.transact(market.fn("postJob", params))
    return Posted(market.job_posted_id(receipt), str(spec_cid), _hash(receipt), int(receipt["gasUsed"]), deadline,
                  spec_pins, readers, chosen.offer.provider if chosen is not None else "", payment)


# What postJobWithOffer refuses because of the offer or its provider (not because of the client)
OFFER_REFUSALS = {"InvalidOffer", "OfferVoid", "OfferTermsUnmet", "ProviderBusy", "ProviderNotActive", "ModelNotServed",
                  "InsufficientStake", "ECDSAInvalidSignature", "ECDSAInvalidSignatureS", "ECDSAInvalidSignatureLength"}


def _first_taken(market: Market, acct: LocalAccount, ranked: list[Candidate], model_cid: bytes, claim_deadline: int,
                 window: int) -> Candidate | None:
    """The best offer the chain takes now, by a dry run of the post (with a stand-in spec CID:
    the market does not read it): one withdrawn, busy or wrongly signed since it was read is
    passed over rather than failing the submit."""
    for c in ranked:
        params = market.post_params(model_cid, b"\x01", c.offer.price, claim_deadline, window, c.offer.provider)
        try:
            market.call(market.fn("postJobWithOffer", params, c.offer.as_tuple(), c.offer.signature), acct.address)
        except ContractError as e:
            if e.name in OFFER_REFUSALS:
                continue
        return c  # taken, or refused for the client's own reason (a deposit still to make), said at the post
    return None


def _hash(receipt: TxReceipt) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


@dataclass(frozen=True)
class Update:
    """A change in a job's life, as the client sees it."""

    state: str
    elapsed: float
    detail: dict[str, Any]
    event: Any = None  # the decoded log, for callers that keep the history (None for synthetic updates)


def follow(market: Market, job_id: int, poll: float = 0.2, timeout: float | None = None) -> Iterator[Update]:
    """Yield each new state of a job until it is final (Settled, Cancelled, Declined, Expired, Refunded),
    Completed (dispute window open), or a deadline passed with nobody acting."""
    t0 = time.monotonic()
    seen = 0
    dispute_window = market.dispute_window()  # immutable: read once, not on every poll
    while True:
        history = market.history(job_id)
        for name, ev in history[seen:]:
            yield Update(name.removeprefix("Job"), time.monotonic() - t0, dict(ev["args"]), ev)
        seen = len(history)
        names = [n for n, _ in history]
        if any(n in names for n in ("JobSettled", "JobCancelled", "JobDeclined", "JobExpired", "JobRefunded")):
            return
        if "JobCompleted" in names and dispute_window > 0:
            return
        slot = market.job(job_id)
        now = chain_now(market)
        if slot.state in ("Posted", "Claimed") and now > slot.deadline + 1:
            yield Update("DeadlinePassed", time.monotonic() - t0, {"state": slot.state, "deadline": slot.deadline})
            return
        if timeout is not None and time.monotonic() - t0 > timeout:
            yield Update("Timeout", time.monotonic() - t0, {"state": slot.state})
            return
        time.sleep(poll)


@dataclass(frozen=True)
class VerifiedResult:
    """A result whose bytes matched its CID, whose output matched the on-chain hash and whose
    receipt was signed by the provider that completed the job."""

    job_id: int
    result_cid: str
    result: Result
    provider: str
    output_hash: str
    private: bool = False


def fetch_result(
    market: Market, ipfs: KuboClient, job_id: int, history: list[tuple[str, Any]] | None = None,
    fallbacks: Sequence[BlockSource] = (), account: Callable[[], LocalAccount] | None = None,
) -> VerifiedResult:
    """Fetch a completed job's result and verify it against the chain. `history` is the job's
    events when the caller already has them (one get_logs for the whole job otherwise);
    `fallbacks` are read when `ipfs` cannot deliver the result (remote pins: the provider's own
    IPFS may be gone by now), every block verified whichever source answers. A private job's
    result is decrypted with its key, which `account()` (asked only then: a public job needs no
    account, nor its password) must hold: NotAReader otherwise."""
    history = history if history is not None else market.history(job_id)
    completed = [ev for name, ev in history if name == "JobCompleted"]
    posted_ev = [ev for name, ev in history if name == "JobPosted"]
    if not completed or not posted_ev:
        state = market.job(job_id).state
        if state == "None":
            raise UserError(f"job {job_id} does not exist on this market", hint="list jobs: hearth job list")
        raise HearthError(f"job {job_id} has no result (state {state})", hint=f"follow it: hearth job status {job_id}")
    args = completed[-1]["args"]
    cid = CID.parse(bytes(args["resultCid"]))
    onchain_commitment = bytes(args["commitment"])
    provider = str(args["provider"])
    posted = posted_from_event(posted_ev[0])

    def cat(c: CID, max_size: int) -> bytes:  # every block verified against the CID, from the first source that has it
        if fallbacks:
            return cat_any([ipfs, *fallbacks], c, max_size=max_size, timeout=FETCH_TIMEOUT)
        return ipfs.cat(c, max_size=max_size)

    data = cat(cid, MAX_RESULT_BYTES)
    key = None
    env = sealed.parse_envelope(data)
    if env is not None:
        if account is None:
            raise UserError(f"job {job_id} is private: reading its result needs an account that holds its key")
        spec_env = sealed.parse_envelope(cat(posted.spec_cid, MAX_RESULT_BYTES))
        if spec_env is None:
            raise VerificationError(f"job {job_id}: its result is private but its spec is not")
        key = job_key(market, account(), posted, spec_env)
        data = sealed.open_result(env, key, int(market.w3.eth.chain_id), market.address, job_id)
    result = parse_result(data)
    # The commitment is salted (the salt is inside the result, encrypted for a private job), so
    # the plain sha256 of even a one-word answer cannot be guessed from the chain.
    digest = output_hash(result.output)
    if result_commitment(job_id, provider, digest, result.commit_salt) != onchain_commitment:
        raise VerificationError(
            f"job {job_id}: the output in result {cid} does not open the provider's on-chain commitment",
            hint=f"the result was tampered with; ask for an audit within the window: hearth job dispute {job_id}",
        )
    signer = result_signer(result)
    if signer.lower() != provider.lower():
        raise VerificationError(f"job {job_id}: result signed by {signer}, but completed by {provider}")
    if int(result.body.get("job_id", -1)) != job_id:
        raise VerificationError(f"job {job_id}: result is for job {result.body.get('job_id')}")
    if CID.parse(str(result.body["spec_cid"])).digest != posted.spec_cid.digest:
        raise VerificationError(f"job {job_id}: result answers a different spec")
    return VerifiedResult(job_id, str(cid), result, provider, digest.hex(), key is not None)
