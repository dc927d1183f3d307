"""Private jobs: the envelope a spec or a result travels in, and the keys that open it. Pure: no
I/O (randomness comes from the OS through libsodium).

A private job has one random 32-byte job key K. The spec is encrypted under K with
XChaCha20-Poly1305 (24-byte random nonces: no counter to keep), and K is sealed (NaCl SealedBox:
X25519 with an ephemeral sender key + XSalsa20-Poly1305) to each reader's X25519 public key:
the client itself (a sealed box cannot be reopened by its sender) and the provider(s) that may
run the job. The result is encrypted under the same K, so whoever holds K (client, provider,
and an auditor or the arbiter the key is handed to) reads spec and result alike.

What the associated data binds, and why:
- spec: chain id, market, client. The job id does not exist before the post, so it cannot be
  bound; the client can be, and must be: otherwise anyone could post a copy of Alice's spec
  CID as their own job and receive the answer encrypted to them. A reader takes the client from
  the JobPosted event, never from the envelope. The same client re-posting its own spec (a
  retry) is harmless.
- result: chain id, market and the job id, known by then: a result cannot be passed off as
  another job's.
- both: the key commitment. AEADs are not key-committing (one ciphertext can be made to open
  under two keys), so the envelope carries sha256 of K and every reader checks the key it got
  against it: the client, the provider, an auditor and the arbiter all see the same plaintext.

An account's X25519 keys are derived from its wallet key (see `account_keypair`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.utils
from nacl import bindings
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from hearth.errors import UserError
from hearth.formats import safejson
from hearth.formats.jobspec import canonical

ENVELOPE_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
SEALED_KEY_BYTES = KEY_BYTES + 48  # ephemeral public key + Poly1305 tag
MAX_READERS = 256  # bounds what a hostile envelope makes a reader walk; an open job lists providers
MAX_VERSION = 2**32 - 1  # the contract counts versions in a uint32
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SPEC_KEYS = {"hearth_private", "kind", "nonce", "ciphertext", "key_commitment", "readers"}
_RESULT_KEYS = {"hearth_private", "kind", "nonce", "ciphertext"}


class EnvelopeError(UserError):
    """A private envelope that is malformed, or that does not open: wrong key, tampered bytes,
    or bound to another chain, market, client or job."""


class NotAReader(UserError):
    """A private job whose key is not sealed to this account."""


@dataclass(frozen=True)
class Keypair:
    """One version of an account's X25519 encryption key."""

    version: int
    secret: bytes
    public: bytes


