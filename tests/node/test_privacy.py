"""Private jobs between a client, providers and an auditor on one market (eth-tester), with
an in-memory IPFS: who can read a job, how its key reaches an auditor, rotation, and the
node's view of a job that is not sealed to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hearth import jobs, privacy
from hearth.chain.types import result_commitment
from hearth.errors import UserError
from hearth.formats import sealed
from hearth.formats.cid import CID, cid_of_bytes
from hearth.formats.jobspec import Params, make_spec, output_hash, parse_spec, result_body
from hearth.formats.receipt import sign_result
from hearth.formats.sealed import NotAReader
from hearth.formats.units import TOKEN
from hearth_node import privacy as node_privacy
from hearth_node.privacy import JobKeys

from tests.backends import EthTesterBackend
from tests.contracts.harness import MODEL_V0, MODEL_V1, Harness, make_harness

WORD = "xylophonic-marmalade"


class MemIPFS:
    """add and cat, by CID, in memory."""

    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}

    def add(self, data: bytes, pin: bool = True) -> CID:
        cid = cid_of_bytes(data)
        self.blocks[str(cid)] = data
        return cid

    def cat(self, cid: CID, max_size: int = 1 << 20) -> bytes:
        return self.blocks[str(cid)]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Harness, MemIPFS]]:
    b = EthTesterBackend()
    h = make_harness(b)
    yield h, MemIPFS()
    b.close()


def who(h: Harness) -> dict[str, LocalAccount]:
    a = h.b.accounts
    return {"provider": a[1], "client": a[2], "keyless": a[3], "other_model": a[4], "auditor": a[5], "stranger": a[6]}


def test_private_job_from_post_to_audit(world: tuple[Harness, MemIPFS]) -> None:
    h, ipfs = world
    p = who(h)
    h.register(p["provider"])
    h.register(p["keyless"])  # serves the model, never published a key: cannot be sealed to
    h.register(p["other_model"], models=(MODEL_V1,))
    h.fund(p["client"])
    for name in ("provider", "other_model", "auditor"):
        node_privacy.ensure_encryption_key(h.market, h.s(p[name]), p[name])
    assert privacy.published(h.market, p["provider"]) is not None
    assert set(privacy.providers_for(h.market, MODEL_V0)) == {p["provider"].address}

    spec = make_spec(str(CID.parse(MODEL_V0)), "ab" * 32, None, [{"role": "user", "content": f"Define {WORD}"}],
                     Params(max_tokens=8))
    posted = jobs.post(h.market, h.s(p["client"]), p["client"], ipfs, spec, TOKEN, 600, 600, private=True)  # type: ignore[arg-type]
    assert set(posted.readers) == {p["provider"].address.lower(), p["client"].address.lower()}
    assert WORD.encode() not in ipfs.blocks[posted.spec_cid]
    job = h.market.posted(posted.job_id)
    h.jobs[job.job_id] = job.terms

    # the node of a provider it is not sealed to skips it; the provider's node reads it
    with pytest.raises(NotAReader):
        JobKeys(h.market, p["keyless"], ipfs, h.b.w3.eth.chain_id, 1 << 20).open_spec(job, ipfs.cat(job.spec_cid))  # type: ignore[arg-type]
    keys = JobKeys(h.market, p["provider"], ipfs, h.b.w3.eth.chain_id, 1 << 20)  # type: ignore[arg-type]
    assert parse_spec(keys.open_spec(job, ipfs.cat(job.spec_cid))) == spec

    # it runs, and delivers a result encrypted to the job key, completing with a keyed hash
    h.claim(p["provider"], job.job_id)
    output = "A jam made of xylophones."
    body = result_body(job_id=job.job_id, chain_id=h.b.w3.eth.chain_id, market=h.market.address,
                       spec_cid=str(job.spec_cid), output=output, finish_reason="stop",
                       usage={"prompt_tokens": 3, "completion_tokens": 5}, model_sha256="ab" * 32,
                       engine={"name": "test"}, params=spec.params.as_dict(), timings={}, provider=p["provider"].address,
                       commit_salt=bytes(32))
    keys.forget(job.job_id)  # as after a restart: the key is opened again from the spec
    result_cid = ipfs.add(keys.seal_result(job, sign_result(p["provider"], body).to_bytes()))
    assert output.encode() not in ipfs.blocks[str(result_cid)]
    commitment = result_commitment(job.job_id, p["provider"].address, output_hash(output), bytes(32))
    h.op(p["provider"], "complete", job.job_id, h.terms(job.job_id), result_cid.to_bytes(), commitment)

    vr = jobs.fetch_result(h.market, ipfs, job.job_id, account=lambda: p["client"])  # type: ignore[arg-type]
    assert vr.result.output == output and vr.private
    with pytest.raises(NotAReader, match="not sealed or shared"):
        jobs.fetch_result(h.market, ipfs, job.job_id, account=lambda: p["stranger"])  # type: ignore[arg-type]
    with pytest.raises(UserError, match="is private"):
        jobs.fetch_result(h.market, ipfs, job.job_id)  # type: ignore[arg-type]

    # an auditor: nothing until the provider shares; a stranger's share does not count
    auditor = p["auditor"]
    with pytest.raises(NotAReader):
        node_privacy.audited_spec(h.market, auditor, ipfs, job)  # type: ignore[arg-type]
    bogus = sealed.pack_share(b"\x07" * 32, privacy.reader_of(h.market, auditor.address))
    h.op(p["stranger"], "shareJobKey", job.job_id, auditor.address, bogus)
    h.op(p["provider"], "shareJobKey", job.job_id, auditor.address, bogus)  # trusted sender, wrong key
    with pytest.raises(NotAReader):
        node_privacy.audited_spec(h.market, auditor, ipfs, job)  # type: ignore[arg-type]
    tx = node_privacy.share_with_auditor(h.market, h.s(p["provider"]), p["provider"], ipfs, job, auditor.address)  # type: ignore[arg-type]
    assert tx is not None
    plain, key = node_privacy.audited_spec(h.market, auditor, ipfs, job)  # type: ignore[arg-type]
    assert parse_spec(plain) == spec and key is not None
    assert b"xylophones" in node_privacy.open_result(h.market, job, key, ipfs.cat(result_cid))
    vr = jobs.fetch_result(h.market, ipfs, job.job_id, account=lambda: auditor)  # type: ignore[arg-type]
    assert vr.result.output == output

    # rotation: a new version on chain, and the old job still opens with the old one
    kp, sent = privacy.ensure_published(h.market, h.s(p["provider"]), p["provider"], rotate=True)
    assert sent and kp.version == 2 and h.market.encryption_key(p["provider"].address) == (kp.public, 2)
    fresh = JobKeys(h.market, p["provider"], ipfs, h.b.w3.eth.chain_id, 1 << 20)  # type: ignore[arg-type]
    assert parse_spec(fresh.open_spec(job, ipfs.cat(job.spec_cid))) == spec
    assert privacy.ensure_published(h.market, h.s(p["provider"]), p["provider"]) == (kp, False)


def test_sealing_needs_published_keys(world: tuple[Harness, MemIPFS]) -> None:
    h, _ = world
    p = who(h)
    with pytest.raises(UserError, match="published no encryption key") as info:
        privacy.providers_for(h.market, MODEL_V0, p["keyless"].address)
    assert info.value.hint and "--public" in info.value.hint
    with pytest.raises(UserError, match="no active provider"):
        privacy.providers_for(h.market, b"\x01\x55\x12\x20" + b"\x00" * 32)


def test_public_job_needs_no_key(world: tuple[Harness, MemIPFS]) -> None:
    h, ipfs = world
    p = who(h)
    spec = make_spec(str(CID.parse(MODEL_V0)), "ab" * 32, "plain", None, Params(max_tokens=8))
    posted: Any = jobs.post(h.market, h.s(p["client"]), p["client"], ipfs, spec, TOKEN, 600, 600)  # type: ignore[arg-type]
    job = h.market.posted(posted.job_id)
    h.jobs[job.job_id] = job.terms
    assert posted.readers == () and b"plain" in ipfs.blocks[posted.spec_cid]
    keys = JobKeys(h.market, p["keyless"], ipfs, h.b.w3.eth.chain_id, 1 << 20)  # type: ignore[arg-type]
    assert parse_spec(keys.open_spec(job, ipfs.cat(job.spec_cid))) == spec and keys.key(job) is None
    assert node_privacy.share_with_auditor(h.market, h.s(p["provider"]), p["provider"], ipfs, job,  # type: ignore[arg-type]
                                           p["auditor"].address) is None
