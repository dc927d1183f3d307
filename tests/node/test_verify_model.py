"""`hearth job verify` re-runs a job with the model posted on chain, never one the (untrusted) spec
picks, takes the model's sha256 from the local registry when it knows the model, and bounds
every model download in bytes, even when the DAG's root understates the file's size."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hearth.errors import IPFSError, VerificationError
from hearth.formats.cid import CID, DAG_PB, FileDAG, decode_pb_node, pb_node, unixfs_file
from hearth.formats.jobspec import JobSpec, output_hash
from hearth.ipfs.fetch import fetch_bytes
from hearth.models import ModelRef
from hearth_node import modelstore, verify

JOB = 7
OUTPUT = "the same words"


class FakeIPFS:
    """Blocks in memory; counts what it serves."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}
        self.served: list[CID] = []

    def add(self, data: bytes) -> CID:
        dag = FileDAG(0, sink=lambda cid, block: self.blocks.__setitem__(cid.to_bytes(), block))
        dag.update(data)
        return dag.finish()

    def get_block(self, cid: CID) -> bytes:
        self.served.append(cid)
        return self.blocks[cid.to_bytes()]

    def cat(self, cid: CID | str, max_size: int | None = None) -> bytes:
        return fetch_bytes(self, cid, max_size)


class FakeMarket:
    def __init__(self, model: CID, spec: CID) -> None:
        self.model, self.spec = model, spec
        self.posted_calls = 0

    def history(self, job_id: int) -> list[tuple[str, Any]]:
        """The job's events as one get_logs gives them: here only its JobPosted."""
        self.posted_calls += 1
        args = {"jobId": job_id, "client": "0x" + "11" * 20, "provider": "0x" + "00" * 20,
                "modelCid": self.model.to_bytes(), "specCid": self.spec.to_bytes(), "payment": 10**18,
                "claimDeadline": 0, "completionWindow": 600, "feeBps": 0,
                "feeRecipient": "0x" + "22" * 20, "salt": 7}
        return [("JobPosted", {"args": args, "blockNumber": 1, "transactionHash": b"\x00" * 32})]


class FakeRunner:
    """Stands in for llama.cpp: 'runs' any model file and says the agreed output."""

    ran: list[Path] = []

    def __init__(self, path: Path, **_: Any) -> None:
        self.path = path

    def run(self, spec: JobSpec) -> Any:
        FakeRunner.ran.append(self.path)
        return SimpleNamespace(output=OUTPUT)

    def close(self) -> None:
        pass


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> list[ModelRef]:
    """The local model registry, empty unless a test adds to it; a fake runner; a verified result."""
    models: list[ModelRef] = []
    monkeypatch.setattr(verify, "all_models", lambda: models)
    monkeypatch.setattr(modelstore, "all_models", lambda: models)
    monkeypatch.setattr(verify, "Runner", FakeRunner)
    vr = SimpleNamespace(output_hash=output_hash(OUTPUT).hex(), result=SimpleNamespace(output=OUTPUT), private=False)
    monkeypatch.setattr(verify.jobs, "fetch_result", lambda market, ipfs, job_id, history=None, account=None: vr)
    FakeRunner.ran = []
    return models


def _job(ipfs: FakeIPFS, onchain_model: CID, spec_model: CID, spec_sha: str) -> FakeMarket:
    spec = JobSpec(model_cid=str(spec_model), model_sha256=spec_sha, prompt="hello")
    return FakeMarket(onchain_model, ipfs.add(spec.to_bytes()))