@dataclass(frozen=True)
class Reader:
    """Where a job key is sealed to: an account's public key and its version."""

    public: bytes
    version: int


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope. `readers` (address, lowercase -> (version, sealed key)) and
    `key_commitment` are empty for a result, which is read with the spec's key."""

    kind: str
    nonce: bytes
    ciphertext: bytes
    key_commitment: str = ""
    readers: tuple[tuple[str, int, bytes], ...] = ()

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes (what goes to IPFS)."""
        d: dict[str, Any] = {"hearth_private": ENVELOPE_VERSION, "kind": self.kind, "nonce": _b64(self.nonce),
                             "ciphertext": _b64(self.ciphertext)}
        if self.kind == "spec":
            d["key_commitment"] = self.key_commitment
            d["readers"] = {a: {"version": v, "sealed_key": _b64(s)} for a, v, s in self.readers}
        return canonical(d)

    def reader_addresses(self) -> list[str]:
        """The accounts the job key is sealed to (lowercase)."""
        return [a for a, _, _ in self.readers]


def account_keypair(wallet_key: bytes, version: int) -> Keypair:
    """Version `version` of an account's X25519 key, derived from its wallet key.

    Derived rather than stored: nothing to back up or lose beside the keystore, any version can be
    derived again so old jobs still decrypt after a rotation, and a node on a fresh disk finds the
    key it published. HMAC-SHA256 is one-way, so a leaked encryption secret reveals neither the
    wallet key nor another version. The price: whoever steals the wallet key can derive every
    version and read every past job of that account (no forward secrecy against that theft)."""
    if not 1 <= version <= MAX_VERSION:
        raise UserError(f"encryption key version must be 1..{MAX_VERSION}, not {version}")
    seed = hmac.new(wallet_key, b"hearth x25519 encryption key v%d" % version, hashlib.sha256).digest()
    sk = PrivateKey(seed)  # libsodium clamps the scalar
    return Keypair(version, bytes(sk), bytes(sk.public_key))


def new_job_key() -> bytes:
    """A fresh random job key."""
    return _random(KEY_BYTES)


def _random(n: int) -> bytes:
    return bytes(nacl.utils.random(n))


def key_commitment(job_key: bytes) -> str:
    """sha256 of the job key, hex: lets every reader check it holds the key the client used."""
    return hashlib.sha256(b"hearth job key\x00" + job_key).hexdigest()


def seal_key(job_key: bytes, public: bytes) -> bytes:
    """`job_key` sealed to an X25519 public key (only its secret opens it)."""
    return bytes(SealedBox(PublicKey(public)).encrypt(job_key))


def open_key(sealed: bytes, secret: bytes) -> bytes:
    """The job key in `sealed`; EnvelopeError if `secret` does not open it."""
    try:
        key = bytes(SealedBox(PrivateKey(secret)).decrypt(sealed))
    except (CryptoError, ValueError, TypeError):
        raise EnvelopeError("the sealed job key does not open with this account's encryption key",
                            hint="the key was sealed to another key (or another version of it)") from None
    if len(key) != KEY_BYTES:
        raise EnvelopeError(f"the sealed job key is {len(key)} bytes, not {KEY_BYTES}")
    return key


def pack_share(job_key: bytes, reader: Reader) -> bytes:
    """A key share for `shareJobKey`: the reader's key version (4 bytes, big-endian), then the
    job key sealed to that key."""
    return reader.version.to_bytes(4, "big") + seal_key(job_key, reader.public)


def share_version(share: bytes) -> int:
    """The key version a share is sealed to; EnvelopeError when it is not a share."""
    if len(share) != 4 + SEALED_KEY_BYTES:
        raise EnvelopeError(f"a key share is {4 + SEALED_KEY_BYTES} bytes, not {len(share)}")
    return int.from_bytes(share[:4], "big")


def open_share(share: bytes, keypair: Keypair) -> bytes:
    """The job key in a share sealed to `keypair`."""
    if share_version(share) != keypair.version:
        raise EnvelopeError(f"the share is sealed to key version {share_version(share)}, not {keypair.version}")
    return open_key(share[4:], keypair.secret)


def spec_aad(chain_id: int, market: str, client: str, commitment: str) -> bytes:
    """Associated data of a spec (see the module's docstring)."""
    return canonical({"purpose": "hearth job spec", "chain_id": chain_id, "market": market.lower(),
                      "client": client.lower(), "key_commitment": commitment})


def result_aad(chain_id: int, market: str, job_id: int) -> bytes:
    """Associated data of a result."""
    return canonical({"purpose": "hearth job result", "chain_id": chain_id, "market": market.lower(),
                      "job_id": job_id})


def _encrypt(plaintext: bytes, key: bytes, aad: bytes) -> tuple[bytes, bytes]:
    nonce = _random(NONCE_BYTES)
    return nonce, bytes(bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key))


def _decrypt(env: Envelope, key: bytes, aad: bytes) -> bytes:
    try:
        return bytes(bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(env.ciphertext, aad, env.nonce, key))
    except (CryptoError, ValueError, TypeError):
        raise EnvelopeError(f"the private {env.kind} does not decrypt: wrong key, tampered bytes, or made for "
                            "another chain, market, client or job") from None


def seal_spec(spec: bytes, readers: dict[str, Reader], chain_id: int, market: str, client: str) -> tuple[Envelope, bytes]:
    """Encrypt spec bytes under a new job key sealed to each reader; (envelope, job key)."""
    if not readers or len(readers) > MAX_READERS:
        raise UserError(f"a private job needs 1..{MAX_READERS} readers, not {len(readers)}")
    key = new_job_key()
    commitment = key_commitment(key)
    nonce, ct = _encrypt(spec, key, spec_aad(chain_id, market, client, commitment))
    sealed = tuple(sorted((a.lower(), r.version, seal_key(key, r.public)) for a, r in readers.items()))
    return Envelope("spec", nonce, ct, commitment, sealed), key


def reader_key(env: Envelope, address: str, keypair_for: Callable[[int], Keypair]) -> bytes:
    """The job key sealed to `address`, opened with `keypair_for(version)` (a Keypair) and checked
    against the envelope's commitment; NotAReader when it is not sealed to `address`."""
    for a, version, sealed in env.readers:
        if a == address.lower():
            key = open_key(sealed, keypair_for(version).secret)
            check_key(env, key)
            return key
    raise NotAReader(f"this private job's key is not sealed to {address}",
                     hint="only the job's client and its provider(s) can read it; the client may share it")


