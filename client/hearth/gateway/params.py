"""An OpenAI request body, parsed once into what the market is asked (`Ask`).

Every check names the parameter it failed on, so a 400 says what to fix. Parameters that change
what is asked but that a job spec cannot carry (tools, logprobs, n > 1, JSON mode) are refused
rather than silently ignored; the penalties and `user` are accepted and have no effect."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hearth.formats.jobspec import MAX_STOP, Params
from hearth.gateway.errors import bad_request

MAX_TOKENS = 32_768  # what a job spec allows (hearth.formats.jobspec.validate_params)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Ask:
    """What to ask the market: the model by name, either a raw prompt or chat messages, and the
    sampling parameters; plus how to answer (stream, usage chunk)."""

    model: str
    prompt: str | None
    messages: list[dict[str, str]] | None
    params: Params
    stream: bool
    include_usage: bool


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None, None)
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise bad_request("You must provide a model parameter.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise bad_request("`model` must be a non-empty string.", "model")
    return model


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad_request(f"`{name}` must be an integer from {lo} to {hi}, not {v!r}.", name)
    return v


def _num(body: dict[str, Any], name: str, lo: float, hi: float, lo_open: bool = False) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
    if not ok or not (lo < v <= hi if lo_open else lo <= v <= hi):
        interval = f"({lo:g}, {hi:g}]" if lo_open else f"[{lo:g}, {hi:g}]"
        raise bad_request(f"`{name}` must be a number in {interval}, not {v!r}.", name)
    return float(v)


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or len(stops) > MAX_STOP or \
            any(not isinstance(s, str) or not 1 <= len(s) <= 64 for s in stops):
        raise bad_request(f"`stop` must be a string or a list of at most {MAX_STOP} strings of 1 to 64 characters.",
                          "stop")
    return tuple(stops)


def _refuse_unsupported(body: dict[str, Any], names: tuple[str, ...]) -> None:
    """A feature the market cannot carry, asked for with a value that matters."""
    for name in names:
        v = body.get(name)
        if v not in (None, False, [], {}, 0, ""):
            raise bad_request(f"`{name}` is not supported by Hearth's market jobs.", name, "unsupported_parameter")


def _common(body: dict[str, Any], default_max_tokens: int) -> tuple[Params, bool, bool]:
    """Sampling params and streaming flags shared by both endpoints."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise bad_request("Only `n` = 1 is supported: each answer is one paid job.", "n")
    max_completion = _int(body, "max_completion_tokens", 1, MAX_TOKENS)
    max_tokens = max_completion if max_completion is not None else _int(body, "max_tokens", 1, MAX_TOKENS)
    temperature = _num(body, "temperature", 0, 2)
    top_p = _num(body, "top_p", 0, 1, lo_open=True)
    seed = _int(body, "seed", 0, 2**32 - 1)
    params = Params(
        max_tokens=max_tokens if max_tokens is not None else default_max_tokens,
        # unset means greedy: the answer is then reproducible, which audits and re-runs rely on
        temperature=temperature if temperature is not None else 0.0,
        top_p=top_p if top_p is not None else 1.0,
        seed=seed if seed is not None else 0,
        stop=_stop(body),
    )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("`stream` must be true or false.", "stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not stream:
            raise bad_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                              "stream_options")
        if not isinstance(opts, dict) or not isinstance(opts.get("include_usage", False), bool):
            raise bad_request("`stream_options` must be an object like {\"include_usage\": true}.", "stream_options")
        include_usage = bool(opts.get("include_usage", False))
    return params, bool(stream), include_usage


def _content(m: dict[str, Any], i: int) -> str:
    """A message's text: a string, or a list of text parts (joined)."""
    content = m.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request("Only text content parts are supported.", f"messages[{i}].content[{j}]")
            texts.append(part["text"])
        return "".join(texts)
    raise bad_request("Each message needs a `content` string (or a list of text parts).", f"messages[{i}].content")


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if msgs is None:
        raise bad_request("You must provide a messages parameter.", "messages", "missing_required_parameter")
    if not isinstance(msgs, list) or not msgs:
        raise bad_request("`messages` must be a non-empty list.", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise bad_request("Each message must be an object with a role and a content.", f"messages[{i}]")
        role = m.get("role")
        if role not in ROLES:
            raise bad_request(f"Invalid role {role!r}: use system, developer, user or assistant (no tools).",
                              f"messages[{i}].role")
        out.append({"role": ROLES[str(role)], "content": _content(m, i)})
    if not any(m["content"].strip() for m in out):
        raise bad_request("The messages hold no text.", "messages")
    return out


def parse_chat(raw: Any, default_max_tokens: int) -> Ask:
    """POST /v1/chat/completions."""
    body = _body(raw)
    model = _model(body)
    messages = _messages(body)
    _refuse_unsupported(body, ("tools", "functions", "tool_choice", "function_call", "logprobs", "top_logprobs",
                               "audio", "modalities", "prediction"))
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise bad_request("Only `response_format` {\"type\": \"text\"} is supported.", "response_format",
                          "unsupported_parameter")
    params, stream, include_usage = _common(body, default_max_tokens)
    return Ask(model, None, messages, params, stream, include_usage)


def parse_completion(raw: Any, default_max_tokens: int) -> Ask:
    """POST /v1/completions: the raw prompt, sent without a chat template."""
    body = _body(raw)
    model = _model(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # a batch of one
    if prompt is None:
        raise bad_request("You must provide a prompt parameter.", "prompt", "missing_required_parameter")
    if not isinstance(prompt, str):
        raise bad_request("`prompt` must be one string (batches and token arrays are not supported).", "prompt")
    if not prompt.strip():
        raise bad_request("`prompt` is empty.", "prompt")
    _refuse_unsupported(body, ("echo", "suffix", "logprobs"))
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise bad_request("Only `best_of` = 1 is supported.", "best_of", "unsupported_parameter")
    params, stream, include_usage = _common(body, default_max_tokens)
    return Ask(model, prompt, None, params, stream, include_usage)

