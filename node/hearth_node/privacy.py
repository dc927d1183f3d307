"""Private jobs at the node: its encryption key on chain, the keys of the jobs it works on, and
handing a job's key to an auditor (and reading one handed to it as the auditor).

A job key is kept in memory only: after a restart it is opened again from the spec envelope on
IPFS (or from a JobKeyShared event), so nothing secret lands in the journal."""

from __future__ import annotations

import logging
import threading

from eth_account.signers.local import LocalAccount
from hearth import privacy
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.chain.types import PostedJob
from hearth.formats import sealed
from hearth.formats.sealed import Keypair
from hearth.ipfs.kubo import KuboClient

log = logging.getLogger("hearth.node")


def ensure_encryption_key(market: Market, sender: Sender, account: LocalAccount) -> Keypair:
    """Publish the node's encryption key if it has none on chain (clients seal private jobs to it)."""
    kp, sent = privacy.ensure_published(market, sender, account)
    if sent:
        log.info("published encryption key version %d for %s", kp.version, account.address)
    return kp


class JobKeys:
    """The keys of the private jobs this node reads (None for a public job), opened once per job
    and forgotten when the job ends here."""

    def __init__(self, market: Market, account: LocalAccount, ipfs: KuboClient, chain_id: int,
                 max_spec_bytes: int) -> None:
        self.market, self.account, self.ipfs = market, account, ipfs
        self.chain_id, self.max_spec_bytes = chain_id, max_spec_bytes
        self._keys: dict[int, bytes | None] = {}
        self._lock = threading.Lock()

    def open_spec(self, job: PostedJob, data: bytes) -> bytes:
        """The plaintext spec bytes of `data` as fetched for `job` (NotAReader when the job's key
        is not sealed or shared to this node: it must not claim a job it cannot read)."""
        plain, key = privacy.open_spec(self.market, self.account, job, data)
        with self._lock:
            self._keys[job.job_id] = key
        return plain

    def key(self, job: PostedJob) -> bytes | None:
        """The job's key (None: public), opening the spec again when it is not in memory."""
        with self._lock:
            if job.job_id in self._keys:
                return self._keys[job.job_id]
        self.open_spec(job, self.ipfs.cat(job.spec_cid, max_size=self.max_spec_bytes))
        with self._lock:
            return self._keys[job.job_id]

    def seal_result(self, job: PostedJob, result: bytes) -> bytes:
        """What goes to IPFS as the result: encrypted under the job key for a private job."""
        key = self.key(job)
        if key is None:
            return result
        return sealed.seal_result(result, key, self.chain_id, self.market.address, job.job_id).to_bytes()

    def forget(self, job_id: int) -> None:
        """The job is over here."""
        with self._lock:
            self._keys.pop(job_id, None)


def share_with_auditor(market: Market, sender: Sender, account: LocalAccount, ipfs: KuboClient, job: PostedJob,
                       auditor: str, max_spec_bytes: int = 1 << 20) -> str | None:
    """As the job's provider (or client), hand a private job's key to `auditor`, sealed to its
    published encryption key (JobKeyShared); the transaction hash, or None for a public job,
    which needs no key. UserError when the auditor has published no key."""
    env = sealed.parse_envelope(ipfs.cat(job.spec_cid, max_size=max_spec_bytes))
    if env is None:
        return None
    key = privacy.job_key(market, account, job, env)
    return privacy.share_key(market, sender, job.job_id, key, auditor)


def audited_spec(market: Market, account: LocalAccount, ipfs: KuboClient, job: PostedJob,
                 max_spec_bytes: int = 1 << 20) -> tuple[bytes, bytes | None]:
    """As an auditor, the job's plaintext spec bytes and its key (None: public): the key comes from
    a JobKeyShared event addressed to this account by the job's client or provider, and must
    match the spec's key commitment. NotAReader while no such share exists yet."""
    return privacy.open_spec(market, account, job, ipfs.cat(job.spec_cid, max_size=max_spec_bytes))


def open_result(market: Market, job: PostedJob, key: bytes | None, data: bytes) -> bytes:
    """A result's bytes as fetched -> plaintext (for an auditor comparing outputs)."""
    env = sealed.parse_envelope(data)
    if env is None or key is None:
        return data
    return sealed.open_result(env, key, int(market.w3.eth.chain_id), market.address, job.job_id)
