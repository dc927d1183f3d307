"""Property fuzz of the readers of untrusted specs and results: whatever the bytes, the outcome is
a parsed value that re-serializes, or a SpecError with a short message. Never another exception.

Each property runs a fixed, derandomized number of examples and counts them, so the numbers in
EXAMPLES are what actually ran (asserted at the end of each test).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hearth.formats.jobspec import Result, SpecError, parse_result, parse_spec
from hearth.formats.safejson import nesting_depth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.formats.test_parsing import result_dict, spec_dict

EXAMPLES = {"json": 2000, "bytes": 3000, "near_json": 3000, "spec_mutation": 2000, "result_mutation": 1500}

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**4000), max_value=10**4000)
           | st.floats() | st.text(max_size=20) | st.text(alphabet='[]{}"\\:,u', max_size=20)
           | st.text(st.characters(categories=["Cs", "Lu"]), max_size=3))  # lone surrogates too
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
# Text close to JSON, so the decoder gets far into it before failing (or succeeds).
near_json = st.text(alphabet='[]{}",:\\ 0123456789.eE+-tfnaluxNIdD', max_size=120)

SPEC_PATHS = [("version",), ("model",), ("model", "cid"), ("model", "sha256"), ("model", "extra"), ("prompt",),
              ("messages",), ("params",), ("params", "max_tokens"), ("params", "temperature"), ("params", "top_p"),
              ("params", "seed"), ("params", "stop"), ("params", "extra"), ("extra",)]
RESULT_PATHS = [(k,) for k in result_dict()] + [("usage", "prompt_tokens"), ("engine", "name"),
                                                ("timings", "inference_seconds"), ("params", "stop"), ("extra",)]


def fuzz_settings(name: str) -> settings:
    return settings(max_examples=EXAMPLES[name], derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(parse: Callable[[bytes], Any], data: bytes) -> str:
    """'parsed' or 'rejected'; any other exception fails the property."""
    try:
        value = parse(data)
    except SpecError as e:
        assert len(str(e)) < 300, "an error message quotes at most a little of the input"
        return "rejected"
    value.to_bytes()  # what was accepted must re-serialize (no inf, no lone surrogates)
    if isinstance(value, Result):
        assert isinstance(value.output, str)
    return "parsed"


def dumps(value: Any, ascii_only: bool = False) -> bytes:
    """JSON bytes; surrogates become \\udxxx escapes in ASCII, or invalid UTF-8 otherwise."""
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")


def true_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(true_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(true_depth, value.values()), default=0)
    return 0


def set_path(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(d.get(key), dict):
            return
        d = d[key]
    d[path[-1]] = value


def test_arbitrary_json() -> None:
    ran = 0

    @fuzz_settings("json")
    @given(json_values)
    def prop(value: Any) -> None:
        nonlocal ran
        ran += 1
        for data in (dumps(value), dumps(value, ascii_only=True)):
            assert nesting_depth(data) == true_depth(value)  # the pre-scan is exact on valid JSON
            outcome(parse_spec, data)
            outcome(parse_result, data)

    prop()
    assert ran >= EXAMPLES["json"]


def test_arbitrary_bytes() -> None:
    ran = 0

    @fuzz_settings("bytes")
    @given(st.binary(max_size=200) | near_json.map(lambda t: t.encode()))
    def prop(data: bytes) -> None:
        nonlocal ran
        ran += 1
        outcome(parse_spec, data)
        outcome(parse_result, data)

    prop()
    assert ran >= EXAMPLES["bytes"]


def test_near_json_depth_is_exact_where_json_accepts_it() -> None:
    ran = 0

    @fuzz_settings("near_json")
    @given(near_json)
    def prop(text: str) -> None:
        nonlocal ran
        ran += 1
        try:
            value = json.loads(text)  # at most 120 characters: shallow enough for the plain decoder
        except ValueError:
            return
        assert nesting_depth(text.encode()) == true_depth(value)

    prop()
    assert ran >= EXAMPLES["near_json"]


def test_mutated_specs() -> None:
    ran, outcomes = 0, {"parsed": 0, "rejected": 0}

    @fuzz_settings("spec_mutation")
    @given(st.sampled_from(SPEC_PATHS), json_values, st.booleans())
    def prop(path: tuple[str, ...], value: Any, delete: bool) -> None:
        nonlocal ran
        ran += 1
        d = spec_dict(stop=("\n",))
        if delete:
            (d["params"] if len(path) == 2 and path[0] == "params" else d).pop(path[-1], None)
        else:
            set_path(d, path, value)
        outcomes[outcome(parse_spec, dumps(d, ascii_only=delete))] += 1

    prop()
    assert ran >= EXAMPLES["spec_mutation"]
    assert outcomes["parsed"] > 0 and outcomes["rejected"] > 0  # both sides of the schema were reached


def test_mutated_results() -> None:
    ran, outcomes = 0, {"parsed": 0, "rejected": 0}
    valid = result_dict()

    @fuzz_settings("result_mutation")
    @given(st.sampled_from(RESULT_PATHS), json_values, st.booleans())
    def prop(path: tuple[str, ...], value: Any, delete: bool) -> None:
        nonlocal ran
        ran += 1
        d = json.loads(json.dumps(valid))
        if delete:
            d.pop(path[0], None)
        else:
            set_path(d, path, value)
        outcomes[outcome(parse_result, dumps(d, ascii_only=delete))] += 1

    prop()
    assert ran >= EXAMPLES["result_mutation"]
    assert outcomes["parsed"] > 0 and outcomes["rejected"] > 0
