"""The guardian's decisions, as a table."""

from __future__ import annotations

import pytest
from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.formats.cid import CID
from hearth.formats.jobspec import Params, make_spec
from hearth_node.guardian import Accepted, Policy, Rejected, check_event, check_spec

MODEL = "QmR58njnbf5NUQQ6uF9vkbHL4N1h3kFnkFcXdASEa8hQvY"
SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ME = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
POLICY = Policy(ME, {CID.parse(MODEL).to_bytes(): SHA}, min_price=100, max_tokens=256, max_spec_bytes=4096,
                n_ctx=2048, tokens_per_second=20.0)
NOW = 1_000_000


def job(**kw: object) -> PostedJob:
    base = dict(job_id=1, client=OTHER, provider=ZERO_ADDRESS, model_key=b"", model_cid=CID.parse(MODEL).to_bytes(),
                spec_cid=b"", payment=1000, claim_deadline=NOW + 60, completion_window=600, fee_bps=0,
                block_number=1, tx_hash="0x")
    base.update(kw)
    return PostedJob(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "reason"), [
    ({}, None),
    ({"provider": ME}, None),
    ({"provider": OTHER}, "reserved for provider"),
    ({"model_cid": CID.parse("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG").to_bytes()}, "model not served"),
    ({"payment": 99}, "below our price"),
    ({"claim_deadline": NOW}, "claim deadline already passed"),
])
def test_check_event(kw: dict[str, object], reason: str | None) -> None:
    d = check_event(job(**kw), POLICY, NOW)
    if reason is None:
        assert d == Accepted()
    else:
        assert isinstance(d, Rejected) and reason in d.reason


def spec(**kw: object) -> object:
    params = Params(**{k: v for k, v in kw.items() if k in ("max_tokens",)})  # type: ignore[arg-type]
    return make_spec(str(kw.get("model", MODEL)), str(kw.get("sha", SHA)), prompt="hi", params=params)


@pytest.mark.parametrize(("skw", "jkw", "size", "ptoks", "reason"), [
    ({}, {}, 100, 10, None),
    ({}, {}, 5000, 10, "over 4096"),
    ({"model": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"}, {}, 100, 10, "different model"),
    ({"sha": "0" * 64}, {}, 100, 10, "sha256 does not match"),
    ({"max_tokens": 300}, {}, 100, 10, "over our limit"),
    ({"max_tokens": 200}, {}, 100, 1900, "exceed context"),
    ({"max_tokens": 200}, {"completion_window": 5}, 100, 10, "too short"),
    ({}, {"claim_deadline": NOW - 1}, 100, 10, "passed while fetching"),
])
def test_check_spec(skw: dict[str, object], jkw: dict[str, object], size: int, ptoks: int, reason: str | None) -> None:
    d = check_spec(job(**jkw), spec(**skw), size, ptoks, POLICY, NOW)  # type: ignore[arg-type]
    if reason is None:
        assert d == Accepted()
    else:
        assert isinstance(d, Rejected) and reason in d.reason, d
