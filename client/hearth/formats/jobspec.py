"""Job spec and result formats (canonical JSON). Pure: no I/O.

Canonical bytes (sorted keys, no spaces, UTF-8) make the same spec always have the same CID,
and make a result's signature checkable by anyone who re-serializes it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import InvalidCID, UserError
from hearth.formats.cid import CID

SPEC_VERSION = 1
RESULT_VERSION = 1
MAX_STOP = 4


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
    if not 0 <= p.seed < 2**32:
        raise SpecError(f"seed must be 0..2**32-1, not {p.seed}")
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
        if any(r not in ("system", "user", "assistant") for r, _ in msgs):
            raise SpecError("message roles must be system, user or assistant")
    try:
        CID.parse(model_cid)
    except InvalidCID as e:
        raise SpecError(f"model CID: {e}") from e
    if len(model_sha256) != 64 or any(c not in "0123456789abcdef" for c in model_sha256):
        raise SpecError("model sha256 must be 64 lowercase hex digits")
    return JobSpec(model_cid, model_sha256, prompt, msgs, validate_params(params or Params()))


def parse_spec(data: bytes) -> JobSpec:
    """Parse spec bytes fetched from IPFS; SpecError on anything malformed."""
    try:
        d = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpecError(f"job spec is not JSON: {e}") from e
    if not isinstance(d, dict) or d.get("version") != SPEC_VERSION:
        raise SpecError(f"job spec version must be {SPEC_VERSION}")
    try:
        model = d["model"]
        p = d.get("params", {})
        params = Params(
            max_tokens=int(p.get("max_tokens", 64)),
            temperature=float(p.get("temperature", 0.0)),
            top_p=float(p.get("top_p", 1.0)),
            seed=int(p.get("seed", 0)),
            stop=tuple(str(s) for s in p.get("stop", [])),
        )
        return make_spec(str(model["cid"]), str(model["sha256"]), d.get("prompt"), d.get("messages"), params)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SpecError(f"job spec is malformed: {e}") from e


@dataclass(frozen=True)
class Result:
    """A signed execution receipt."""

    body: dict[str, Any]
    signature: str

    @property
    def output(self) -> str:
        """The generated text."""
        return str(self.body["output"])

    def to_bytes(self) -> bytes:
        """Canonical bytes (what goes to IPFS)."""
        return canonical({**self.body, "signature": self.signature})


def result_body(
    *, job_id: int, chain_id: int, market: str, spec_cid: str, output: str, finish_reason: str,
    usage: dict[str, int], model_sha256: str, engine: dict[str, str], params: dict[str, Any],
    timings: dict[str, float], provider: str,
) -> dict[str, Any]:
    """The result's fields before signing."""
    return {
        "version": RESULT_VERSION, "job_id": job_id, "chain_id": chain_id, "market": market,
        "spec_cid": spec_cid, "output": output, "output_sha256": output_hash(output).hex(),
        "finish_reason": finish_reason, "usage": usage, "model_sha256": model_sha256, "engine": engine,
        "params": params, "timings": timings, "provider": provider,
    }


def parse_result(data: bytes) -> Result:
    """Parse result bytes; SpecError when malformed."""
    try:
        d = json.loads(data)
        sig = d.pop("signature")
        if d.get("version") != RESULT_VERSION or not isinstance(d.get("output"), str):
            raise ValueError("wrong version or no output")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError, AttributeError) as e:
        raise SpecError(f"result is malformed: {e}") from e
    return Result(d, str(sig))
