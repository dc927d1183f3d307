"""The JSON objects of OpenAI's API, built from a verified Answer: completions, stream chunks,
usage and models. Every answer also carries a `hearth` object (the job ids, the provider, the
result CID), which OpenAI clients ignore and which lets a user check the job on chain."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hearth.gateway.broker import Answer
from hearth.models import ModelRef


def sse(obj: Any) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


SSE_DONE = "data: [DONE]\n\n"


def usage(a: Answer) -> dict[str, int]:
    """OpenAI's usage object."""
    return {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
            "total_tokens": a.prompt_tokens + a.completion_tokens}


def hearth_info(a: Answer) -> dict[str, Any]:
    """Where the answer came from, to check on chain (`hearth job status ID`)."""
    return {"job_id": a.job_id, "jobs": list(a.jobs), "provider": a.provider, "result_cid": a.result_cid,
            "verified": True}


def pieces(text: str) -> list[str]:
    """The answer cut into word-sized pieces (each with its trailing space) that join back to it."""
    return re.findall(r"\S+\s*|\s+", text)


def chat_completion(a: Answer, model: str, created: int) -> dict[str, Any]:
    """A `chat.completion` object."""
    return {
        "id": f"chatcmpl-hearth-{a.job_id}", "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text, "refusal": None},
                     "logprobs": None, "finish_reason": a.finish_reason}],
        "usage": usage(a), "hearth": hearth_info(a),
    }


def text_completion(a: Answer, model: str, created: int) -> dict[str, Any]:
    """A `text_completion` object."""
    return {
        "id": f"cmpl-hearth-{a.job_id}", "object": "text_completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "text": a.text, "logprobs": None, "finish_reason": a.finish_reason}],
        "usage": usage(a), "hearth": hearth_info(a),
    }


def chat_chunks(a: Answer, model: str, created: int, include_usage: bool) -> Iterator[str]:
    """The answer as `chat.completion.chunk` events: the role, the text in pieces, the finish
    reason, then (when asked) a usage chunk with no choices, then [DONE]."""
    base: dict[str, Any] = {"id": f"chatcmpl-hearth-{a.job_id}", "object": "chat.completion.chunk",
                            "created": created, "model": model, "system_fingerprint": None}
    if include_usage:
        base["usage"] = None  # as OpenAI does: null on every chunk but the last

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                    **extra})

    yield chunk({"role": "assistant", "content": ""}, hearth=hearth_info(a))
    for piece in pieces(a.text):
        yield chunk({"content": piece})
    yield chunk({}, a.finish_reason)
    if include_usage:
        yield sse({**base, "choices": [], "usage": usage(a)})
    yield SSE_DONE


def completion_chunks(a: Answer, model: str, created: int, include_usage: bool) -> Iterator[str]:
    """The answer as `text_completion` stream events, like chat_chunks."""
    base: dict[str, Any] = {"id": f"cmpl-hearth-{a.job_id}", "object": "text_completion", "created": created,
                            "model": model, "system_fingerprint": None}
    if include_usage:
        base["usage"] = None

    def chunk(text: str, finish: str | None = None, **extra: Any) -> str:
        return sse({**base, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                    **extra})

    parts = pieces(a.text) or [""]
    for i, piece in enumerate(parts):
        yield chunk(piece, hearth=hearth_info(a)) if i == 0 else chunk(piece)
    yield chunk("", a.finish_reason)
    if include_usage:
        yield sse({**base, "choices": [], "usage": usage(a)})
    yield SSE_DONE


def model_object(m: ModelRef) -> dict[str, Any]:
    """A `model` object; the id is the local name (`hearth model list`)."""
    return {"id": m.name, "object": "model", "created": 0, "owned_by": "hearth",
            "hearth": {"cid": m.cid, "sha256": m.sha256, "size": m.size}}
