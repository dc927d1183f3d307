"""Signed provider offers and decline, on eth-tester and anvil: postJobWithOffer (one transaction
posts, pays and assigns), every reason it refuses an offer with the exact custom error,
publishOffers, withdrawOffers, and decline of an offer-assigned job in the first half of its
completion window. The balance invariant is checked after every operation (Harness.op /
expect_revert)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hearth.chain.types import result_commitment
from hearth.formats import offers
from hearth.formats.units import TOKEN
from web3.logs import DISCARD

from tests.backends import Backend
from tests.contracts.harness import CLASS_A, CLASS_B, MODEL_V0, MODEL_V1, OUT, RESULT, SALT, Harness, make_harness

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
def h(backend: Backend) -> Harness:
    return make_harness(backend)


Actors = tuple[LocalAccount, LocalAccount, LocalAccount]


@pytest.fixture
def actors(h: Harness) -> Actors:
    """A funded client (500 HRT deposited), a provider of class A serving MODEL_V0 with 50 HRT of
    stake, and another provider like it."""
    client, prov, other = h.b.accounts[1:4]
    h.fund(client)
    h.register(prov, 50)
    h.register(other, 50)
    return client, prov, other


def events(h: Harness, receipt: Any, name: str) -> list[Any]:
    return list(getattr(h.market.contract.events, name)().process_receipt(receipt, errors=DISCARD))


def open_jobs(h: Harness, addr: str) -> int:
    return h.market.account(addr).open_jobs


# ------------------------------------------------------------------ the signature


def test_offer_digest_and_type_match_the_signer(h: Harness, actors: Actors) -> None:
    _, prov, _ = actors
    o = h.offer(prov, price=7, window=900, max_open=3, nonce=11)
    c = h.market.contract.functions
    assert c.offerDigest(o.as_tuple()).call() == offers.digest(o, h.chain_id, h.market.address)
    spec = ",".join(f"{f['type']} {f['name']}" for f in offers.TYPES["Offer"])
    assert c.OFFER_TYPEHASH().call() == keccak(f"Offer({spec})".encode())
    assert offers.signer(o, h.chain_id, h.market.address) == prov.address
    # the domain binds the market: the same offer signed for another one does not hold here
    elsewhere = offers.digest(o, h.chain_id, h.arbiter_address)
    assert elsewhere != c.offerDigest(o.as_tuple()).call()


# ------------------------------------------------------------------ postJobWithOffer


def test_post_with_offer_posts_and_assigns_in_one_transaction(h: Harness, actors: Actors) -> None:
    client, prov, anyone = actors
    o = h.offer(prov, price=2 * TOKEN, window=600, max_open=2)
    job, r = h.post_with_offer(client, o, window=900)
    posted, claimed = events(h, r, "JobPosted"), events(h, r, "JobClaimed")
    assert len(posted) == len(claimed) == 1 and posted[0]["logIndex"] < claimed[0]["logIndex"]
    assert posted[0]["args"]["provider"] == prov.address  # directed to the offer's provider
    ev = claimed[0]["args"]
    stamp = h.b.w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert (ev["jobId"], ev["provider"], ev["collateral"]) == (job, prov.address, h.collateral(2 * TOKEN))
    assert ev["completionDeadline"] == stamp + 900 == h.market.job(job).deadline
    assert h.state(job) == "Claimed" and h.jobs[job].provider == prov.address
    assert h.jobs[job] == h.market.current_terms(job)
    assert h.jobs[job].salt >> 63 == 1  # the OFFERED bit: only such a job can be declined
    assert h.balance(client.address) == 498 * TOKEN
    assert h.stake(prov.address) == 50 * TOKEN - h.collateral(2 * TOKEN)
    assert open_jobs(h, prov.address) == 1
    # the offer holds for more jobs, up to its maxOpenJobs
    second, _ = h.post_with_offer(client, o)
    assert open_jobs(h, prov.address) == 2
    for j in (job, second):
        h.complete(prov, j)
    paid = h.balance(prov.address)
    for j in (job, second):
        h.settle(j, by=anyone)
        assert h.state(j) == "Settled"
    assert h.balance(prov.address) == paid + 4 * TOKEN  # no fee on the test market
    assert (h.stake(prov.address), open_jobs(h, prov.address)) == (50 * TOKEN, 0)


Bad = Callable[[Harness, LocalAccount, LocalAccount], tuple[Any, ...]]
INVALID: dict[str, Bad] = {  # (harness, provider, other provider) -> postJobWithOffer's arguments
    "job for another provider": lambda h, p, other: h.offer_args(h.offer(p), provider=other.address),
    "job for another model": lambda h, p, other: h.offer_args(h.offer(p), model=MODEL_V1),
    "signed by another key": lambda h, p, other: h.offer_args(h.offer(p, signer=other)),
    "price lowered after signing": lambda h, p, other: h.offer_args(replace(h.offer(p), price=TOKEN - 1)),
    "maxOpenJobs raised after signing": lambda h, p, other: h.offer_args(replace(h.offer(p), max_open_jobs=5)),
    "another provider's offer": lambda h, p, other: h.offer_args(replace(h.offer(other), provider=p.address)),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_offer_that_does_not_match_is_invalid(h: Harness, actors: Actors, case: str) -> None:
    client, prov, other = actors
    h.op(prov, "addModels", [MODEL_V1])  # the provider serves the other model too: the offer decides
    h.expect_revert("InvalidOffer", client, "postJobWithOffer", *INVALID[case](h, prov, other), provider=prov.address)
    h.post_with_offer(client, h.offer(prov))  # its own offer, untouched, holds


def test_class_change_voids_offers_of_the_old_class(h: Harness, actors: Actors) -> None:
    """A class change raises the offer nonce: the class is not read at the post (two cold reads
    less), so what voids the old offers is the nonce, for good, even back in the old class."""
    client, prov, _ = actors
    o = h.offer(prov, cls=CLASS_A)
    r = h.op(prov, "setReproClass", CLASS_B)
    assert [e["args"] for e in events(h, r, "OffersWithdrawn")] == [{"provider": prov.address, "nonce": o.nonce + 1}]
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(o), provider=prov.address,
                    expiry=o.expiry, nonce=o.nonce)
    job, _ = h.post_with_offer(client, h.offer(prov, cls=CLASS_B))
    h.complete(prov, job)
    h.settle(job)
    h.op(prov, "setReproClass", CLASS_A)
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(o), provider=prov.address,
                    expiry=o.expiry, nonce=o.nonce)


def high_s(sig: bytes) -> bytes:
    """The other signature of the same key and message: s -> n - s, with the other v."""
    return sig[:32] + (SECP256K1_N - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([55 - sig[64]])


@pytest.mark.parametrize(("mangle", "error", "args"), [
    (lambda sig: b"\0" * 65, "ECDSAInvalidSignature", {}),
    (lambda sig: sig[:64], "ECDSAInvalidSignatureLength", {"length": 64}),
    (high_s, "ECDSAInvalidSignatureS", {}),
], ids=["zero", "short", "high-s"])
def test_malformed_signature_reverts_in_ecdsa(h: Harness, actors: Actors, mangle: Callable[[bytes], bytes],
                                               error: str, args: dict[str, Any]) -> None:
    """Not InvalidOffer: OpenZeppelin's ECDSA.recover reverts with its own error first (the
    high-s twin of a valid signature is refused too, so a signature has one form)."""
    client, prov, _ = actors
    o = h.offer(prov)
    p, offer, sig = h.offer_args(o)
    bad = mangle(sig)
    if error == "ECDSAInvalidSignatureS":
        args = {"s": bad[32:64]}
    h.expect_revert(error, client, "postJobWithOffer", p, offer, bad, **args)


def test_expired_offer_is_void(h: Harness, actors: Actors) -> None:
    client, prov, _ = actors
    o = h.offer(prov, expires_in=100)
    h.b.advance(200)
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(o), provider=prov.address,
                    expiry=o.expiry, nonce=o.nonce)


def test_withdrawn_offer_is_void(h: Harness, actors: Actors) -> None:
    """An offer holds only under the provider's current nonce: one signed ahead does not outlive
    a raise (else a class change could leave it standing)."""
    client, prov, _ = actors
    n = h.market.contract.functions.offerNonce(prov.address).call()  # 1: registering raised it
    old, kept, ahead = h.offer(prov, nonce=n), h.offer(prov, nonce=n + 1), h.offer(prov, nonce=n + 9)
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(ahead), provider=prov.address,
                    expiry=ahead.expiry, nonce=n + 9)
    r = h.op(prov, "withdrawOffers", n + 1)
    assert [e["args"] for e in events(h, r, "OffersWithdrawn")] == [{"provider": prov.address, "nonce": n + 1}]
    assert h.market.contract.functions.offerNonce(prov.address).call() == n + 1
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(old), provider=prov.address,
                    expiry=old.expiry, nonce=n)
    h.post_with_offer(client, kept)
    h.op(prov, "removeModels", [MODEL_V1])  # n + 2: the offer signed ahead at n + 9 is still void
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(ahead), provider=prov.address,
                    expiry=ahead.expiry, nonce=n + 9)


@pytest.mark.parametrize(("price", "offer_window", "payment", "window"), [
    (2 * TOKEN, 600, 2 * TOKEN - 1, 600),  # pays less than the price
    (2 * TOKEN, 600, 2 * TOKEN + 1, 600),  # pays more: it would raise what an expiry takes from the provider
    (TOKEN, 900, TOKEN, 899),  # gives less time than the offer asks
])
def test_offer_terms_unmet(h: Harness, actors: Actors, price: int, offer_window: int, payment: int,
                           window: int) -> None:
    client, prov, _ = actors
    o = h.offer(prov, price=price, window=offer_window)
    h.expect_revert("OfferTermsUnmet", client, "postJobWithOffer", *h.offer_args(o, payment, window),
                    payment=payment, price=price, completionWindow=window, offerWindow=offer_window)
    h.post_with_offer(client, o, price, offer_window)  # exactly the offer's terms: accepted


def test_busy_provider_takes_no_more_than_the_offer_allows(h: Harness, actors: Actors) -> None:
    client, prov, other = actors
    o = h.offer(prov, max_open=1)
    h.expect_revert("ProviderBusy", client, "postJobWithOffer", *h.offer_args(h.offer(prov, max_open=0)),
                    provider=prov.address, openJobs=0, maxOpenJobs=0)
    job, _ = h.post_with_offer(client, o)
    h.expect_revert("ProviderBusy", client, "postJobWithOffer", *h.offer_args(o), provider=prov.address,
                    openJobs=1, maxOpenJobs=1)
    h.complete(prov, job)  # a completed job is open until it is settled
    h.expect_revert("ProviderBusy", client, "postJobWithOffer", *h.offer_args(o), openJobs=1)
    h.settle(job)
    # a job claimed the ordinary way counts too
    plain = h.post(client)
    h.claim(prov, plain)
    h.expect_revert("ProviderBusy", client, "postJobWithOffer", *h.offer_args(o), openJobs=1)
    h.post_with_offer(client, h.offer(prov, max_open=2))
    assert open_jobs(h, prov.address) == 2


def test_offer_of_a_provider_that_left(h: Harness, actors: Actors) -> None:
    client, prov, _ = actors
    o = h.offer(prov, expires_in=10_000)
    h.op(prov, "unbond")
    h.expect_revert("ProviderNotActive", client, "postJobWithOffer", *h.offer_args(o), provider=prov.address)
    h.b.advance(3601)
    h.op(prov, "withdrawStake")
    h.expect_revert("ProviderNotActive", client, "postJobWithOffer", *h.offer_args(o), provider=prov.address)
    # registering again, even in the same class, does not revive it: the nonce was raised
    h.op(prov, "register", 10 * TOKEN, 0, CLASS_A, [MODEL_V0])
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(o), provider=prov.address,
                    expiry=o.expiry, nonce=o.nonce)
    h.post_with_offer(client, h.offer(prov))


def test_removing_a_model_voids_the_offers(h: Harness, actors: Actors) -> None:
    """The served models are not read at the post (a cold read less): removing one raises the
    nonce, so no offer signed before (which may name it) holds."""
    client, prov, _ = actors
    h.op(prov, "addModels", [MODEL_V1])
    o = h.offer(prov, model=MODEL_V1)
    r = h.op(prov, "removeModels", [MODEL_V1])
    assert [e["args"] for e in events(h, r, "OffersWithdrawn")] == [{"provider": prov.address, "nonce": o.nonce + 1}]
    h.expect_revert("OfferVoid", client, "postJobWithOffer", *h.offer_args(o, model=MODEL_V1),
                    provider=prov.address, expiry=o.expiry, nonce=o.nonce)


def test_an_offer_is_the_providers_word_for_its_model(h: Harness, actors: Actors) -> None:
    """An offer signed for a model the provider never added is taken: the signature is its
    consent (a claim, which has none, still needs the model served)."""
    client, prov, _ = actors
    job, _ = h.post_with_offer(client, h.offer(prov, model=MODEL_V1), model=MODEL_V1)
    assert h.market.job(job).state == "Claimed"
    open_job = h.post(client, model=MODEL_V1)
    h.expect_revert("ModelNotServed", prov, "claim", open_job, h.terms(open_job), provider=prov.address,
                    modelKey=keccak(MODEL_V1))


def test_offer_job_above_free_stake(h: Harness, actors: Actors) -> None:
    client, prov, _ = actors
    o = h.offer(prov, price=600 * TOKEN)
    h.fund(client, 1000, 500)  # 1000 HRT in the market
    h.expect_revert("InsufficientStake", client, "postJobWithOffer", *h.offer_args(o),
                    provider=prov.address, freeStake=50 * TOKEN, needed=60 * TOKEN)
    assert h.balance(client.address) == 1000 * TOKEN  # the whole transaction reverted: nothing escrowed


def test_offer_job_must_still_be_a_valid_post(h: Harness, actors: Actors) -> None:
    """The offer's checks come first, then the post's own (test_market.test_post_reverts)."""
    client, prov, _ = actors
    cap = h.params.max_completion_window
    free, any_window = h.offer(prov, price=0, window=1), h.offer(prov, window=1)
    h.expect_revert("ZeroAmount", client, "postJobWithOffer", *h.offer_args(free))
    h.expect_revert("EmptyCid", client, "postJobWithOffer", *h.offer_args(any_window, spec=b""))
    h.expect_revert("InvalidClaimDeadline", client, "postJobWithOffer", *h.offer_args(any_window, claim_in=-1))
    h.expect_revert("InvalidCompletionWindow", client, "postJobWithOffer", *h.offer_args(any_window, window=cap + 1),
                    completionWindow=cap + 1, maxCompletionWindow=cap)
    h.expect_revert("InsufficientBalance", client, "postJobWithOffer", *h.offer_args(h.offer(prov, price=501 * TOKEN)),
                    account=client.address, balance=500 * TOKEN, needed=501 * TOKEN)


# ------------------------------------------------------------------ publishOffers / withdrawOffers


def test_publish_offers(h: Harness, actors: Actors) -> None:
    client, prov, other = actors
    cid = bytes.fromhex("01551220") + keccak(b"offers")
    r = h.op(prov, "publishOffers", cid)
    assert [e["args"] for e in events(h, r, "OffersPublished")] == [{"provider": prov.address, "cid": cid}]
    h.expect_revert("EmptyCid", prov, "publishOffers", b"")
    h.expect_revert("ProviderNotActive", client, "publishOffers", cid, provider=client.address)
    h.op(other, "unbond")
    h.expect_revert("ProviderNotActive", other, "publishOffers", cid, provider=other.address)


def test_withdraw_offers_only_raises_the_nonce(h: Harness, actors: Actors) -> None:
    _, prov, other = actors
    nonce = h.market.contract.functions.offerNonce
    assert nonce(prov.address).call() == 1  # registering raised it
    h.expect_revert("NonceNotIncreasing", prov, "withdrawOffers", 1, nonce=1, current=1)
    h.op(prov, "withdrawOffers", 5)
    for lower in (5, 3):
        h.expect_revert("NonceNotIncreasing", prov, "withdrawOffers", lower, nonce=lower, current=5)
    others, top = nonce(other.address).call(), 2**63  # MAX_OFFER_NONCE: room for the raises below
    h.expect_revert("NonceTooHigh", prov, "withdrawOffers", top + 1, nonce=top + 1, max=top)
    h.op(prov, "withdrawOffers", top)
    assert (nonce(prov.address).call(), nonce(other.address).call()) == (top, others)
    h.op(prov, "setReproClass", CLASS_B)  # a raise at the top still fits
    assert nonce(prov.address).call() == top + 1


# ------------------------------------------------------------------ decline


def assigned(h: Harness, client: LocalAccount, prov: LocalAccount, payment: int = 2 * TOKEN, window: int = 600) -> int:
    """A job an offer of `prov` assigned it."""
    return h.post_with_offer(client, h.offer(prov, price=payment, window=window), window=window)[0]


def test_decline_gives_everything_back(h: Harness, actors: Actors) -> None:
    client, prov, other = actors
    job = assigned(h, client, prov)
    h.expect_revert("NotProvider", other, "decline", job, h.terms(job), jobId=job, caller=other.address)
    h.expect_revert("NotProvider", client, "decline", job, h.terms(job), jobId=job, caller=client.address)
    h.b.advance(250)  # the last moment is 300 s after the claim
    r = h.op(prov, "decline", job, h.terms(job))
    assert [e["args"] for e in events(h, r, "JobDeclined")] == [{"jobId": job, "provider": prov.address}]
    assert h.state(job) == "Cancelled"
    assert h.balance(client.address) == 500 * TOKEN
    assert (h.stake(prov.address), open_jobs(h, prov.address)) == (50 * TOKEN, 0)
    # a declined job is over
    h.expect_revert("InvalidState", prov, "decline", job, h.terms(job), jobId=job, state="Cancelled")
    h.expect_revert("InvalidState", prov, "complete", job, h.terms(job), RESULT,
                    result_commitment(job, prov.address, OUT, SALT), jobId=job, state="Cancelled")
    h.expect_revert("InvalidState", client, "cancel", job, h.terms(job), jobId=job, state="Cancelled")
    h.b.advance(1000)
    h.expect_revert("InvalidState", client, "expire", job, h.terms(job), jobId=job, state="Cancelled")


@pytest.mark.parametrize("window", [600, 1])
def test_decline_too_late(h: Harness, actors: Actors, window: int) -> None:
    client, prov, anyone = actors
    job = assigned(h, client, prov, window=window)
    last = h.market.job(job).deadline - window // 2  # a 1 s window: the deadline itself
    h.b.advance(window // 2 + 5)  # past it even in the block before (where a revert is decoded)
    h.expect_revert("DeclineTooLate", prov, "decline", job, h.terms(job), jobId=job, lastMoment=last)
    # past the deadline too: the job expires and costs the claimer its collateral
    h.b.advance(window)
    h.expect_revert("DeclineTooLate", prov, "decline", job, h.terms(job), jobId=job, lastMoment=last)
    h.op(anyone, "expire", job, h.terms(job))
    assert h.state(job) == "Expired" and h.stake(prov.address) == 50 * TOKEN - h.collateral(2 * TOKEN)


def test_decline_needs_a_claimed_job(h: Harness, actors: Actors) -> None:
    client, prov, _ = actors
    posted = h.post(client, provider=prov.address)
    h.expect_revert("InvalidState", prov, "decline", posted, h.terms(posted), jobId=posted, state="Posted")
    job = assigned(h, client, prov)
    h.complete(prov, job)
    # the slot of a completed job commits to its result too: the terms alone do not open it
    h.expect_revert("UnknownJob", prov, "decline", job, h.terms(job), jobId=job)
    h.settle(job)
    h.expect_revert("InvalidState", prov, "decline", job, h.terms(job), jobId=job, state="Settled")
    h.expect_revert("UnknownJob", prov, "decline", 999, h.terms(job), jobId=999)


@pytest.mark.parametrize("directed", [False, True])
def test_only_an_offer_job_can_be_declined(h: Harness, actors: Actors, directed: bool) -> None:
    """A claimer of an open (or directed) job chose it: giving it back free would let it hold
    jobs away from other providers. It completes it, or the job expires."""
    client, prov, anyone = actors
    job = h.post(client, provider=prov.address) if directed else h.post(client)
    h.claim(prov, job)
    assert h.jobs[job].salt >> 63 == 0
    h.expect_revert("NotOffered", prov, "decline", job, h.terms(job), jobId=job)
    h.complete(prov, job)
    h.settle(job, by=anyone)


def test_offer_slot_frees_after_decline(h: Harness, actors: Actors) -> None:
    client, prov, _ = actors
    o = h.offer(prov, max_open=1)
    job, _ = h.post_with_offer(client, o)
    h.expect_revert("ProviderBusy", client, "postJobWithOffer", *h.offer_args(o), openJobs=1)
    h.op(prov, "decline", job, h.terms(job))
    h.post_with_offer(client, o)
    assert h.balance(client.address) == 499 * TOKEN and open_jobs(h, prov.address) == 1
