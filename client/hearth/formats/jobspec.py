"""Job spec and result formats (canonical JSON). Pure: no I/O.

Canonical bytes (sorted keys, no spaces, UTF-8) make the same spec always have the same CID,
and make a result's signature checkable by anyone who re-serializes it.

Specs and results arrive from IPFS, written by strangers: parse_spec and parse_result read them
with a bounded loader (safejson) and a strict schema (exact JSON types, no unknown keys, no
coercion), so every malformed input is a SpecError and never a crash or another exception.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import UserError
from hearth.formats import safejson
from hearth.formats.cid import CID

SPEC_VERSION = 1
RESULT_VERSION = 2  # 2: commit_salt, which opens the on-chain commitment
MAX_STOP = 4
MAX_CID_CHARS = 128  # the longest CID Hearth writes is 59; also keeps base58 decoding cheap
MAX_SHOWN = 40  # characters of attacker-supplied text an error message may quote

_ROLES = ("system", "user", "assistant")
_PARAM_KEYS = ("max_tokens", "temperature", "top_p", "seed", "stop")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{128}(?:1[bBcC]|0[01])")  # r, s and v (27/28, or 0/1)
_UINT64 = 2**64 - 1


class SpecError(UserError):
    """A job spec that is malformed or out of bounds."""


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def output_hash(text: str) -> bytes:
    """What the market stores as outputHash: sha256 of the output's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class Params:
    """Sampling parameters."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "seed": self.seed, "stop": list(self.stop)}


@dataclass(frozen=True)
class JobSpec:
    """What a client asks for: model by content, input, sampling params."""

    model_cid: str
    model_sha256: str
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    params: Params = field(default_factory=Params)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        d: dict[str, Any] = {
            "version": SPEC_VERSION,
            "model": {"cid": self.model_cid, "sha256": self.model_sha256},
            "params": self.params.as_dict(),
        }
        if self.prompt is not None:
            d["prompt"] = self.prompt
        else:
            d["messages"] = [{"role": r, "content": c} for r, c in self.messages or ()]
        return d

    def to_bytes(self) -> bytes:
        """Canonical bytes (what goes to IPFS)."""
        return canonical(self.as_dict())

    @property
    def input_text(self) -> str:
        """All input text (for size checks)."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(c for _, c in self.messages or ())


def validate_params(p: Params) -> Params:
    """Raise SpecError for parameters no provider could honour."""
    if not 1 <= p.max_tokens <= 32_768:
        raise SpecError(f"max_tokens must be 1..32768, not {p.max_tokens}")
    if not (math.isfinite(p.temperature) and 0 <= p.temperature <= 2):
        raise SpecError(f"temperature must be 0..2, not {p.temperature}")
    if not (math.isfinite(p.top_p) and 0 < p.top_p <= 1):
        raise SpecError(f"top_p must be in (0, 1], not {p.top_p}")
    # 2**32 - 1 is llama.cpp's LLAMA_DEFAULT_SEED, "pick a random seed": a job with it could not
    # be re-run to the same output, so no verification or dispute could ever settle it
    if not 0 <= p.seed < 2**32 - 1:
        raise SpecError(f"seed must be 0..2**32-2, not {p.seed}")
    if len(p.stop) > MAX_STOP or any(not s or len(s) > 64 for s in p.stop):
        raise SpecError(f"at most {MAX_STOP} stop strings of 1..64 characters")
    return p


def make_spec(
    model_cid: str, model_sha256: str, prompt: str | None = None, messages: list[dict[str, str]] | None = None,
    params: Params | None = None,
) -> JobSpec:
    """Build and validate a spec."""
    if (prompt is None) == (messages is None):
        raise SpecError("give exactly one of a prompt or chat messages")
    if prompt is not None and not prompt.strip():
        raise SpecError("the prompt is empty")
    msgs = None
    if messages is not None:
        if not messages:
            raise SpecError("the messages list is empty")
        try:
            msgs = tuple((str(m["role"]), str(m["content"])) for m in messages)
        except (KeyError, TypeError) as e:
            raise SpecError("each message needs a role and a content") from e
        if any(r not in _ROLES for r, _ in msgs):
            raise SpecError("message roles must be system, user or assistant")
    _cid(model_cid, "model CID")
    if not _HEX64.fullmatch(model_sha256):
        raise SpecError("model sha256 must be 64 lowercase hex digits")
    return JobSpec(model_cid, model_sha256, prompt, msgs, validate_params(params or Params()))


