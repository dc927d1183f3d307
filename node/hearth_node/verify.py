"""`hearth job verify`: re-run a job locally and compare output hashes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hearth import jobs
from hearth.chain.market import Market
from hearth.formats.cid import CID
from hearth.formats.jobspec import output_hash, parse_spec
from hearth.ipfs.kubo import KuboClient

from hearth_node.modelstore import ModelStore
from hearth_node.runner import Runner


def reexecute(market: Market, ipfs: KuboClient, job_id: int, cache: Path | None = None) -> dict[str, Any]:
    """Fetch the job's spec and verified result, run the spec here, compare sha256 of outputs."""
    vr = jobs.fetch_result(market, ipfs, job_id)
    posted = market.posted(job_id)
    spec = parse_spec(ipfs.cat(CID.parse(posted.spec_cid), max_size=1 << 20))
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(cache or Path(tmp), ipfs)
        path = store.ensure(spec.model_cid, spec.model_sha256)
        runner = Runner(path, n_ctx=2048, n_threads=None, n_gpu_layers=0)
        try:
            local = runner.run(spec)
        finally:
            runner.close()
    local_hash = output_hash(local.output).hex()
    return {"job_id": job_id, "match": local_hash == vr.output_hash, "local_sha256": local_hash,
            "onchain_sha256": vr.output_hash, "local_output": local.output, "provider_output": vr.result.output}
