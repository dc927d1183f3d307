"""The FastAPI app of `hearth serve`: OpenAI's /v1/models, /v1/chat/completions and
/v1/completions in front of the market.

Streaming (`stream: true`): the market hands over the whole answer at once, and only after it
has been verified against the chain is any of it sent; so a stream begins when the verified
answer is in, and then carries it as several chunks (the role, the text in word-sized pieces,
the finish reason, a usage chunk when `stream_options.include_usage` is set, `data: [DONE]`).
Waiting for the verified answer before the first byte also means every failure (no balance, no
provider) still gets its own HTTP status, as a non-streaming request would.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth import models
from hearth.errors import HearthError, UserError
from hearth.formats.jobspec import make_spec
from hearth.gateway import errors, shapes
from hearth.gateway.broker import Answer, Broker, NoProvider
from hearth.gateway.params import Ask, parse_chat, parse_completion
from hearth.jobs import ShortBalance

log = logging.getLogger(__name__)


def _text(e: HearthError) -> str:
    """An error's message with its hint, on one line (the JSON message a client shows)."""
    msg = str(e.args[0]) if e.args else type(e).__name__
    return f"{msg} (hint: {e.hint})" if e.hint else msg


def _resolve(name: str) -> models.ModelRef:
    """A model by its `hearth model list` name (or a CID known here); 404 otherwise."""
    try:
        return models.resolve(name)
    except UserError:
        raise errors.unknown_model(name, [m.name for m in models.all_models()]) from None


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"The request body is not valid JSON: {e}", None, None) from None


async def _run(broker: Broker, ask: Ask) -> Answer:
    """Post the job and wait for its verified answer. The job runs in the broker's thread, and
    the wait is shielded: a request cancelled because its client left does not cancel the job."""
    ref = _resolve(ask.model)
    try:
        spec = make_spec(ref.cid, ref.sha256, ask.prompt, ask.messages, ask.params)
    except UserError as e:
        raise errors.bad_request(_text(e)) from None
    fut = broker.submit(spec)
    try:
        return await asyncio.shield(asyncio.wrap_future(fut))
    except ShortBalance as e:
        raise errors.no_balance(_text(e)) from None
    except NoProvider as e:
        raise errors.no_provider(_text(e)) from None
    except UserError as e:
        raise errors.bad_request(_text(e), None, None) from None
    except HearthError as e:
        raise errors.upstream(_text(e)) from None
    except Exception as e:  # RPC or IPFS transport failures surface as library errors
        log.exception("job failed")
        raise errors.upstream(f"{type(e).__name__}: {e}") from None


def _answer(ask: Ask, a: Answer, whole: Callable[[Answer, str, int], dict[str, Any]],
            chunks: Callable[[Answer, str, int, bool], Iterator[str]]) -> Response:
    headers = {"X-Hearth-Job-Id": str(a.job_id)}
    created = int(time.time())
    if not ask.stream:
        return JSONResponse(whole(a, ask.model, created), headers=headers)

    async def events() -> AsyncIterator[str]:
        for event in chunks(a, ask.model, created, ask.include_usage):
            yield event

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def create_app(broker: Broker, api_key: str | None, default_max_tokens: int) -> FastAPI:
    """The app. `api_key`: the Bearer key every /v1 request must carry (None: any key, or none)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(broker.close)  # paid jobs still running are answered or refunded first

    app = FastAPI(title="Hearth: OpenAI-compatible gateway", lifespan=lifespan, docs_url=None, redoc_url=None)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise errors.unauthorized()

    @app.exception_handler(errors.ApiError)
    async def api_error(_: Request, e: errors.ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        what = f"Unknown request URL: {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        code = "unknown_url" if e.status_code in (404, 405) else None
        return JSONResponse(errors.ApiError(e.status_code, what, "invalid_request_error", None, code).body(),
                            status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse(errors.bad_request(str(e.errors()), None, None).body(), status_code=400)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "account": broker.conn.account.address}

    v1 = [Depends(authorize)]

    @app.get("/v1/models", dependencies=v1)
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [shapes.model_object(m) for m in models.all_models()]}

    @app.get("/v1/models/{model_id:path}", dependencies=v1)
    def get_model(model_id: str) -> dict[str, Any]:
        for m in models.all_models():
            if m.name == model_id:
                return shapes.model_object(m)
        raise errors.unknown_model(model_id, [m.name for m in models.all_models()])

    @app.post("/v1/chat/completions", dependencies=v1)
    async def chat_completions(request: Request) -> Response:
        ask = parse_chat(await _body(request), default_max_tokens)
        return _answer(ask, await _run(broker, ask), shapes.chat_completion, shapes.chat_chunks)

    @app.post("/v1/completions", dependencies=v1)
    async def completions(request: Request) -> Response:
        ask = parse_completion(await _body(request), default_max_tokens)
        return _answer(ask, await _run(broker, ask), shapes.text_completion, shapes.completion_chunks)

    return app
