"""Private jobs on the chain: publish an account's encryption key, choose who a job's key is
sealed to, open a job's spec and result as one of its readers, and hand the key to someone
else (an auditor, the arbiter) through `shareJobKey`. The cryptography is hearth.formats.sealed.

Who reads a private job, and how the key gets there without the client staying online:
- the client: the key is sealed to its own key in the spec envelope;
- a directed job's provider: sealed to it at post (its key is on chain);
- an open job: sealed at post to every active provider that serves the model and has published a
  key (ModelAdded events name them). A provider that registers after the post cannot claim it
  usefully: its node skips the job, never claiming what it cannot read;
- an auditor: the job's provider (or client) seals the key to the auditor's on-chain key and
  emits JobKeyShared; the auditor accepts a share only from the job's client or provider, and
  checks it against the key commitment in the spec envelope;
- the arbiter: the client shares the key the same way (`hearth job share`).
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.errors import HearthError, UserError
from hearth.formats import sealed
from hearth.formats.sealed import Envelope, Keypair, NotAReader, Reader

ZERO_KEY = b"\x00" * 32


def keypair(acct: LocalAccount, version: int) -> Keypair:
    """Version `version` of the account's encryption key (derived from its wallet key)."""
    return sealed.account_keypair(bytes(acct.key), version)


def published(market: Market, acct: LocalAccount) -> Keypair | None:
    """The account's keypair whose public key is on chain now; None when it published none, or
    published a key that was not derived from this wallet key."""
    key, version = market.encryption_key(acct.address)
    if version == 0:
        return None
    kp = keypair(acct, version)
    return kp if kp.public == key else None


def ensure_published(market: Market, sender: Sender, acct: LocalAccount, rotate: bool = False) -> tuple[Keypair, bool]:
    """Publish the account's encryption key if it has none on chain (or one this wallet key did not
    derive), or a new version when `rotate`; (the key on chain now, whether a transaction was sent).
    Old versions stay derivable, so jobs sealed to them still open."""
    current = published(market, acct)
    if current is not None and not rotate:
        return current, False
    _, version = market.encryption_key(acct.address)
    kp = keypair(acct, version + 1)  # setEncryptionKey makes the next version
    sender.transact(market.fn("setEncryptionKey", kp.public))
    return kp, True


def reader_of(market: Market, address: str) -> Reader:
    """`address`'s published key; UserError when it has none."""
    key, version = market.encryption_key(address)
    if version == 0 or key == ZERO_KEY:
        raise UserError(f"{address} has published no encryption key, so nothing private can be sealed to it",
                        hint="it publishes one with: hearth account encryption-key (a node does at start); "
                             "or post with --public")
    return Reader(key, version)


def providers_for(market: Market, model_cid: bytes, provider: str = ZERO_ADDRESS) -> dict[str, Reader]:
    """Who may run a job on this model: the chosen provider, or every active provider serving the
    model that has published a key."""
    if provider != ZERO_ADDRESS:
        return {to_checksum_address(provider): reader_of(market, provider)}
    out: dict[str, Reader] = {}
    for ev in market.logs("ModelAdded", market.deploy_block, "latest", modelKey=keccak(model_cid)):
        p = to_checksum_address(ev["args"]["provider"])
        if p in out or market.account(p).status != "Active" or not market.serves(p, model_cid):
            continue
        key, version = market.encryption_key(p)
        if version:
            out[p] = Reader(key, version)
    if not out:
        raise UserError("no active provider serving this model has published an encryption key",
                        hint="choose one with --provider, or post a plaintext job with --public")
    return out


def seal_spec(market: Market, acct: LocalAccount, spec: bytes, readers: dict[str, Reader]) -> tuple[Envelope, bytes]:
    """The private envelope of a spec, sealed to `readers` and to the client itself; (envelope,
    job key). The client seals to its published key if it has one, else to version 1 (derivable
    whether or not it is on chain)."""
    me = published(market, acct) or keypair(acct, 1)
    everyone = {**readers, to_checksum_address(acct.address): Reader(me.public, me.version)}
    return sealed.seal_spec(spec, everyone, int(market.w3.eth.chain_id), market.address, acct.address)


def job_key(market: Market, acct: LocalAccount, job: PostedJob, env: Envelope) -> bytes:
    """The key of a private job for `acct`: sealed to it in the envelope, else shared with it
    (JobKeyShared) by the job's client or provider. NotAReader when neither."""
    try:
        return sealed.reader_key(env, acct.address, lambda v: keypair(acct, v))
    except NotAReader:
        key = shared_key(market, acct, job, env)
        if key is None:
            raise NotAReader(
                f"job {job.job_id} is private and its key is not sealed or shared to {acct.address}",
                hint="only its client, its provider and those they share the key with can read it") from None
        return key


def open_spec(market: Market, acct: LocalAccount, job: PostedJob, data: bytes) -> tuple[bytes, bytes | None]:
    """Spec bytes as fetched -> (plaintext spec bytes, job key or None for a public job)."""
    env = sealed.parse_envelope(data)
    if env is None:
        return data, None
    key = job_key(market, acct, job, env)
    return sealed.open_spec(env, key, int(market.w3.eth.chain_id), market.address, job.client), key


def share_key(market: Market, sender: Sender, job_id: int, key: bytes, to: str) -> str:
    """Seal a job's key to `to`'s published key and emit JobKeyShared; the transaction hash."""
    to = to_checksum_address(to)
    share = sealed.pack_share(key, reader_of(market, to))
    receipt = sender.transact(market.fn("shareJobKey", job_id, to, share))
    return "0x" + bytes(receipt["transactionHash"]).hex()


def shared_key(market: Market, acct: LocalAccount, job: PostedJob, env: Envelope) -> bytes | None:
    """A key for `job` shared with `acct` by the job's client or by a provider it was directed to
    or claimed by, that matches the envelope's commitment; None if there is none. Shares from
    anyone else are ignored: anybody can emit JobKeyShared."""
    trusted = {job.client.lower()}
    if job.provider != ZERO_ADDRESS:
        trusted.add(job.provider.lower())
    trusted |= {str(ev["args"]["provider"]).lower()
                for ev in market.logs("JobClaimed", market.deploy_block, "latest", jobId=job.job_id)}
    for ev in market.logs("JobKeyShared", market.deploy_block, "latest", jobId=job.job_id,
                          to=to_checksum_address(acct.address)):
        if str(ev["args"]["from"]).lower() not in trusted:
            continue
        share = bytes(ev["args"]["sealedKey"])
        try:
            key = sealed.open_share(share, keypair(acct, sealed.share_version(share)))
            sealed.check_key(env, key)
        except (HearthError, ValueError):  # a wrong or garbled share: look at the next one
            continue
        return key
    return None
