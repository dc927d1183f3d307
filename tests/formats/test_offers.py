"""Offer documents and signatures (hearth.formats.offers): what a provider publishes round-trips,
a signature holds only for its signer, chain and market, and a hostile document is refused with
a SpecError, never a crash. The contract's own digest is compared in tests/contracts/test_offers.py."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from hearth.formats import offers
from hearth.formats.jobspec import SpecError
from hearth.formats.offers import Offer
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = Account.from_key(b"\x01" * 32)
OTHER = Account.from_key(b"\x02" * 32)
MARKET = "0x" + "ab" * 20
CHAIN = 11155111
BASE = Offer(KEY.address, b"\x11" * 32, b"\x22" * 32, 10**16, 300, 8, 2_000_000_000, 0)
RICH = replace(BASE, price=2**96 - 1)  # over the JSON reader's 20-digit integers: the price is a string


def signed(o: Offer = BASE) -> Offer:
    return offers.sign(KEY, o, CHAIN, MARKET)


def test_round_trip_and_signer() -> None:
    s = signed()
    assert offers.signer(s, CHAIN, MARKET) == KEY.address
    doc = offers.document([s, signed(RICH)], CHAIN, MARKET)
    assert offers.parse_document(doc, CHAIN, MARKET) == [s, signed(RICH)]


@pytest.mark.parametrize("change", [
    {"price": 10**16 - 1}, {"completion_window": 301}, {"max_open_jobs": 9}, {"expiry": 2_000_000_001},
    {"nonce": 1}, {"model_key": b"\x12" * 32}, {"repro_class": b"\x23" * 32}, {"provider": OTHER.address},
])
def test_a_changed_field_breaks_the_signature(change: dict[str, Any]) -> None:
    assert offers.signer(replace(signed(), **change), CHAIN, MARKET) != KEY.address


def test_a_signature_is_bound_to_chain_and_market() -> None:
    s = signed()
    assert offers.signer(s, CHAIN + 1, MARKET) != KEY.address
    assert offers.signer(s, CHAIN, "0x" + "cd" * 20) != KEY.address
    assert offers.signer(replace(s, signature=b"\x00" * 65), CHAIN, MARKET) is None


def test_signatures_the_contract_refuses_are_refused() -> None:
    sig = signed().signature
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([55 - sig[64]])
    for bad in (high_s, sig[:64] + bytes([sig[64] - 27])):
        assert offers.signer(replace(signed(), signature=bad), CHAIN, MARKET) is None


def test_only_the_provider_signs_its_offer() -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        offers.sign(OTHER, BASE, CHAIN, MARKET)


def _doc(**over: Any) -> bytes:
    body = json.loads(offers.document([signed()], CHAIN, MARKET))
    body.update(over)
    return json.dumps(body).encode()


def _one(**over: Any) -> bytes:
    body = json.loads(offers.document([signed()], CHAIN, MARKET))
    body["offers"][0].update(over)
    return json.dumps(body).encode()


@pytest.mark.parametrize(("data", "match"), [
    (b"[]", "not a hearth-offers"),
    (b"{", "not JSON"),
    (_doc(version=2), "not a hearth-offers"),
    (_doc(chain_id=1), "another chain"),
    (_doc(market="0x" + "cd" * 20), "another chain or market"),
    (_doc(offers={}), "a list"),
    (_doc(offers=[{}] * 65), "at most 64"),
    (_one(price=-1), "price"),
    (_one(price="-1"), "price"),
    (_one(price=str(2**96)), "price"),
    (_one(price="1" * 30), "price"),
    (_one(price="١"), "price"),
    (_one(nonce=10**40), "digits"),
    (_one(nonce=True), "nonce"),
    (_one(expiry="1"), "expiry"),
    (_one(provider="0x12"), "malformed"),
    (_one(signature="0x1234"), "65"),
    (_one(model_key="zz"), "malformed"),
    (_one(extra=1), "exactly the fields"),
    (b" " * (offers.MAX_DOCUMENT_BYTES + 1), "over"),
])
def test_hostile_documents_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        offers.parse_document(data, CHAIN, MARKET)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(SpecError):  # refused cleanly, or parsed
        offers.parse_document(data, CHAIN, MARKET)
