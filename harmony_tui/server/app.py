"""The FastAPI application: OpenAI-compatible endpoints over one shared ``Engine``.

``create_app`` never touches MLX: generation goes through ``Engine.submit_batched``, whose
turns run on the engine's generation thread (continuously batched when the model allows it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from harmony_tui import __version__
from harmony_tui.engine import distributed
from harmony_tui.engine.messages import PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.server.auth import OPEN_PATHS, APIKeyMiddleware
from harmony_tui.server.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from harmony_tui.server.chat import build_router
from harmony_tui.server.context import ServerContext, now
from harmony_tui.server.errors import APIError, CatchAllMiddleware, install_error_handlers
from harmony_tui.server.exposure import LoopbackHostMiddleware, is_loopback
from harmony_tui.server.records import OnRequest, RequestLogMiddleware
from harmony_tui.server.responses_api import build_responses_router
from harmony_tui.server.schemas import SEED_MAX, ErrorResponse, Health, ModelCard, ModelList

DEFAULT_MAX_QUEUE = 64


def create_app(
    engine: Any,
    *,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    on_request: OnRequest | None = None,
    setup: PromptSetup | Callable[[], PromptSetup] | None = None,
    params: GenerationParams | None = None,
    models_dir: Path | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    tools: Any = None,
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
    bind_host: str | None = None,
) -> FastAPI:
    """The API app for ``engine``.

    ``setup`` (or a function returning it, called per request so date placeholders stay
    current) and ``params`` are the defaults every request starts from (a request's own
    sampling fields and tools override them). ``max_queue`` bounds the generation requests
    running or waiting at once; more get 429. ``on_request`` receives a ``RequestRecord`` when
    each request starts and ends, on the server thread.

    ``tools`` (a ``ToolSet`` of built-in tools, see ``tool_loop.py``) are declared to the model
    in chat and Responses requests, and the server runs their calls itself; without it every
    tool call goes back to the client. The app never closes the tool set: its owner does, on
    the server's event loop (``runner.serve_until_stopped``).

    A request body over ``max_body_bytes`` (None: no limit) gets 413 without being read whole.
    With ``bind_host`` a loopback address, requests whose Host header names another machine get
    421 (``exposure.py``: DNS rebinding).
    """
    ctx = ServerContext(engine, setup or PromptSetup(), params or GenerationParams(),
                        models_dir, max_queue, tools)
    app = FastAPI(
        title="harmony-tui API",
        version=__version__,
        description="OpenAI-compatible API of harmony-tui: the loaded model, with Harmony "
        "reasoning and tool calls returned as separate fields.",
    )
    app.state.context = ctx
    install_error_handlers(app)
    app.include_router(build_router(ctx))
    app.include_router(build_responses_router(ctx))
    _add_info_routes(app, ctx)
    _document_security(app, bool(api_key))
    # Middleware runs outermost-last-added: log -> host -> CORS -> key -> body limit -> catch-all.
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["*"], allow_headers=["*"])
    if bind_host is not None and is_loopback(bind_host):
        app.add_middleware(LoopbackHostMiddleware)
    app.add_middleware(RequestLogMiddleware, on_request=on_request)
    return app


def _add_info_routes(app: FastAPI, ctx: ServerContext) -> None:
    @app.get("/health", response_model=Health, tags=["info"],
             summary="Liveness; never needs the API key")
    async def health() -> dict[str, Any]:
        loaded = ctx.engine.model
        group = distributed.info()
        return {"status": "ok" if loaded is not None else "no_model",
                "model": loaded.name if loaded is not None else None,
                "running": ctx.admission.count,
                "group": None if group is None else
                {"size": group.size, "rank": group.rank, "backend": group.backend,
                 "sharding": getattr(loaded, "sharding", None)}}

    @app.head("/health", tags=["info"], response_class=Response, operation_id="health_head",
              responses={200: {"description": "the server is up (no body)", "content": {}}},
              summary="Liveness without a body; never needs the API key")
    async def health_head() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models", response_model=ModelList, tags=["info"],
             responses={401: {"model": ErrorResponse}},
             summary="The loaded model, then the local models that could be loaded")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": model_cards(ctx)}

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, tags=["info"],
             responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
             summary="One model of /v1/models")
    async def model(model_id: str) -> dict[str, Any]:
        for card in model_cards(ctx):
            if card["id"] == model_id:
                return card
        raise APIError(404, f"model {model_id!r} does not exist (GET /v1/models lists them)",
                       param="model", code="model_not_found")


def model_cards(ctx: ServerContext) -> list[dict[str, Any]]:
    """The loaded model first (``loaded: true``), then every other local model."""
    from harmony_tui.engine.catalog import local_models

    created = now()
    cards: list[dict[str, Any]] = []
    loaded = ctx.engine.model
    names: set[str] = set()
    if loaded is not None:
        cards.append({"id": loaded.name, "object": "model", "created": created,
                      "owned_by": "harmony-tui", "loaded": True,
                      "model_type": loaded.model_type, "source": None})
        names.update(ctx.model_names(loaded))
    for choice in local_models(ctx.models_dir):
        if choice.spec in names:
            continue
        names.add(choice.spec)
        cards.append({"id": choice.spec, "object": "model", "created": created,
                      "owned_by": "local", "loaded": False, "model_type": choice.model_type,
                      "source": choice.source})
    return cards


def _exact_integers(node: Any) -> None:
    """Integer bounds as integers: FastAPI's OpenAPI models store them as floats, which turns
    ``2**64 - 1`` into ``2**64`` (and ``5`` into ``5.0``)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = SEED_MAX if value == float(SEED_MAX) else int(value)
        for item in node.values():
            _exact_integers(item)
    elif isinstance(node, list):
        for item in node:
            _exact_integers(item)


def _errors_as_answered(schema: dict[str, Any]) -> None:
    """Error responses as the server answers them: never FastAPI's 422 (bad bodies are 400s
    in OpenAI's shape), and 413 wherever a body is read."""
    error = {"description": "the request body is larger than --max-body-bytes",
             "content": {"application/json": {"schema": {
                 "$ref": "#/components/schemas/ErrorResponse"}}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            if "requestBody" in operation:
                responses.setdefault("413", error)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def _stream_events(schema: dict[str, Any]) -> None:
    """Describe ``text/event-stream`` bodies as OpenAPI 3.1 tools read them: ``schema`` is one
    event (its ``data`` a JSON chunk, an error object or ``[DONE]``; ``event`` the Responses
    API's event type)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get("text/event-stream")
                if stream is None:
                    continue
                about = stream.get("schema", {}).get("description", "server-sent events")
                stream["schema"] = {
                    "type": "object", "description": f"one server-sent event of the stream "
                    f"({about})", "required": ["data"],
                    "properties": {
                        "data": {"type": "string", "description": "a JSON object (a chunk or "
                                 "an error) or, last, [DONE]"},
                        "event": {"type": "string", "description": "the event type"},
                        "id": {"type": "string"}, "retry": {"type": "integer"}}}


def _document_security(app: FastAPI, enabled: bool) -> None:
    """Build ``/openapi.json`` with exact integer limits, declaring the bearer key when one
    is required."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        _exact_integers(schema)
        _errors_as_answered(schema)
        _stream_events(schema)
        if enabled:
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearerAuth": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    operation["security"] = [] if path in OPEN_PATHS else [{"bearerAuth": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
