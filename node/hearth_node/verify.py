"""`hearth job verify`: re-run a job locally and compare output hashes.

The spec on IPFS is written by whoever posted the job, so it is not trusted to say which model to
download: the model is the one committed on chain in JobPosted, the spec must name that same
model, its sha256 comes from the local model registry when the model is known here, and every
download is bounded in bytes (a hostile spec cannot make a verifier fetch an endless file).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from hearth import jobs, privacy
from hearth.chain.market import Market
from hearth.chain.types import PostedJob, posted_from_event
from hearth.errors import IPFSError, VerificationError
from hearth.formats.cid import CID, DAG_PB, decode_pb_node, unixfs_data
from hearth.formats.jobspec import JobSpec, output_hash, parse_spec
from hearth.ipfs.fetch import MAX_BLOCK, BlockSource, verify_block
from hearth.ipfs.kubo import KuboClient
from hearth.models import all_models

from hearth_node.modelstore import ModelStore
from hearth_node.runner import Runner

DEFAULT_MAX_MODEL_BYTES = 8 << 30  # 8 GiB: bigger than any model a home node runs on a CPU
MAX_SPEC_BYTES = 1 << 20


class BoundedSource:
    """A BlockSource that refuses a model over `max_bytes`: by the size its root declares (before
    any data block is fetched) and by the bytes actually served (a root may understate its size;
    the allowance covers the DAG's own link blocks, a few bytes per 256 KiB leaf)."""

    def __init__(self, source: BlockSource, root: CID, max_bytes: int) -> None:
        self.source = source
        self.root = root
        self.max_bytes = max_bytes
        self.budget = max_bytes + max_bytes // 64 + MAX_BLOCK
        self.served = 0

    def get_block(self, cid: CID) -> bytes:
        """The block, counted against the budget; IPFSError once over it."""
        block = self.source.get_block(cid)
        self.served += len(block)
        if self.served > self.budget:
            raise IPFSError(f"model {self.root} is larger than the {self.max_bytes}-byte limit; download stopped",
                            hint="raise it with --max-model-bytes if the model is really that big")
        if cid == self.root:
            declared = len(block)
            if cid.codec == DAG_PB:
                declared = unixfs_data(decode_pb_node(verify_block(cid, block))[1])[2]
            if declared > self.max_bytes:
                raise IPFSError(f"model {cid} is {declared} bytes, over the {self.max_bytes}-byte limit; not fetched",
                                hint="raise it with --max-model-bytes if the model is really that big")
        return block


def model_to_run(posted: PostedJob, spec: JobSpec) -> tuple[CID, str, int]:
    """(CID, sha256, size or 0 if unknown) of the model to re-run the job with: the one posted on
    chain; the spec must name it, and the local registry's sha256 wins over the spec's."""
    onchain = posted.model_cid
    if CID.parse(spec.model_cid).digest != onchain.digest:
        raise VerificationError(
            f"job {posted.job_id}: the spec names model {spec.model_cid}, but the job was posted for {onchain}",
            hint="an honest provider skips such a job; its result was not computed with the posted model",
        )
    for m in all_models():
        if CID.parse(m.cid).digest == onchain.digest:
            if m.sha256 != spec.model_sha256:
                raise VerificationError(
                    f"job {posted.job_id}: the spec gives model sha256 {spec.model_sha256}, but {m.name} ({onchain}) "
                    f"has {m.sha256}",
                    hint="an honest provider skips such a job (the model would fail its sha256 check)",
                )
            return onchain, m.sha256, m.size
    # Not known here: the spec's sha256 is only a cross-check; the bytes are bound to the on-chain
    # CID block by block, and the download to max_model_bytes.
    return onchain, spec.model_sha256, 0


def reexecute(market: Market, ipfs: KuboClient, job_id: int, cache: Path | None = None,
              max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
              account: Callable[[], LocalAccount] | None = None) -> dict[str, Any]:
    """Fetch the job's spec and verified result, run the spec here with the on-chain model,
    compare the outputs' on-chain hashes. A private job is decrypted with its key, which `account()`
    must hold (its client, its provider, or an account the key was shared with)."""
    history = market.history(job_id)  # one get_logs for the whole job, shared by both checks
    vr = jobs.fetch_result(market, ipfs, job_id, history, account=account)
    posted = posted_from_event(next(ev for name, ev in history if name == "JobPosted"))
    data, key = ipfs.cat(posted.spec_cid, max_size=MAX_SPEC_BYTES), None
    if vr.private and account is not None:  # fetch_result has checked that the account holds the key
        data, key = privacy.open_spec(market, account(), posted, data)
    spec = parse_spec(data)
    cid, sha256, size = model_to_run(posted, spec)
    if size > max_model_bytes:
        raise IPFSError(f"model {cid} is {size} bytes, over the {max_model_bytes}-byte limit",
                        hint="raise it with --max-model-bytes")
    # a size known from the registry is exact: nothing beyond it is ever needed
    source = BoundedSource(ipfs, cid, size or max_model_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(cache or Path(tmp), source)
        path = store.ensure(cid, sha256, size)
        runner = Runner(path, n_ctx=2048, n_threads=None, n_gpu_layers=0)
        try:
            local = runner.run(spec)
        finally:
            runner.close()
    local_hash = output_hash(local.output).hex()
    return {"job_id": job_id, "match": local_hash == vr.output_hash, "local_sha256": local_hash,
            "onchain_sha256": vr.output_hash, "local_output": local.output, "provider_output": vr.result.output,
            "model_cid": str(cid)}
