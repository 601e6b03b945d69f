"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the server answers goes through here: bad bodies and fields (400, naming the
field), a missing or wrong key (401), unknown models and routes (404), a full queue (429), no
model loaded (503) and unexpected failures (500, with no traceback in the body).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("harmony_tui.server")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
         429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class APIError(Exception):
    """An error answered to the client; ``message`` is one line naming the culprit."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or TYPES.get(status, "invalid_request_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "messages", 0, "role")`` -> ``messages[0].role``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after[", "function-before[", "function-wrap[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(one-line message, param) for the first pydantic error of a request body."""
    if not errors:
        return "invalid request body", None
    first = errors[0]
    kind = first.get("type", "")
    param = field_path(first.get("loc", ())) or None
    msg = str(first.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", msg)
        return f"the request body is not valid JSON: {detail}", None
    if kind == "missing" and param is None:
        return "the request body is missing: send a JSON object", None
    if kind == "missing":
        return f"{param}: this field is required", param
    if kind == "extra_forbidden":
        return f"{param}: unrecognized request argument", param
    where = f"{param}: " if param else ""
    got = f" (got {_short(first['input'])})" if "input" in first and kind != "model_type" else ""
    if kind == "model_type" or (kind.endswith("_type") and param is None):
        return f"{where}{msg[0].lower() + msg[1:]}", param
    return f"{where}{msg[0].lower() + msg[1:]}{got}", param


def install_error_handlers(app: FastAPI) -> None:
    """Route validation, HTTP and unexpected errors to OpenAI-shaped JSON bodies."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation(list(exc.errors()))
        return APIError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"unknown route: {request.method} {request.url.path}"
            return APIError(404, message, code="unknown_url").response()
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
            return APIError(405, message, code="method_not_allowed").response()
        return APIError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return APIError(500, "internal server error; the server log has the details",
                        type="server_error").response()
