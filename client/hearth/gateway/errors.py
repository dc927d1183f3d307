"""Errors of the gateway as OpenAI sends them: `{"error": {"message", "type", "param", "code"}}`
with a status that clients (and the `openai` SDK's exception classes) act on."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status plus OpenAI's error object."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    """400: a parameter the market cannot honour, or a malformed body."""
    return ApiError(400, message, "invalid_request_error", param, code)


def unknown_model(model: str, known: list[str]) -> ApiError:
    """404: no model by that name here (OpenAI answers `model_not_found` the same way)."""
    names = ", ".join(known) or "none"
    return ApiError(404, f"The model `{model}` does not exist here (known: {names}); name a GGUF first with "
                         "`hearth model add`", "invalid_request_error", "model", "model_not_found")


def unauthorized() -> ApiError:
    """401: this server was started with an API key and the request did not carry it."""
    return ApiError(401, "Incorrect or missing API key: send `Authorization: Bearer KEY` with the key "
                         "`hearth serve` was started with", "invalid_request_error", None, "invalid_api_key")


def no_balance(message: str) -> ApiError:
    """402: the serving account cannot pay for the job."""
    return ApiError(402, message, "insufficient_quota", None, "insufficient_quota")


def no_provider(message: str) -> ApiError:
    """504: nobody took (or finished) the job in time; its payment went back to the deposit."""
    return ApiError(504, message, "timeout_error", None, "no_provider")


def upstream(message: str) -> ApiError:
    """502: the market, IPFS or a provider's result failed (e.g. a result that does not verify)."""
    return ApiError(502, message, "server_error", None, "upstream_error")
