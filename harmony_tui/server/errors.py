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

INVALID_UNICODE_ERROR = "invalid_unicode"  # a lone surrogate in a body (schemas.py)

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


_SCALAR_TYPES = ("str", "int", "float", "bool", "bytes", "none", "dict", "list")


def is_union_tag(part: Any) -> bool:
    """True for the parts pydantic adds to an error location inside a union or a validator
    (``str``, ``list[str]``, ``constrained-int``, ``function-after[...]``, ``[key]``, model
    names): they are not fields the client sent."""
    if not isinstance(part, str) or not part:
        return False
    return "[" in part or "-" in part or part in _SCALAR_TYPES or part[0].isupper()


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "messages", 0, "role")`` -> ``messages[0].role``."""
    out = ""
    for index, part in enumerate(loc):
        if part == "body" and index == 0:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif is_union_tag(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_type_error(error: dict[str, Any]) -> bool:
    kind = str(error.get("type", ""))
    return kind.endswith("_type") or kind in ("union_tag_invalid", "literal_error")


def _pick(errors: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The most telling error about the first bad field, and its sibling alternatives.

    Inside a union pydantic reports one error per alternative; an error that passed the type
    check of an alternative but broke a limit ("at most 4 items") says more than "not a string".
    """
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    cut = next((i for i, part in enumerate(loc) if i and is_union_tag(part)), None)
    if cut is None:
        return first, [first]
    prefix = loc[:cut]
    group = [e for e in errors if tuple(e.get("loc", ()))[:cut] == prefix
             and len(e.get("loc", ())) > cut and is_union_tag(e["loc"][cut])]
    specific = [e for e in group if not _is_type_error(e)]
    if specific:
        return max(specific, key=lambda e: len(e.get("loc", ()))), [first]
    inside = [e for e in group if len(e.get("loc", ())) > cut + 1]  # matched a container
    if inside:
        return max(inside, key=lambda e: len(e.get("loc", ()))), [first]
    return {**first, "loc": prefix}, group


def _lower(msg: str) -> str:
    return msg[:1].lower() + msg[1:]


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(one-line message, param) for the first pydantic error of a request body."""
    if not errors:
        return "invalid request body", None
    first, group = _pick(errors)
    kind = first.get("type", "")
    param = field_path(first.get("loc", ())) or None
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    msg = msg.replace(" after validation", "")
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", msg)
        return f"the request body is not valid JSON: {detail}", None
    if kind == INVALID_UNICODE_ERROR:
        path = (first.get("ctx") or {}).get("path") or None
        return msg, path
    if kind == "missing" and param is None:
        return "the request body is missing: send a JSON object", None
    if kind == "missing":
        return f"{param}: this field is required", param
    if kind == "extra_forbidden":
        return f"{param}: unrecognized request argument", param
    if tuple(first.get("loc", ()))[-1:] == ("[key]",):  # a bad key of a mapping
        parent = field_path(tuple(first["loc"])[:-2]) or None
        return f"{parent}: key {_short(first.get('input'))}: {_lower(msg)}", parent
    if len(group) > 1 and _is_type_error(first):  # no alternative of a union matched
        wanted = dict.fromkeys(_lower(str(e.get("msg", ""))).removeprefix("input should be ")
                               for e in group if _is_type_error(e))
        msg = "input should be " + " or ".join(wanted)
    where = f"{param}: " if param else ""
    value = first.get("input")
    if kind == "model_type" or (kind.endswith("_type") and param is None) or "input" not in first:
        return f"{where}{_lower(msg)}", param
    if param and (value is None or isinstance(value, str | int | float | bool)):
        return f"{param}={_short(value)}: {_lower(msg)}", param
    return f"{where}{_lower(msg)} (got {_short(value)})", param


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
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"unknown route: {request.method} {request.url.path}"
            return APIError(404, message, code="unknown_url", headers=headers).response()
        if exc.status_code == 405:
            allowed = allowed_methods(request) or headers.get("Allow", "")
            message = f"method {request.method} is not allowed on {request.url.path}"
            if allowed:
                message += f" (allowed: {allowed})"
            return APIError(405, message, code="method_not_allowed",
                            headers={**headers, "Allow": allowed}).response()
        if exc.status_code == 413:
            return APIError(413, str(exc.detail), code="request_too_large",
                            headers={**headers, "Connection": "close"}).response()
        return APIError(exc.status_code, str(exc.detail), headers=headers or None).response()


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header for a path: the methods of every route that matches it (Starlette
    names only the first route's, so GET and HEAD routes of one path hide each other)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


class CatchAllMiddleware:
    """Turn an unexpected exception into a 500 in OpenAI's shape, and keep the connection.

    Starlette's own last-resort handler re-raises after answering (so the server can log it),
    which makes uvicorn close the connection: the client's next request on that keep-alive
    connection then fails with a reset. Here the exception is logged and swallowed once the
    500 is sent. An exception in the middle of a response cannot be answered: it propagates
    and the connection closes (the streams catch their own errors, so this is a last resort).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        ended = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            record = (scope.get("state") or {}).get("record")
            if isinstance(record, dict):
                record.setdefault("error", "internal server error")
            if not started:
                response = APIError(500, "internal server error; the server log has the "
                                    "details", type="server_error").response()
                await response(scope, receive, send)
            elif not ended:  # a half-sent response: only closing the connection ends it
                raise
