"""`hearth serve` against a real devnet and provider node, through the official `openai` SDK and
raw HTTP: models, chat and raw completions (plain and streamed, with usage), each request a paid
job checked on chain, and every error with its status and OpenAI's error shape.

One market and one node for the whole module; three gateways on it: `gw` (API key, the node
serves its model), `gw_broke` (an account with no tokens, key from HEARTH_API_KEY) and `gw_short`
(3-second claim timeout, no key) for a model no node serves."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from hearth.dev.devnet import dev_account
from hearth.dev.localnet import HEARTH, Localnet
from hearth.dev.procs import free_port, stop_proc, wait_until
from hearth.formats.units import TOKEN
from hearth.models import BUNDLED_NAME

from tests.waits import wait_settled

QUESTION = "What is the capital of France? Answer in one word."
KEY = "sk-hearth-test"
CLIENT = dev_account(2).address  # the gateways' default account
SHORT_ACCOUNT = 3  # gw_short's
PAYMENT = TOKEN // 100  # `hearth serve --payment` default, 0.01 HRT


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str  # .../v1
    log: Path
    clients: list[openai.OpenAI] = field(default_factory=list)  # closed with the gateway

    def sdk(self, key: str = KEY) -> openai.OpenAI:
        self.clients.append(openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120))
        return self.clients[-1]

    def post(self, path: str, body: Any, key: str | None = KEY, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=kw.pop("timeout", 120), **kw)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    with Localnet(tmp_path_factory.mktemp("gateway") / "home") as n:
        n.start_node(extra_env={"HEARTH_MIN_PRICE": str(PAYMENT)})  # its offer's price: what jobs pay
        # a model nobody serves (no node would even fetch it): for the no-provider case
        orphan = n.home / "orphan.gguf"
        orphan.write_bytes(b"GGUF" + bytes(range(256)) * 8)
        r = n.hearth("model", "add", str(orphan), "--name", "orphan", "--no-upload")
        assert r.returncode == 0, r.stderr
        yield n


def _serve(net: Localnet, name: str, *serve_args: str, pre: tuple[str, ...] = (),
           extra_env: dict[str, str] | None = None) -> Iterator[Gateway]:
    """`hearth [pre] serve --port FREE [serve_args]`, as a user starts it; stopped at the end."""
    port = free_port()
    log = net.home / f"serve-{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([*HEARTH, "--rpc-url", net.rpc, "--ipfs-api", net.ipfs_api, *pre, "serve",
                                 "--port", str(port), *serve_args],
                                env={**net.env, **(extra_env or {})}, stdout=out, stderr=subprocess.STDOUT)
    gw = Gateway(proc, f"http://127.0.0.1:{port}/v1", log)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200, 60, "hearth serve", proc)
        yield gw
    finally:
        for c in gw.clients:
            c.close()
        stop_proc(proc)


@pytest.fixture(scope="module")
def gw(net: Localnet) -> Iterator[Gateway]:
    yield from _serve(net, "key", "--api-key", KEY)


@pytest.fixture(scope="module")
def gw_broke(net: Localnet) -> Iterator[Gateway]:
    made = net.hearth_json("account", "new", account=None, extra_env={"HEARTH_PASSWORD": "pw"})
    yield from _serve(net, "broke", pre=("--keystore", made["keystore"]),
                      extra_env={"HEARTH_PASSWORD": "pw", "HEARTH_API_KEY": KEY})


@pytest.fixture(scope="module")
def gw_short(net: Localnet) -> Iterator[Gateway]:
    # an account of its own: two servers on one account would each count its nonces
    yield from _serve(net, "short", "--claim-timeout", "3s", pre=("--account", str(SHORT_ACCOUNT)))


def _total(net: Localnet, address: str = CLIENT) -> int:
    """Deposit plus wallet: what an account holds, wherever it is."""
    return net.market.account(address).balance + net.market.token_balance(address)


@pytest.fixture(scope="module")
def paris(net: Localnet, gw: Gateway) -> tuple[Any, int]:
    """One non-streaming chat completion, and what the client held before it."""
    before = _total(net)
    resp = gw.sdk().chat.completions.create(model=BUNDLED_NAME, messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=16)
    return resp, before


def test_models_list_the_bundled_model(gw: Gateway) -> None:
    sdk = gw.sdk()
    ids = [m.id for m in sdk.models.list()]
    assert BUNDLED_NAME in ids and "orphan" in ids
    assert sdk.models.retrieve(BUNDLED_NAME).id == BUNDLED_NAME


def test_chat_completion_answers_paris_through_a_paid_settled_job(net: Localnet, paris: tuple[Any, int]) -> None:
    resp, before = paris
    assert "Paris" in resp.choices[0].message.content
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens > 0 and resp.usage.total_tokens > resp.usage.completion_tokens
    job_id = resp.model_extra["hearth"]["job_id"]
    assert resp.id == f"chatcmpl-hearth-{job_id}"
    wait_settled(net.market, job_id)
    names = [n for n, _ in net.market.history(job_id)]
    assert names[0] == "JobPosted" and "JobCompleted" in names and "JobSettled" in names
    assert net.market.posted(job_id).client == CLIENT
    assert before - _total(net) == PAYMENT  # paid from the serving account, exactly once


def test_streaming_gives_the_same_text_and_a_usage_chunk(net: Localnet, gw: Gateway, paris: tuple[Any, int]) -> None:
    plain = paris[0]
    stream = gw.sdk().chat.completions.create(model=BUNDLED_NAME, messages=[{"role": "user", "content": QUESTION}],
                                              max_tokens=16, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    job_id = chunks[0].model_extra["hearth"]["job_id"]
    assert job_id != plain.model_extra["hearth"]["job_id"]  # a job of its own
    wait_settled(net.market, job_id)


def test_raw_completion_plain_and_streamed_over_http(gw: Gateway) -> None:
    body = {"model": BUNDLED_NAME, "prompt": "The capital of France is", "max_tokens": 8}
    plain = gw.post("/completions", body)
    assert plain.status_code == 200, plain.text
    assert plain.json()["object"] == "text_completion" and plain.json()["choices"][0]["text"]
    with httpx.stream("POST", gw.url + "/completions", json={**body, "stream": True},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert "".join(p["choices"][0]["text"] for p in parsed) == plain.json()["choices"][0]["text"]
    assert all("usage" not in p for p in parsed)  # no usage chunk unless asked for


def test_unknown_model_is_404(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        gw.sdk().chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    r = gw.post("/completions", {"model": "no-such-model", "prompt": "hi"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    assert httpx.get(gw.url + "/models/no-such-model", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404


CHAT = {"model": BUNDLED_NAME, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("change", "param"), [
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": 10**6}, "max_completion_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"seed": -1}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 7}, "stop"),
    ({"n": 2}, "n"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"model": None}, "model"),
])
def test_bad_parameters_are_400(net: Localnet, gw: Gateway, change: dict[str, Any], param: str) -> None:
    before = net.market.next_job_id()
    r = gw.post("/chat/completions", {**CHAT, **change})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]
    assert net.market.next_job_id() == before  # nothing posted, nothing paid


def test_malformed_body_and_sdk_bad_request(gw: Gateway) -> None:
    r = httpx.post(gw.url + "/chat/completions", content=b"{not json", timeout=30,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError):
        gw.sdk().completions.create(model=BUNDLED_NAME, prompt="hi", temperature=5)


def test_api_key_is_401_when_missing_or_wrong(gw: Gateway, gw_broke: Gateway) -> None:
    assert gw.post("/chat/completions", CHAT, key=None).status_code == 401
    r = gw.post("/chat/completions", CHAT, key="sk-wrong")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        gw.sdk("sk-wrong").models.list()
    # the key can come from HEARTH_API_KEY too
    assert httpx.get(gw_broke.url + "/models").status_code == 401
    assert httpx.get(gw_broke.url + "/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_any_key_is_accepted_without_one_configured(gw_short: Gateway) -> None:
    assert httpx.get(gw_short.url + "/models").status_code == 200
    assert httpx.get(gw_short.url + "/models", headers={"Authorization": "Bearer anything"}).status_code == 200


def test_no_tokens_is_402(net: Localnet, gw_broke: Gateway) -> None:
    before = net.market.next_job_id()
    r = gw_broke.post("/chat/completions", CHAT)
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "insufficient_quota" and "HRT" in r.json()["error"]["message"]
    with pytest.raises(openai.APIStatusError) as e:
        gw_broke.sdk().chat.completions.create(model=BUNDLED_NAME, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 402
    assert net.market.next_job_id() == before


def test_no_provider_is_504_after_one_repost_and_both_jobs_refunded(net: Localnet, gw_short: Gateway) -> None:
    first = net.market.next_job_id()
    client = dev_account(SHORT_ACCOUNT).address
    before = _total(net, client)
    r = gw_short.post("/chat/completions", {**CHAT, "model": "orphan"})
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "no_provider"
    posted = list(range(first, net.market.next_job_id()))
    assert len(posted) == 2  # failover: expired, posted once more, expired again
    for job_id in posted:
        assert net.market.job(job_id).state == "Expired"
        (ev,) = net.market.logs("JobExpired", net.market.deploy_block, "latest", jobId=job_id)
        assert ev["args"]["refund"] == PAYMENT
        assert f"job {job_id}" in r.json()["error"]["message"]
    assert _total(net, client) == before  # every payment back


def test_a_client_that_hangs_up_keeps_its_paid_job(net: Localnet, gw: Gateway) -> None:
    job_id = net.market.next_job_id()
    # a long answer (200 tokens, seconds of inference) and a client that gives up after 0.3 s:
    # it hangs up while the job runs, whatever the machine's speed
    long = {**CHAT, "max_tokens": 200, "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]}
    with pytest.raises(httpx.TimeoutException):
        gw.post("/chat/completions", long, timeout=0.3)
    deadline = time.monotonic() + 120
    while net.market.job(job_id).state != "Settled":
        assert time.monotonic() < deadline, f"job {job_id}: {net.market.job(job_id).state}"
        time.sleep(0.2)
    r = net.hearth("job", "result", str(job_id))
    assert r.returncode == 0 and len(r.stdout.split()) > 20, r.stderr
