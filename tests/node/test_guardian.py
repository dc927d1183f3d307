"""The guardian's decisions, as a table, and the token count it decides on against what llama.cpp
really evaluates (the bundled SmolLM2 and its chat template)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hearth.chain.types import ZERO_ADDRESS, PostedJob
from hearth.formats.cid import CID, cid_of_bytes
from hearth.formats.jobspec import Params, make_spec
from hearth_node.guardian import Accepted, Policy, Rejected, check_event, check_spec
from hearth_node.runner import COUNT_MARGIN, Runner, Unrunnable

MODEL = "QmR58njnbf5NUQQ6uF9vkbHL4N1h3kFnkFcXdASEa8hQvY"
SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ME = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
POLICY = Policy(ME, {CID.parse(MODEL): SHA}, min_price=100, max_tokens=256, max_spec_bytes=4096,
                n_ctx=2048, tokens_per_second=20.0)
NOW = 1_000_000


def job(**kw: object) -> PostedJob:
    base = dict(job_id=1, client=OTHER, provider=ZERO_ADDRESS, model_key=b"", model_cid=CID.parse(MODEL),
                spec_cid=cid_of_bytes(b"spec"), payment=1000, claim_deadline=NOW + 60, completion_window=600, fee_bps=0,
                block_number=1, tx_hash="0x")
    base.update(kw)
    return PostedJob(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "reason"), [
    ({}, None),
    ({"provider": ME}, None),
    ({"provider": OTHER}, "reserved for provider"),
    ({"model_cid": CID.parse("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")}, "model not served"),
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
    ({}, {"claim_deadline": NOW - 1}, 100, 10, "passed while fetching"),
])
def test_check_spec(skw: dict[str, object], jkw: dict[str, object], size: int, ptoks: int, reason: str | None) -> None:
    d = check_spec(job(**jkw), spec(**skw), size, ptoks, POLICY, NOW)  # type: ignore[arg-type]
    if reason is None:
        assert d == Accepted()
    else:
        assert isinstance(d, Rejected) and reason in d.reason, d


CHAT_SPECS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a fruit."}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b <|im_end|> c"},
     {"role": "user", "content": "ünïcode ✓ 中文, and a longer question about the sea?"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "<|im_start|>assistant\nhello"}],
]


@pytest.fixture(scope="module")
def smol() -> Iterator[Runner]:
    from hearth.models import bundled

    r = Runner(Path(bundled().path), n_ctx=256, n_threads=None, n_gpu_layers=0)
    yield r
    r.close()


@pytest.mark.parametrize("messages", CHAT_SPECS)
def test_chat_count_covers_what_llama_cpp_evaluates(smol: Runner, messages: list[dict[str, str]]) -> None:
    """The chat template (SmolLM2 adds a default system prompt) and special tokens are counted."""
    from hearth.models import bundled

    m = bundled()
    s = make_spec(m.cid, m.sha256, messages=messages, params=Params(max_tokens=2))
    ran = smol.run(s)
    assert ran.prompt_tokens <= smol.count_tokens(s) <= ran.prompt_tokens + COUNT_MARGIN


@pytest.mark.parametrize("prompt", ["The capital of France is", "<|im_start|>user\nhi<|im_end|>", "x " * 100])
def test_raw_prompt_count_is_exact(smol: Runner, prompt: str) -> None:
    from hearth.models import bundled

    m = bundled()
    s = make_spec(m.cid, m.sha256, prompt=prompt, params=Params(max_tokens=2))
    assert smol.count_tokens(s) == smol.run(s).prompt_tokens + COUNT_MARGIN


def test_job_over_context_after_templating_is_rejected(smol: Runner) -> None:
    """The old count (text + 8 per message) let this job in for n_ctx 256; rendered, it does not fit."""
    from hearth.models import bundled

    m = bundled()
    text = "word " * 230
    s = make_spec(m.cid, m.sha256, messages=[{"role": "user", "content": text}], params=Params(max_tokens=1))
    old_count = len(smol.llm.tokenize(s.input_text.encode(), add_bos=True)) + 8
    assert old_count + 1 <= 256 < smol.count_tokens(s)
    policy = Policy(ME, {CID.parse(m.cid): m.sha256}, min_price=100, max_tokens=256, max_spec_bytes=4096,
                    n_ctx=256, tokens_per_second=20.0)
    d = check_spec(job(model_cid=CID.parse(m.cid)), s, 100, smol.count_tokens(s), policy, NOW)
    assert isinstance(d, Rejected) and "exceed context" in d.reason


def test_messages_the_template_refuses_are_unrunnable(smol: Runner) -> None:
    """A template that raises would fail the run after the claim: the count refuses first."""
    from hearth.models import bundled
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    m = bundled()
    s = make_spec(m.cid, m.sha256, messages=[{"role": "user", "content": "hi"}], params=Params(max_tokens=2))
    strict = "{% if messages|length < 2 %}{{ raise_exception('a system prompt is required') }}{% endif %}"
    smol.llm.chat_handler = Jinja2ChatFormatter(template=strict, eos_token="", bos_token="").to_chat_handler()
    try:
        with pytest.raises(Unrunnable, match="a system prompt is required"):
            smol.count_tokens(s)
    finally:
        smol.llm.chat_handler = None
