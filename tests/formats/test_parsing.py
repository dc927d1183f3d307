"""Hostile specs and results: each input here once crashed the reader, escaped as another
exception type, or was silently coerced into something else. All must now be a SpecError."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from eth_account import Account
from hearth.formats.cid import cid_of_bytes
from hearth.formats.jobspec import (
    Params,
    Result,
    SpecError,
    make_spec,
    output_hash,
    parse_result,
    parse_spec,
    result_body,
    validate_params,
)
from hearth.formats.receipt import result_signer, sign_result
from hearth.formats.safejson import MAX_DEPTH, nesting_depth

MODEL_CID = str(cid_of_bytes(b"a model", 1))
MODEL_SHA = "ab" * 32
PROVIDER = Account.from_key("0x" + "11" * 32)
HOLE = "\x00hole\x00"  # replaced by raw JSON text, for numbers json.dumps cannot write
BAD_NUMBERS = ["1e400", "-1e400", "Infinity", "-Infinity", "NaN", "1" + "0" * 4999, "-" + "9" * 5000]
LOADER_REJECTS = ("too large to be finite", "is not a JSON number", "digits, more than")


def spec_dict(**params: Any) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(make_spec(MODEL_CID, MODEL_SHA, prompt="Name a fruit.", params=Params(**params)).to_bytes())
    return d


def result_dict() -> dict[str, Any]:
    body = result_body(job_id=7, chain_id=11155111, market="0x" + "12" * 20, spec_cid=MODEL_CID, output="Apple.",
                       finish_reason="stop", usage={"prompt_tokens": 5, "completion_tokens": 2}, model_sha256=MODEL_SHA,
                       engine={"name": "llama.cpp"}, params=Params().as_dict(),
                       timings={"inference_seconds": 0.25, "tokens_per_second": 8}, provider=PROVIDER.address,
                       commit_salt=bytes(32))
    d: dict[str, Any] = json.loads(sign_result(PROVIDER, body).to_bytes())
    return d


def with_value(d: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `d` with `path` set to `value`."""
    d = json.loads(json.dumps(d))
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


def raw(d: dict[str, Any], path: tuple[str, ...], text: str) -> bytes:
    """`d` as JSON with the value at `path` written as the raw JSON text `text`."""
    return json.dumps(with_value(d, path, HOLE)).replace(json.dumps(HOLE), text).encode()