@dataclass(frozen=True)
class Result:
    """A signed execution receipt."""

    body: dict[str, Any]
    signature: str

    @property
    def output(self) -> str:
        """The generated text."""
        return str(self.body["output"])

    @property
    def commit_salt(self) -> bytes:
        """The salt that opens the provider's on-chain commitment to the output."""
        return bytes.fromhex(str(self.body["commit_salt"]))

    def to_bytes(self) -> bytes:
        """Canonical bytes (what goes to IPFS)."""
        return canonical({**self.body, "signature": self.signature})


def result_body(
    *, job_id: int, chain_id: int, market: str, spec_cid: str, output: str, finish_reason: str,
    usage: dict[str, int], model_sha256: str, engine: dict[str, str], params: dict[str, Any],
    timings: dict[str, float], provider: str, commit_salt: bytes,
) -> dict[str, Any]:
    """The result's fields before signing."""
    return {
        "version": RESULT_VERSION, "job_id": job_id, "chain_id": chain_id, "market": market,
        "spec_cid": spec_cid, "output": output, "output_sha256": output_hash(output).hex(),
        "finish_reason": finish_reason, "usage": usage, "model_sha256": model_sha256, "engine": engine,
        "params": params, "timings": timings, "provider": provider, "commit_salt": commit_salt.hex(),
    }


# --------------------------------------------------------------------------- strict reading
# Exact type checks (`type(v) is int`), because JSON true is a Python int and "abcd" is a
# Python sequence: both used to slip through as a seed of 1 or as four stop strings.

_KINDS: dict[type, str] = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number",
                           str: "a string", list: "an array", dict: "an object"}


def _show(value: Any) -> str:
    """A short rendering of an untrusted value for an error message: never the whole of it."""
    if isinstance(value, str):
        shown = repr(value[:MAX_SHOWN])  # cut before repr (cheap) and after (escapes grow it)
        return shown if len(value) <= MAX_SHOWN and len(shown) <= MAX_SHOWN + 2 else shown[:MAX_SHOWN] + "..."
    if isinstance(value, (list, dict)):
        return _KINDS[type(value)]
    return json.dumps(value)  # null, a boolean or a number: short, as the loader bounds numbers