def check_key(env: Envelope, key: bytes) -> None:
    """EnvelopeError unless `key` is the one the spec envelope commits to."""
    if len(key) != KEY_BYTES or not hmac.compare_digest(key_commitment(key), env.key_commitment):
        raise EnvelopeError("the job key does not match the key commitment in the job's spec",
                            hint="whoever handed this key over handed a wrong one")


def open_spec(env: Envelope, key: bytes, chain_id: int, market: str, client: str) -> bytes:
    """The spec bytes in a spec envelope, its key checked and its binding to the job's
    chain, market and (JobPosted's) client verified."""
    if env.kind != "spec":
        raise EnvelopeError(f"expected a private spec, got a private {env.kind}")
    check_key(env, key)
    return _decrypt(env, key, spec_aad(chain_id, market, client, env.key_commitment))


def seal_result(result: bytes, key: bytes, chain_id: int, market: str, job_id: int) -> Envelope:
    """Encrypt result bytes under the job key, bound to the job."""
    nonce, ct = _encrypt(result, key, result_aad(chain_id, market, job_id))
    return Envelope("result", nonce, ct)


def open_result(env: Envelope, key: bytes, chain_id: int, market: str, job_id: int) -> bytes:
    """The result bytes in a result envelope."""
    if env.kind != "result":
        raise EnvelopeError(f"expected a private result, got a private {env.kind}")
    return _decrypt(env, key, result_aad(chain_id, market, job_id))


# ---------------------------------------------------------------------- parsing (hostile input)

def parse_envelope(data: bytes) -> Envelope | None:
    """The envelope in `data`; None when `data` is not one (a plaintext spec or result, or not
    JSON at all: its own parser says what is wrong); EnvelopeError when it claims to be one and
    is malformed."""
    try:
        d = safejson.loads(data)
    except safejson.JSONRejected:
        return None
    if not isinstance(d, dict) or "hearth_private" not in d:
        return None
    if type(d["hearth_private"]) is not int or d["hearth_private"] != ENVELOPE_VERSION:
        raise EnvelopeError(f"private envelope version must be {ENVELOPE_VERSION}")
    kind = d.get("kind")
    if kind not in ("spec", "result"):
        raise EnvelopeError("private envelope kind must be spec or result")
    expected = _SPEC_KEYS if kind == "spec" else _RESULT_KEYS
    if set(d) != expected:
        raise EnvelopeError(f"private {kind} must have exactly the keys {', '.join(sorted(expected))}")
    nonce = _unb64(d["nonce"], "nonce")
    if len(nonce) != NONCE_BYTES:
        raise EnvelopeError(f"private envelope nonce must be {NONCE_BYTES} bytes, not {len(nonce)}")
    ciphertext = _unb64(d["ciphertext"], "ciphertext")
    if kind == "result":
        return Envelope(kind, nonce, ciphertext)
    commitment = d["key_commitment"]
    if not isinstance(commitment, str) or not _HEX64.fullmatch(commitment):
        raise EnvelopeError("private spec key_commitment must be 64 lowercase hex digits")
    readers = d["readers"]
    if not isinstance(readers, dict) or not 1 <= len(readers) <= MAX_READERS:
        raise EnvelopeError(f"private spec readers must be an object of 1..{MAX_READERS} entries")
    out = []
    for addr, entry in readers.items():
        if not _ADDRESS.fullmatch(addr):
            raise EnvelopeError("private spec readers must be keyed by lowercase 0x addresses")
        if not isinstance(entry, dict) or set(entry) != {"version", "sealed_key"}:
            raise EnvelopeError("each private spec reader must have exactly version and sealed_key")
        version = entry["version"]
        if type(version) is not int or not 1 <= version <= MAX_VERSION:
            raise EnvelopeError(f"a reader's key version must be an integer 1..{MAX_VERSION}")
        sealed = _unb64(entry["sealed_key"], "sealed_key")
        if len(sealed) != SEALED_KEY_BYTES:
            raise EnvelopeError(f"a sealed key must be {SEALED_KEY_BYTES} bytes, not {len(sealed)}")
        out.append((addr, version, sealed))
    return Envelope(kind, nonce, ciphertext, commitment, tuple(sorted(out)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"private envelope {where} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"private envelope {where} is not base64") from None