def rejected(parse: Any, data: bytes) -> str:
    with pytest.raises(SpecError) as info:
        parse(data)
    msg = str(info.value)
    assert len(msg) < 300, "error messages quote at most a little of the input"
    return msg


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize(("parser", "data"), [
    ("parse_spec", "b'[' * 65_536"),
    ("parse_result", "b'[' * (1 << 20)"),
    ("parse_spec", "b'{\"a\":' * 200_000"),
])
def test_deep_nesting_is_an_error_not_a_segfault(parser: str, data: str) -> None:
    # In a subprocess because, before the fix, this killed the interpreter with SIGSEGV. web3 is
    # imported first because it raises the recursion limit to 100,000 in production.
    script = textwrap.dedent(f"""
        import sys
        import web3  # noqa: F401
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
        from hearth.formats import jobspec
        try:
            jobspec.{parser}({data})
        except jobspec.SpecError as e:
            print("SpecError:", e)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"died with {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.startswith("SpecError:") and "levels deep" in r.stdout


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b'{"a":[1,{"b":"]]]}}}[[[["}],"c":"\\\\"}') == 3
    assert nesting_depth(b'["\\"[[[[", "\\\\", [[]]]') == 3
    assert nesting_depth(b'"[[[' + b"[" * 100) == 0  # all inside an unterminated string
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert "levels deep" in rejected(parse_spec, deep)
    assert "levels deep" in rejected(parse_result, deep)


def test_prescan_of_a_mebibyte_is_fast() -> None:
    mib = 1 << 20
    worst = [b"[" * mib, b"[]" * (mib // 2), b"[" + b'"' * mib, b'"["' * (mib // 3), b'["' + b"\\\\" * (mib // 2) + b'"]']
    for data in worst:
        start = time.perf_counter()
        nesting_depth(data)
        assert time.perf_counter() - start < 1.0  # ~35 ms measured; generous for a loaded machine


# --------------------------------------------------------------------------- numbers


SPEC_NUMBERS = [("version",), ("params", "max_tokens"), ("params", "temperature"), ("params", "top_p"),
                ("params", "seed")]
RESULT_NUMBERS = [("version",), ("job_id",), ("chain_id",), ("usage", "prompt_tokens"),
                  ("timings", "inference_seconds"), ("params", "temperature"), ("params", "seed")]


@pytest.mark.parametrize("number", BAD_NUMBERS, ids=lambda n: n[:12])
@pytest.mark.parametrize("path", SPEC_NUMBERS, ids=".".join)
def test_bad_numbers_in_specs(path: tuple[str, ...], number: str) -> None:
    msg = rejected(parse_spec, raw(spec_dict(), path, number))
    assert any(m in msg for m in LOADER_REJECTS), msg


@pytest.mark.parametrize("number", BAD_NUMBERS, ids=lambda n: n[:12])
@pytest.mark.parametrize("path", RESULT_NUMBERS, ids=".".join)
def test_bad_numbers_in_results(path: tuple[str, ...], number: str) -> None:
    msg = rejected(parse_result, raw(result_dict(), path, number))
    assert any(m in msg for m in LOADER_REJECTS), msg


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize(("path", "value"), [
    (("params", "stop"), "abcd"),  # once read as four one-character stops
    (("params", "stop"), ["a", 1]),
    (("params", "stop"), [["a"]]),
    (("params", "max_tokens"), True),  # once read as 1
    (("params", "seed"), False),
    (("params", "max_tokens"), 64.0),
    (("params", "max_tokens"), "64"),
    (("params", "temperature"), "0.5"),
    (("params", "top_p"), True),
    (("version",), True),
    (("version",), 1.0),
    (("version",), "1"),
    (("model", "cid"), 5),
    (("model", "cid"), "b" + "!" * 5000),
    (("model", "sha256"), "AB" * 32),
    (("model", "sha256"), ["ab" * 32]),
    (("prompt",), None),
    (("prompt",), 42),
    (("prompt",), ["Name a fruit."]),
    (("params",), []),
    (("model",), MODEL_CID),
    (("extra",), 1),
    (("model", "extra"), 1),
    (("params", "extra"), 1),
])
def test_wrong_types_and_unknown_keys_in_specs(path: tuple[str, ...], value: Any) -> None:
    assert path[-1] in rejected(parse_spec, json.dumps(with_value(spec_dict(), path, value)).encode())  # says where


@pytest.mark.parametrize("message", [
    {"role": "god", "content": "hi"},
    {"role": "User", "content": "hi"},
    {"role": ["user"], "content": "hi"},
    {"role": "user", "content": 5},  # once read as "5"
    {"role": "user", "content": None},  # once read as "None"
    {"role": "user", "content": ["hi"]},
    {"role": "user", "content": "hi", "name": "x"},
    {"role": "user"},
    "user: hi",
])
def test_wrong_messages(message: Any) -> None:
    spec = make_spec(MODEL_CID, MODEL_SHA, messages=[{"role": "user", "content": "hi"}])
    d = with_value(json.loads(spec.to_bytes()), ("messages",), [message])
    assert "messages[0]" in rejected(parse_spec, json.dumps(d).encode())


@pytest.mark.parametrize(("path", "value"), [
    (("job_id",), True), (("job_id",), -1), (("job_id",), "7"), (("chain_id",), 1.5),
    (("output",), None), (("output",), 5),
    (("output_sha256",), "00" * 32),  # not the hash of the output
    (("finish_reason",), 1), (("usage",), []), (("usage", "prompt_tokens"), "5"), (("usage", "prompt_tokens"), True),
    (("engine", "name"), 1), (("engine",), "llama.cpp"), (("timings", "inference_seconds"), "0.25"),
    (("timings", "inference_seconds"), False), (("params",), None), (("params", "stop"), "abcd"),
    (("params", "extra"), 1), (("market",), "0x12"), (("provider",), None), (("spec_cid",), "not a cid"),
    (("model_sha256",), 7), (("signature",), "0x1234"), (("signature",), None), (("version",), True),
    (("version",), 1), (("extra",), 1),
])
def test_wrong_types_and_unknown_keys_in_results(path: tuple[str, ...], value: Any) -> None:
    assert path[-1] in rejected(parse_result, json.dumps(with_value(result_dict(), path, value)).encode())


@pytest.mark.parametrize("key", ["signature", "output", "usage", "provider"])
def test_missing_result_fields(key: str) -> None:
    d = result_dict()
    del d[key]
    assert key in rejected(parse_result, json.dumps(d).encode())


# --------------------------------------------------------------------------- not JSON text


def test_lone_surrogates_are_rejected() -> None:
    # They decode, but crash later, when anything hashes or re-serializes the text.
    assert "surrogate" in rejected(parse_spec, raw(spec_dict(), ("prompt",), '"\\ud800"'))
    assert "surrogate" in rejected(parse_result, raw(with_value(result_dict(), ("engine",), {}), ("engine",),
                                                     '{"\\udfff": "x"}'))
    assert "surrogate" in rejected(parse_result, raw(result_dict(), ("output",), '"\\udc00"'))
    pair = parse_spec(raw(spec_dict(), ("prompt",), '"\\ud83c\\udf4e"'))  # a proper pair is one character
    assert pair.prompt == "\U0001f34e"


@pytest.mark.parametrize("data", [
    b"", b" ", b"\xff", b"\xc3\x28", b"\xef\xbb\xbf{}", b"{", b"[]", b"null", b"1", b'"spec"', b"true",
    b'{"version":1,"version":1}', json.dumps(spec_dict()).encode("utf-16"),
    json.dumps(spec_dict()).encode()[:-1], json.dumps(spec_dict()).encode() + b"x",
])
def test_not_a_json_object(data: bytes) -> None:
    rejected(parse_spec, data)
    rejected(parse_result, data)


def test_results_with_a_duplicated_key() -> None:
    text = json.dumps(result_dict())
    rejected(parse_result, text.replace('"version": 2', '"version": 2, "job_id": 8').encode())


# --------------------------------------------------------------------------- valid inputs


@pytest.mark.parametrize("spec_args", [
    {"prompt": "Name a fruit."},
    {"prompt": "Café ☕ \"quoted\" [brackets] {braces} \\ back\nslash \u2028 \U0001f34e"},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": ""}]},
    {"prompt": "x", "params": Params(max_tokens=32_768, temperature=0.7, top_p=0.95, seed=2**32 - 2,
                                     stop=("\n", "END", "]", "\\"))},
    {"prompt": "x", "params": Params(max_tokens=1, temperature=2, top_p=1, seed=0)},
])
def test_valid_specs_round_trip(spec_args: dict[str, Any]) -> None:
    spec = make_spec(MODEL_CID, MODEL_SHA, **spec_args)
    parsed = parse_spec(spec.to_bytes())
    assert parsed == spec
    assert parsed.to_bytes() == spec.to_bytes()


def test_valid_results_round_trip_and_keep_their_signature() -> None:
    data = json.dumps(result_dict()).encode()
    result = parse_result(data)
    assert isinstance(result, Result) and result.output == "Apple."
    assert result.to_bytes() == json.dumps(result_dict(), sort_keys=True, separators=(",", ":")).encode()
    assert result_signer(result) == PROVIDER.address
    assert result.body["timings"]["tokens_per_second"] == 8 and result.body["output_sha256"] == output_hash("Apple.").hex()


def test_a_minimal_result_still_parses() -> None:
    # What a dishonest but well-formed provider may send (tests/client forges exactly this).
    body = result_body(job_id=1, chain_id=1, market="0x" + "ab" * 20, spec_cid=MODEL_CID, output="Berlin",
                       finish_reason="stop", usage={}, model_sha256=MODEL_SHA, engine={"name": "forged"},
                       params={}, timings={}, provider=PROVIDER.address, commit_salt=bytes(32))
    signed = sign_result(PROVIDER, body)
    assert parse_result(signed.to_bytes()) == signed


def test_invalid_signature_values_are_a_spec_error() -> None:
    from hearth.formats.jobspec import Result
    from hearth.formats.receipt import result_signer

    for sig in ("0x" + "ff" * 64 + "1b", "0x" + "00" * 64 + "1c"):
        with pytest.raises(SpecError, match="signature is invalid"):
            result_signer(Result({"output": "x"}, sig))


def test_llama_cpp_random_seed_is_refused() -> None:
    """2**32 - 1 makes llama.cpp draw a random seed: such a job could never be re-run to check it."""
    with pytest.raises(SpecError, match="seed"):
        validate_params(Params(seed=2**32 - 1))
    assert validate_params(Params(seed=2**32 - 2)).seed == 2**32 - 2
