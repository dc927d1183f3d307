"""A rate-limited, range-capped, lagging endpoint (tests/rpcproxy.py in front of anvil): every call
still succeeds, every log is still found, and the head never goes backwards."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
from hearth.chain.market import connect
from hearth.chain.rpc import (
    LogSpan,
    RetryingHTTPProvider,
    is_range_too_large,
    is_rate_limited,
    parse_retry_after,
    suggested_span,
)
from hearth.chain.sender import Sender
from hearth.dev.devnet import dev_account
from hearth.errors import ChainError
from web3 import Web3

from tests.chain.conftest import Chain, rpc
from tests.rpcproxy import RpcProxy

# Real answers of public endpoints (see hearth.chain.rpc for whose).
RANGE_ANSWERS = [
    "query returned more than 10000 results. Try with this block range [0xBDE5F8, 0x102DBCC].",
    "range 1000000 exceeds limit of 10000",
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on "
    "the response size, or you can request any block range with a cap of 10K logs in the response.",
    "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters, this block range "
    "should work: [0x123c9b2, 0x123cba5]",
    "eth_getLogs is limited to a 10,000 range",
    "range 9009594 is bigger than range limit 2000",
    "query exceeds max results 20000, retry with the range 25766988-25775072",
    "block range is bigger than maxBlockRange",
    "block range too large, max range: 1000",
    "exceed maximum block range: 50000",
    "query timeout exceeded",
]
OTHER_ANSWERS = [
    "execution reverted",
    "daily request count exceeded, request rate limited",
    "429 Client Error: Too Many Requests for url: http://x",
    "Your app has exceeded its compute units per second capacity",
    "invalid argument 0: hex string without 0x prefix",
]


def test_error_phrasings_are_recognised() -> None:
    assert all(is_range_too_large(t) for t in RANGE_ANSWERS)
    assert not any(is_range_too_large(t) for t in OTHER_ANSWERS)
    assert is_rate_limited(OTHER_ANSWERS[1]) and is_rate_limited(OTHER_ANSWERS[2])
    assert suggested_span(RANGE_ANSWERS[3], 0x123C9B2) == 0x123CBA5 - 0x123C9B2 + 1
    assert suggested_span(RANGE_ANSWERS[6], 25766988) == 25775072 - 25766988 + 1
    assert suggested_span(RANGE_ANSWERS[3], 5) is None  # a suggestion for another start is no use


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_log_span_splits_and_grows_back() -> None:
    limit = {"blocks": 100}
    calls: list[tuple[int, int]] = []

    def query(a: int, b: int | str) -> list[int]:
        end = int(b)
        calls.append((a, end))
        if end - a + 1 > limit["blocks"]:
            raise ValueError(f"range {end - a + 1} exceeds limit of {limit['blocks']}")
        return list(range(a, end + 1))

    span = LogSpan()
    assert span.fetch(0, 999, query, head=lambda: 999) == list(range(1000))
    assert span.good == 100 and span.bad == 101  # converged on the endpoint's limit
    assert len(calls) < 30
    calls.clear()
    assert span.fetch(1000, 1999, query, head=lambda: 1999) == list(range(1000, 2000))
    assert len(calls) == 10  # learned: no refusal the second time
    limit["blocks"] = 400  # the endpoint (or its plan) now allows more: the span grows back
    span.relearn_after = 8
    span.fetch(2000, 4999, query, head=lambda: 4999)
    assert span.good is not None and span.good > 100

    def never(a: int, b: int | str) -> list[int]:
        raise ValueError("query returned more than 0 results")

    with pytest.raises(ValueError, match="more than"):  # one block still too much: nothing to split
        LogSpan().fetch(0, 10, never, head=lambda: 10)


def test_rate_limited_endpoint_every_call_succeeds(chain: Chain) -> None:
    with RpcProxy(chain.url, share_429=0.3, share_rate_error=0.05, share_503=0.05, latency=0.002) as proxy:
        w3 = connect(proxy.url)
        market = chain.deployment.market_binding(w3)
        sender = Sender(w3, dev_account(3))
        sender.transact(market.token.functions.approve(market.address, 10**17))
        sender.transact(market.fn("deposit", 10**17))
        ids = []
        for _ in range(3):
            now = int(w3.eth.get_block("latest")["timestamp"])
            params = market.post_params(b"\x12\x20" + b"m" * 32, b"\x12\x20" + b"s" * 32, 10**15, now + 3600, 600)
            ids.append(market.job_posted_id(sender.transact(market.fn("postJob", params))))
        for job_id in ids:
            assert market.job(job_id).state == "Posted"
            assert market.posted(job_id).client == sender.address
            assert [name for name, _ in market.history(job_id)] == ["JobPosted"]
        provider = w3.provider
        assert isinstance(provider, RetryingHTTPProvider)
        assert proxy.counts["429"] > 0 and proxy.counts["rate_error"] + proxy.counts["503"] > 0
        assert provider.stats["rate_limited"] >= proxy.counts["429"]


def test_a_contract_read_is_one_round_trip(chain: Chain) -> None:
    """web3's validation middleware asks the chain id before every eth_call and eth_estimateGas
    (twice per call, measured); the provider remembers it, so a node's reads cost one request
    each (2.8 instead of 5.3 ms of CPU a call, measured against anvil on this machine)."""
    with RpcProxy(chain.url) as proxy:
        market = chain.market(connect(proxy.url))
        market.job(1)
        before = proxy.counts["method:eth_chainId"]
        for _ in range(5):
            market.job(1)
        assert proxy.counts["method:eth_call"] >= 6
        assert proxy.counts["method:eth_chainId"] == before


def test_retry_after_is_honoured_within_the_budget(chain: Chain) -> None:
    waits: list[float] = []
    with RpcProxy(chain.url, fail_first=2, retry_after="2") as proxy:
        w3 = Web3(RetryingHTTPProvider(proxy.url, sleep=waits.append))
        assert w3.eth.block_number >= 1
    assert waits == [2.0, 2.0]  # what the endpoint asked, not our own backoff
    waits.clear()
    with RpcProxy(chain.url, fail_first=1, retry_after=formatdate(time.time() + 20, usegmt=True)) as proxy:
        Web3(RetryingHTTPProvider(proxy.url, sleep=waits.append)).eth.block_number  # noqa: B018
    assert len(waits) == 1 and 10 < waits[0] <= 20
    waits.clear()
    with RpcProxy(chain.url, share_429=1.0, retry_after="2") as proxy:
        w3 = Web3(RetryingHTTPProvider(proxy.url, max_wait=5, sleep=waits.append))
        with pytest.raises(ChainError, match="keeps refusing"):
            w3.eth.block_number  # noqa: B018
    assert waits == [2.0, 2.0]  # a third wait would pass the 5 s budget: given up instead


def test_capped_get_logs_returns_every_job(chain: Chain) -> None:
    client = chain.client(4)
    first = chain.w3.eth.block_number
    ids = []
    for _ in range(5):
        ids.append(chain.post_job(client))
        rpc(chain.w3, "anvil_mine", hex(250))  # empty blocks between jobs
    assert chain.w3.eth.block_number - first > 1000
    for caps in ({"max_log_range": 100}, {"max_log_range": 100, "max_log_results": 1}):
        with RpcProxy(chain.url, **caps) as proxy:  # type: ignore[arg-type]
            market = chain.deployment.market_binding(connect(proxy.url))
            found = [int(ev["args"]["jobId"]) for ev in market.logs("JobPosted", first, "latest")]
            assert found == ids
            assert [int(ev["args"]["jobId"]) for ev in market.logs("JobPosted", first, "latest",
                                                                   jobId=ids[2])] == [ids[2]]
            assert [name for name, _ in market.history(ids[-1])] == ["JobPosted"]
            assert proxy.counts["range_refused"] > 0
            assert market.log_span.good is not None and market.log_span.good <= 100


def test_lagging_head_never_moves_head_number_backwards(chain: Chain) -> None:
    with RpcProxy(chain.url, lag_share=0.5, lag_blocks=5) as proxy:
        w3 = connect(proxy.url)
        market = chain.deployment.market_binding(w3)
        heads, raw = [], []
        for i in range(60):
            if i % 6 == 0:
                rpc(chain.w3, "evm_mine")
            heads.append(market.head_number())
            raw.append(w3.eth.block_number)
        assert proxy.counts["lagged"] > 0
        assert any(b < a for a, b in zip(raw, raw[1:], strict=False))  # the endpoint did go backwards...
        assert heads == sorted(heads)  # ...head_number() never did
        assert heads[-1] <= chain.w3.eth.block_number
