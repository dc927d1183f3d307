"""Private envelopes: round trips, and every way one can fail to open is a clear EnvelopeError
(or NotAReader), never a crash."""

from __future__ import annotations

import base64
import json

import pytest
from hearth.errors import UserError
from hearth.formats import sealed
from hearth.formats.sealed import EnvelopeError, NotAReader, Reader

CHAIN, MARKET = 11155111, "0x" + "ab" * 20
CLIENT, PROVIDER, OTHER = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
SPEC = b'{"prompt":"the word zanzibarite","version":1}'


def kp(name: str, version: int = 1) -> sealed.Keypair:
    return sealed.account_keypair(name.encode() * 8, version)


def make() -> tuple[sealed.Envelope, bytes]:
    readers = {CLIENT: Reader(kp("client").public, 1), PROVIDER: Reader(kp("provider", 3).public, 3)}
    return sealed.seal_spec(SPEC, readers, CHAIN, MARKET, CLIENT)


def test_spec_round_trip_for_each_reader() -> None:
    env, key = make()
    data = env.to_bytes()
    assert b"zanzibarite" not in data
    parsed = sealed.parse_envelope(data)
    assert parsed == env
    for who, name in ((CLIENT, "client"), (PROVIDER, "provider")):
        k = sealed.reader_key(parsed, who.upper().replace("0X", "0x"), lambda v, n=name: kp(n, v))
        assert k == key
        assert sealed.open_spec(parsed, k, CHAIN, MARKET, CLIENT) == SPEC
    assert parsed.reader_addresses() == [CLIENT, PROVIDER]


def test_result_round_trip_and_binding_to_the_job() -> None:
    _, key = make()
    env = sealed.parse_envelope(sealed.seal_result(b"the answer", key, CHAIN, MARKET, 7).to_bytes())
    assert env is not None and env.kind == "result"
    assert sealed.open_result(env, key, CHAIN, MARKET, 7) == b"the answer"
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        sealed.open_result(env, key, CHAIN, MARKET, 8)  # another job's result
    with pytest.raises(EnvelopeError, match="expected a private spec"):
        sealed.open_spec(env, key, CHAIN, MARKET, CLIENT)


def test_not_a_reader() -> None:
    env, _ = make()
    with pytest.raises(NotAReader, match="not sealed to"):
        sealed.reader_key(env, OTHER, lambda v: kp("other", v))


def test_wrong_secret_or_version() -> None:
    env, _ = make()
    with pytest.raises(EnvelopeError, match="does not open"):
        sealed.reader_key(env, PROVIDER, lambda v: kp("other", v))
    with pytest.raises(EnvelopeError, match="does not open"):
        sealed.reader_key(env, PROVIDER, lambda v: kp("provider", v + 1))


def test_wrong_key_fails_the_commitment() -> None:
    env, key = make()
    with pytest.raises(EnvelopeError, match="key commitment"):
        sealed.open_spec(env, bytes(32), CHAIN, MARKET, CLIENT)
    assert sealed.open_spec(env, key, CHAIN, MARKET, CLIENT) == SPEC


@pytest.mark.parametrize(("chain", "market", "client"), [
    (1, MARKET, CLIENT), (CHAIN, "0x" + "cd" * 20, CLIENT), (CHAIN, MARKET, OTHER)],
    ids=["chain", "market", "client"])
def test_wrong_associated_data(chain: int, market: str, client: str) -> None:
    env, key = make()
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        sealed.open_spec(env, key, chain, market, client)


def test_tampered_ciphertext() -> None:
    env, key = make()
    d = json.loads(env.to_bytes())
    ct = bytearray(base64.b64decode(d["ciphertext"]))
    ct[3] ^= 1
    d["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    tampered = sealed.parse_envelope(json.dumps(d).encode())
    assert tampered is not None
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        sealed.open_spec(tampered, key, CHAIN, MARKET, CLIENT)


def test_shares() -> None:
    _, key = make()
    auditor = kp("auditor", 2)
    share = sealed.pack_share(key, Reader(auditor.public, 2))
    assert sealed.share_version(share) == 2
    assert sealed.open_share(share, auditor) == key
    with pytest.raises(EnvelopeError, match="version"):
        sealed.open_share(share, kp("auditor", 1))
    with pytest.raises(EnvelopeError, match="bytes"):
        sealed.share_version(share[:-1])


def test_keys_are_derived_per_version_and_distinct() -> None:
    a1, a2 = kp("a", 1), kp("a", 2)
    assert a1 == kp("a", 1) and a1.public != a2.public and a1.public != kp("b", 1).public
    with pytest.raises(UserError):
        sealed.account_keypair(b"k" * 32, 0)


def test_plaintext_is_not_an_envelope() -> None:
    assert sealed.parse_envelope(SPEC) is None
    assert sealed.parse_envelope(b"\xff not json") is None
    assert sealed.parse_envelope(b"[1, 2]") is None


def _valid() -> dict[str, object]:
    d: dict[str, object] = json.loads(make()[0].to_bytes())
    return d


def _mutations() -> list[tuple[str, dict[str, object]]]:
    good = _valid()
    readers = dict(good["readers"])  # type: ignore[call-overload]
    first = next(iter(readers))
    cases: list[tuple[str, dict[str, object]]] = [
        ("version", {**good, "hearth_private": 2}),
        ("version", {**good, "hearth_private": True}),
        ("kind", {**good, "kind": "other"}),
        ("keys", {**good, "extra": 1}),
        ("keys", {k: v for k, v in good.items() if k != "readers"}),
        ("nonce", {**good, "nonce": "AAAA"}),
        ("nonce", {**good, "nonce": 5}),
        ("base64", {**good, "ciphertext": "***"}),
        ("key_commitment", {**good, "key_commitment": "XY"}),
        ("readers", {**good, "readers": []}),
        ("readers", {**good, "readers": {}}),
        ("addresses", {**good, "readers": {"bob": readers[first]}}),
        ("exactly version and sealed_key", {**good, "readers": {first: {"version": 1}}}),
        ("key version", {**good, "readers": {first: {**readers[first], "version": 0}}}),
        ("key version", {**good, "readers": {first: {**readers[first], "version": "1"}}}),
        ("sealed key must be", {**good, "readers": {first: {**readers[first], "sealed_key": "AAAA"}}}),
    ]
    return cases


@pytest.mark.parametrize(("what", "doc"), _mutations(), ids=[f"{i}-{m[0]}" for i, m in enumerate(_mutations())])
def test_malformed_envelopes_are_clear_errors(what: str, doc: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError, match=what):
        sealed.parse_envelope(json.dumps(doc).encode())


def test_too_many_readers() -> None:
    d = _valid()
    entry = next(iter(d["readers"].values()))  # type: ignore[attr-defined]
    d["readers"] = {"0x" + f"{i:040x}": entry for i in range(sealed.MAX_READERS + 1)}
    with pytest.raises(EnvelopeError, match="readers"):
        sealed.parse_envelope(json.dumps(d).encode())