def _run(market: FakeMarket, ipfs: FakeIPFS, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return verify.reexecute(market, ipfs, JOB, cache=tmp_path / "cache", **kw)  # type: ignore[arg-type]


def test_reruns_with_the_onchain_model(registry: list[ModelRef], tmp_path: Path) -> None:
    ipfs = FakeIPFS()
    model = os.urandom(300_000)
    cid = ipfs.add(model)
    sha = hashlib.sha256(model).hexdigest()
    registry.append(ModelRef("m", str(cid), sha, len(model)))  # known here, file not on disk
    market = _job(ipfs, cid, cid, sha)
    report = _run(market, ipfs, tmp_path)
    assert report["match"] and report["model_cid"] == str(cid)
    assert FakeRunner.ran[0].read_bytes() == model
    assert market.posted_calls == 1  # one get_logs, shared with fetch_result


def test_spec_naming_another_model_is_refused_before_any_download(registry: list[ModelRef], tmp_path: Path) -> None:
    ipfs = FakeIPFS()
    posted_model = ipfs.add(b"the posted model" * 1000)
    other = ipfs.add(os.urandom(100_000))  # e.g. a huge file the spec's author wants us to fetch
    market = _job(ipfs, posted_model, other, "ab" * 32)
    with pytest.raises(VerificationError, match="posted for"):
        _run(market, ipfs, tmp_path)
    served = {c.to_bytes() for c in ipfs.served}
    assert posted_model.to_bytes() not in served and other.to_bytes() not in served
    assert not FakeRunner.ran


def test_spec_sha256_must_match_the_registry(registry: list[ModelRef], tmp_path: Path) -> None:
    ipfs = FakeIPFS()
    model = os.urandom(1000)
    cid = ipfs.add(model)
    registry.append(ModelRef("m", str(cid), hashlib.sha256(model).hexdigest(), len(model)))
    with pytest.raises(VerificationError, match="sha256"):
        _run(_job(ipfs, cid, cid, "ab" * 32), ipfs, tmp_path)
    assert not FakeRunner.ran


def test_unknown_model_over_the_limit_is_not_fetched(registry: list[ModelRef], tmp_path: Path) -> None:
    ipfs = FakeIPFS()
    model = os.urandom(3 << 20)
    cid = ipfs.add(model)
    market = _job(ipfs, cid, cid, hashlib.sha256(model).hexdigest())
    with pytest.raises(IPFSError, match="over the 1048576-byte limit"):
        _run(market, ipfs, tmp_path, max_model_bytes=1 << 20)
    assert [c for c in ipfs.served if c == cid] == [cid]  # the root only, no data block
    assert not FakeRunner.ran


def test_root_understating_its_size_is_cut_off(registry: list[ModelRef], tmp_path: Path) -> None:
    ipfs = FakeIPFS()
    honest = ipfs.add(os.urandom(6 << 20))
    links, _ = decode_pb_node(ipfs.blocks[honest.to_bytes()])
    liar = pb_node(links, unixfs_file(b"", 1000))  # the same leaves, but "1000 bytes"
    cid = CID.for_block(liar, DAG_PB, 0)
    ipfs.blocks[cid.to_bytes()] = liar
    market = _job(ipfs, cid, cid, "ab" * 32)
    # the verified fetch refuses the lying root itself (its children's sizes do not add up to
    # its declared size); the byte budget of BoundedSource is the second line of defence
    with pytest.raises((IPFSError, VerificationError), match="blocksizes|larger than the 1048576-byte limit"):
        _run(market, ipfs, tmp_path, max_model_bytes=1 << 20)
    source_budget = (1 << 20) + (1 << 20) // 64 + verify.MAX_BLOCK
    served = sum(len(ipfs.blocks[c.to_bytes()]) for c in ipfs.served if c != market.spec)
    assert served <= source_budget + (300 << 10)  # stopped within one leaf of the budget
    assert not list((tmp_path / "cache").glob("*.gguf")) and not FakeRunner.ran


def test_known_size_over_the_limit_refused_up_front(registry: list[ModelRef], tmp_path: Path) -> None:
    ipfs = FakeIPFS()
    model = os.urandom(1000)
    cid = ipfs.add(model)
    sha = hashlib.sha256(model).hexdigest()
    registry.append(ModelRef("m", str(cid), sha, 10 << 30))
    with pytest.raises(IPFSError, match="--max-model-bytes"):
        _run(_job(ipfs, cid, cid, sha), ipfs, tmp_path)
    assert cid not in ipfs.served
