"""Provider offers: the EIP-712 message a provider signs to take jobs without a claim race, and
the document (JSON on IPFS) in which it publishes them. Pure: no chain, no network.

The typed data must match JobMarket.OFFER_TYPEHASH and its EIP-712 domain ("Hearth JobMarket",
version "2", the chain id and the market's address); tests compare `digest` with the contract's
offerDigest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from hearth.formats import safejson
from hearth.formats.jobspec import SpecError, canonical

KIND = "hearth-offers"
VERSION = 1
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_OFFERS = 64
TYPES = {"Offer": [
    {"name": "provider", "type": "address"}, {"name": "modelKey", "type": "bytes32"},
    {"name": "reproClass", "type": "bytes32"}, {"name": "price", "type": "uint96"},
    {"name": "completionWindow", "type": "uint32"}, {"name": "maxOpenJobs", "type": "uint16"},
    {"name": "expiry", "type": "uint40"}, {"name": "nonce", "type": "uint64"},
]}
_LIMITS = {"price": 2**96, "completion_window": 2**32, "max_open_jobs": 2**16, "expiry": 2**40, "nonce": 2**64}


@dataclass(frozen=True)
class Offer:
    """One signed promise (see IJobMarket.Offer)."""

    provider: str
    model_key: bytes
    repro_class: bytes
    price: int
    completion_window: int
    max_open_jobs: int
    expiry: int
    nonce: int
    signature: bytes = b""

    def as_tuple(self) -> tuple[str, bytes, bytes, int, int, int, int, int]:
        """ABI form of IJobMarket.Offer."""
        return (to_checksum_address(self.provider), self.model_key, self.repro_class, self.price,
                self.completion_window, self.max_open_jobs, self.expiry, self.nonce)

    def message(self) -> dict[str, Any]:
        return dict(zip([f["name"] for f in TYPES["Offer"]], self.as_tuple(), strict=True))


def domain(chain_id: int, market: str) -> dict[str, Any]:
    return {"name": "Hearth JobMarket", "version": "2", "chainId": chain_id,
            "verifyingContract": to_checksum_address(market)}


def _typed(offer: Offer, chain_id: int, market: str) -> Any:
    return encode_typed_data(domain_data=domain(chain_id, market), message_types=TYPES, message_data=offer.message())


def digest(offer: Offer, chain_id: int, market: str) -> bytes:
    """The EIP-712 hash the provider signs (JobMarket.offerDigest)."""
    m = _typed(offer, chain_id, market)
    return bytes(keccak(b"\x19" + m.version + m.header + m.body))


def sign(acct: LocalAccount, offer: Offer, chain_id: int, market: str) -> Offer:
    """`offer` signed by `acct`, which must be its provider."""
    if to_checksum_address(acct.address) != to_checksum_address(offer.provider):
        raise ValueError(f"{acct.address} cannot sign an offer of {offer.provider}")
    sig = acct.sign_message(_typed(offer, chain_id, market)).signature
    return Offer(**{**asdict(offer), "signature": bytes(sig)})


_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def signer(offer: Offer, chain_id: int, market: str) -> str | None:
    """Who signed `offer` (None when the signature is not one the contract takes: OpenZeppelin's
    ECDSA refuses a high s and a v other than 27 or 28, which eth-account would accept)."""
    sig = offer.signature
    if len(sig) != 65 or sig[64] not in (27, 28) or int.from_bytes(sig[32:64], "big") > _HALF_N:
        return None
    try:
        return str(Account.recover_message(_typed(offer, chain_id, market), signature=offer.signature))
    except Exception:  # eth_keys raises several types; all mean "not a signature"
        return None


def document(offers: list[Offer], chain_id: int, market: str) -> bytes:
    """The JSON a provider publishes (IPFS) and points to with publishOffers."""
    def one(o: Offer) -> dict[str, Any]:
        d = asdict(o)
        for k in ("model_key", "repro_class", "signature"):
            d[k] = "0x" + d[k].hex()
        d["price"] = str(o.price)  # wei: may pass the JSON reader's 20-digit bound on integers
        return d
    body = {"kind": KIND, "version": VERSION, "chain_id": chain_id, "market": to_checksum_address(market),
            "offers": [one(o) for o in offers]}
    return canonical(body)


def parse_document(data: bytes, chain_id: int, market: str) -> list[Offer]:
    """The offers of a published document, for this chain and market; SpecError when the
    document is malformed (a hostile provider may publish anything). Signatures are not checked
    here: see `signer`."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SpecError(f"offer document is {len(data)} bytes, over {MAX_DOCUMENT_BYTES}")
    try:
        body = safejson.loads(data)
    except safejson.JSONRejected as e:
        raise SpecError(f"offer document: {e}") from None
    if not isinstance(body, dict) or body.get("kind") != KIND or body.get("version") != VERSION:
        raise SpecError(f"not a {KIND} document of version {VERSION}")
    if body.get("chain_id") != chain_id or str(body.get("market", "")).lower() != market.lower():
        raise SpecError("offer document is for another chain or market")
    raw = body.get("offers")
    if not isinstance(raw, list) or len(raw) > MAX_OFFERS:
        raise SpecError(f"offers must be a list of at most {MAX_OFFERS}")
    return [_offer(x) for x in raw]


def _offer(x: Any) -> Offer:
    names = {f.name for f in fields(Offer)}
    if not isinstance(x, dict) or set(x) != names:
        raise SpecError(f"an offer has exactly the fields {sorted(names)}")
    try:
        provider = to_checksum_address(x["provider"])
        raw = {k: bytes.fromhex(str(x[k]).removeprefix("0x")) for k in ("model_key", "repro_class", "signature")}
    except (ValueError, TypeError):
        raise SpecError("an offer has a malformed address or hex field") from None
    if len(raw["model_key"]) != 32 or len(raw["repro_class"]) != 32 or len(raw["signature"]) != 65:
        raise SpecError("an offer's model_key and repro_class are 32 bytes, its signature 65")
    price = x["price"]
    if not isinstance(price, str) or not price.isascii() or not price.isdigit() or len(price) > 29:
        raise SpecError("an offer's price must be a decimal string of wei")
    x = {**x, "price": int(price)}
    for k, limit in _LIMITS.items():
        v = x[k]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < limit:
            raise SpecError(f"an offer's {k} must be an integer in [0, {limit})")
    return Offer(provider, raw["model_key"], raw["repro_class"], x["price"], x["completion_window"],
                 x["max_open_jobs"], x["expiry"], x["nonce"], raw["signature"])