def _fields(value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """`value` as an object with all of `required`, and nothing outside `required` + `optional`."""
    if type(value) is not dict:
        raise SpecError(f"{where} must be an object, not {_show(value)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise SpecError(f"{where} lacks {', '.join(missing)}")
    unknown = [k for k in value if k not in required and k not in optional]
    if unknown:
        raise SpecError(f"{where} has an unknown key {_show(unknown[0])}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """An object with free-form keys (usage, engine, timings)."""
    if type(value) is not dict:
        raise SpecError(f"{where} must be an object, not {_show(value)}")
    return value


def _array(value: Any, where: str) -> list[Any]:
    if type(value) is not list:
        raise SpecError(f"{where} must be an array, not {_show(value)}")
    return value


def _string(value: Any, where: str) -> str:
    if type(value) is not str:
        raise SpecError(f"{where} must be a string, not {_show(value)}")
    return value


def _pattern(value: Any, where: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(_string(value, where)):
        raise SpecError(f"{where} must be {what}, not {_show(value)}")
    return str(value)


def _integer(value: Any, where: str, low: int = 0, high: int = _UINT64) -> int:
    if type(value) is not int:
        raise SpecError(f"{where} must be an integer, not {_show(value)}")
    if not low <= value <= high:
        raise SpecError(f"{where} must be {low}..{high}, not {value}")
    return value


def _number(value: Any, where: str) -> float:
    # An int stays an int, so that re-serializing keeps the canonical bytes (and thus the CID or
    # signature) of what was read; the loader has already refused inf, nan and huge numbers.
    if type(value) is not int and type(value) is not float:
        raise SpecError(f"{where} must be a number, not {_show(value)}")
    return value


def _cid(value: Any, where: str) -> str:
    text = _string(value, where)
    if len(text) > MAX_CID_CHARS:
        raise SpecError(f"{where} is {len(text)} characters long; no CID is over {MAX_CID_CHARS}")
    try:
        CID.parse(text)
    except ValueError:  # InvalidCID is one; any other decoding slip must not escape either
        raise SpecError(f"{where} is not a CID: {_show(text)}",
                        hint="a CID looks like Qm... (v0) or bafy.../bafk... (v1)") from None
    return text


def _load(data: bytes, what: str) -> Any:
    try:
        return safejson.loads(data)
    except safejson.JSONRejected as e:
        raise SpecError(f"{what} is malformed: {e}") from None


def _params(value: Any, where: str) -> Params:
    """Sampling parameters; absent ones take their defaults."""
    p = _fields(value, where, (), _PARAM_KEYS)
    default = Params()
    stop = _array(p.get("stop", []), f"{where}.stop")
    if len(stop) > MAX_STOP:
        raise SpecError(f"{where}.stop has {len(stop)} strings, more than {MAX_STOP}")
    return validate_params(Params(
        max_tokens=_integer(p.get("max_tokens", default.max_tokens), f"{where}.max_tokens"),
        temperature=_number(p.get("temperature", default.temperature), f"{where}.temperature"),
        top_p=_number(p.get("top_p", default.top_p), f"{where}.top_p"),
        seed=_integer(p.get("seed", default.seed), f"{where}.seed"),
        stop=tuple(_string(s, f"{where}.stop[{i}]") for i, s in enumerate(stop)),
    ))


def parse_spec(data: bytes) -> JobSpec:
    """Parse spec bytes fetched from IPFS; SpecError on anything malformed."""
    d = _fields(_load(data, "job spec"), "job spec", ("version", "model"), ("prompt", "messages", "params"))
    if type(d["version"]) is not int or d["version"] != SPEC_VERSION:
        raise SpecError(f"job spec version must be {SPEC_VERSION}, not {_show(d['version'])}")
    model = _fields(d["model"], "model", ("cid", "sha256"))
    cid = _cid(model["cid"], "model.cid")
    sha = _pattern(model["sha256"], "model.sha256", _HEX64, "64 lowercase hex digits")
    prompt = _string(d["prompt"], "prompt") if "prompt" in d else None
    messages = None
    if "messages" in d:
        messages = []
        for i, m in enumerate(_array(d["messages"], "messages")):
            msg = _fields(m, f"messages[{i}]", ("role", "content"))
            if msg["role"] not in _ROLES:
                raise SpecError(f"messages[{i}].role must be system, user or assistant, not {_show(msg['role'])}")
            messages.append({"role": msg["role"], "content": _string(msg["content"], f"messages[{i}].content")})
    return make_spec(cid, sha, prompt, messages, _params(d.get("params", {}), "params"))


_RESULT_KEYS = ("version", "job_id", "chain_id", "market", "spec_cid", "output", "output_sha256", "finish_reason",
                "usage", "model_sha256", "engine", "params", "timings", "provider", "commit_salt", "signature")


def parse_result(data: bytes) -> Result:
    """Parse result bytes; SpecError when malformed. The body is kept exactly as read, because
    its canonical bytes are what the provider signed."""
    d = _fields(_load(data, "result"), "result", _RESULT_KEYS)
    if type(d["version"]) is not int or d["version"] != RESULT_VERSION:
        raise SpecError(f"result version must be {RESULT_VERSION}, not {_show(d['version'])}")
    _integer(d["job_id"], "result job_id")
    _integer(d["chain_id"], "result chain_id")
    _pattern(d["market"], "result market", _ADDRESS, "an address")
    _pattern(d["provider"], "result provider", _ADDRESS, "an address")
    _cid(d["spec_cid"], "result spec_cid")
    output = _string(d["output"], "result output")
    if _pattern(d["output_sha256"], "result output_sha256", _HEX64, "64 lowercase hex digits") != output_hash(output).hex():
        raise SpecError("result output_sha256 is not the sha256 of its output")
    _string(d["finish_reason"], "result finish_reason")
    _pattern(d["commit_salt"], "result commit_salt", _HEX64, "64 lowercase hex digits")
    _pattern(d["model_sha256"], "result model_sha256", _HEX64, "64 lowercase hex digits")
    for k, v in _mapping(d["usage"], "result usage").items():
        _integer(v, f"result usage[{_show(k)}]")
    for k, v in _mapping(d["engine"], "result engine").items():
        _string(v, f"result engine[{_show(k)}]")
    for k, v in _mapping(d["timings"], "result timings").items():
        _number(v, f"result timings[{_show(k)}]")
    _params(d["params"], "result params")
    signature = _pattern(d["signature"], "result signature", _SIGNATURE, "0x, r and s (128 hex digits) and v")
    return Result({k: v for k, v in d.items() if k != "signature"}, signature)
