"""Request and response bodies of the OpenAI-compatible API (they drive ``/openapi.json``).

Requests reject unknown fields (400 naming the field), like OpenAI; a few fields that OpenAI
clients commonly send and that change nothing here (``user``, ``metadata``, ``store`` ...) are
accepted and ignored. Every number has its range in the schema (the sampling ranges are the
engine's ``GenerationParams`` limits, copied so they live in one place), so a value out of range
is a 400 naming the field before anything reaches the engine; limits that depend on the loaded
model (token ids, ``min_tokens_to_keep``) are checked when the request is turned into a turn.
Strings must be valid Unicode: a lone surrogate (``"\\ud800"``) anywhere in a body is a 400.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from harmony_tui.engine.params import GenerationParams
from harmony_tui.server.errors import INVALID_UNICODE_ERROR

ReasoningEffort = Literal["low", "medium", "high"]

INT32_MAX = 2**31 - 1  # integers that reach MLX as 32-bit values
SEED_MAX = 2**64 - 1  # MLX seeds are unsigned 64-bit
MAX_STOPS = 4
MAX_STOP_CHARS = 1000
MAX_LOGIT_BIAS = 1024
MAX_TOOLS = 128

_SURROGATE = re.compile("[\ud800-\udfff]")


def find_surrogate(data: Any, path: str = "") -> tuple[str, str] | None:
    """(field path, the offending character) of the first lone surrogate in a JSON value."""
    stack: list[tuple[str, Any]] = [(path, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                return where, found.group()
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                key_text = str(key)
                child = f"{where}.{key_text}" if where else key_text
                if _SURROGATE.search(key_text):
                    return child, _SURROGATE.search(key_text).group()  # type: ignore[union-attr]
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


def _engine_limits(name: str) -> dict[str, Any]:
    """The ``ge``/``gt``/``le``/``lt`` bounds of a ``GenerationParams`` field."""
    bounds: dict[str, Any] = {}
    for item in GenerationParams.model_fields[name].metadata:
        for attr in ("ge", "gt", "le", "lt"):
            value = getattr(item, attr, None)
            if value is not None:
                bounds[attr] = value
    return bounds


def _sampling(name: str, description: str, **extra: Any) -> Any:
    """An optional request field with the engine's range for ``name`` (plus ``extra``)."""
    return Field(None, description=description, **{**_engine_limits(name), **extra})


TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,10}$")]
Bias = Annotated[float, Field(ge=-100.0, le=100.0)]
LogitBias = Annotated[dict[TokenId, Bias], Field(max_length=MAX_LOGIT_BIAS), WithJsonSchema({
    "type": "object", "maxProperties": MAX_LOGIT_BIAS,
    "propertyNames": {"pattern": r"^[0-9]{1,10}$"},
    "additionalProperties": {"type": "number", "minimum": -100.0, "maximum": 100.0}})]
StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
TokenCount = Annotated[int, Field(ge=1, le=INT32_MAX)]
TokenIdInt = Annotated[int, Field(ge=0, le=INT32_MAX)]


# -- shared request fields ------------------------------------------------------------------


class SamplingFields(_Strict):
    """Sampling fields shared by every generation endpoint (None: the server's default)."""

    temperature: float | None = _sampling("temperature", "0 is greedy; default 1.0")
    top_p: float | None = _sampling("top_p", "nucleus sampling mass, in (0, 1]")
    seed: int | None = _sampling("seed", "reproducible sampling (runs the request alone)",
                                 le=SEED_MAX)
    presence_penalty: float | None = _sampling("presence_penalty", "-2 to 2")
    frequency_penalty: float | None = _sampling("frequency_penalty", "-2 to 2")
    logit_bias: LogitBias | None = Field(
        None, description="token id (as a string) -> bias added to its logit, -100 to 100")
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOPS)] | None = Field(
        None, description=f"up to {MAX_STOPS} strings that end the answer (not included in it)")
    # harmony-tui extras (mlx-lm samplers)
    top_k: int | None = _sampling("top_k", "keep the k most likely tokens (0: off)",
                                  le=INT32_MAX)
    min_p: float | None = _sampling("min_p", "drop tokens below min_p x the top one")
    min_tokens_to_keep: int | None = _sampling(
        "min_tokens_to_keep", "tokens min_p always keeps (at most the vocabulary size)",
        le=INT32_MAX)
    repetition_penalty: float | None = _sampling("repetition_penalty", "1 disables")
    repetition_context_size: int | None = _sampling(
        "repetition_context_size", "tokens the penalties see", le=INT32_MAX)
    xtc_probability: float | None = _sampling("xtc_probability", "XTC sampling probability")
    xtc_threshold: float | None = _sampling("xtc_threshold", "XTC threshold")
    # accepted for compatibility, no effect
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        found = find_surrogate(data)
        if found is not None:
            path, char = found
            raise PydanticCustomError(
                INVALID_UNICODE_ERROR, "{path}: contains a lone surrogate ({char}); text must be "
                "valid Unicode", {"path": path, "char": char.encode("unicode_escape").decode()})
        return data


class StreamOptions(_Strict):
    include_usage: bool = Field(False, description="send a last chunk with the usage")
    include_obfuscation: bool | None = None


class ReasoningConfig(_Open):
    effort: ReasoningEffort | None = None
    summary: str | None = None


# -- chat completions -------------------------------------------------------------------------


class ContentPart(_Open):
    """A content part; only ``{"type": "text", "text": ...}`` is supported."""

    type: str
    text: str | None = None


class FunctionCallIn(_Open):
    name: str
    arguments: str = ""


class ToolCallIn(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(_Open):
    """A message of the conversation. Assistant messages may carry ``tool_calls`` and the
    reasoning of their turn (``reasoning`` or ``reasoning_content``); ``tool`` messages answer a
    call by ``tool_call_id``."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None


class FunctionDef(_Open):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Strict):
    type: Literal["function"]
    function: FunctionDef


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: TokenCount | None = Field(None, description="most tokens to generate")
    max_completion_tokens: TokenCount | None = Field(None, description="same as max_tokens")
    n: int | None = Field(None, ge=1, le=128, description="only 1 is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | None = Field(None, description="log-probabilities of the answer's tokens")
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ToolDef] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: str | dict[str, Any] | None = Field(
        None, description="'auto' (default) or 'none' (no tools declared, no tool_calls "
        "returned); the model cannot be forced to call")
    parallel_tool_calls: bool | None = None
    reasoning_effort: ReasoningEffort | None = Field(None, description="low, medium or high")
    reasoning: ReasoningConfig | None = Field(None, description="{'effort': ...}, same as "
                                              "reasoning_effort")
    response_format: ResponseFormat | None = Field(
        None, description="only {'type': 'text'}: output is not constrained")


# -- completions ------------------------------------------------------------------------------


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``: continue a raw prompt (special tokens allowed)."""

    model: str
    prompt: str | list[str] | list[TokenIdInt] | list[list[TokenIdInt]] = Field(
        description="the text (special tokens allowed) or its token ids; one prompt only")
    max_tokens: TokenCount | None = Field(16, description="most tokens to generate (default 16)")
    n: int | None = Field(None, ge=1, le=128, description="only 1 is supported")
    best_of: int | None = Field(None, ge=1, le=20, description="only 1 is supported")
    echo: bool | None = None
    suffix: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=5)


# -- responses --------------------------------------------------------------------------------


class ResponseFunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_Open):
    type: Literal["text", "json_object", "json_schema"] = Field(
        description="only 'text' is supported: output is not constrained")


class TextConfig(_Open):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(SamplingFields):
    """``POST /v1/responses``: text, reasoning and function calls (stateless)."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[ResponseFunctionTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: str | dict[str, Any] | None = Field(
        None, description="'auto' (default) or 'none' (no tools declared, no function_call "
        "items returned)")
    parallel_tool_calls: bool | None = None
    max_output_tokens: TokenCount | None = None
    reasoning: ReasoningConfig | None = None
    stream: bool = False
    previous_response_id: str | None = None
    text: TextConfig | None = Field(None, description="{'format': {'type': 'text'}}")
    truncation: str | None = None
    include: list[str] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    background: bool | None = None


# -- responses bodies (documentation; handlers build plain dicts of this shape) ---------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FunctionCallOut(BaseModel):
    name: str
    arguments: str = Field(description="JSON text")


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning: str | None = Field(None, description="the model's thinking (analysis channel)")
    reasoning_content: str | None = Field(None, description="same as reasoning")
    tool_calls: list[ToolCallOut] | None = None
    refusal: str | None = None
    no_answer: str | None = Field(
        None, description="present only when the turn ended (stop or length) with no content "
        "and no tool calls: why, in one line (e.g. the model stopped after its reasoning); "
        "streamed as a delta.no_answer chunk before the finish chunk")


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length", "tool_calls"] | None
    logprobs: ChoiceLogprobs | None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class CompletionTokensDetails(BaseModel):
    """Speculative decoding's drafts (``--draft-model``, ``--prompt-lookup``): accepted and
    rejected, under the names OpenAI uses for the drafts of predicted outputs."""

    accepted_prediction_tokens: int
    rejected_prediction_tokens: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletion(BaseModel):
    """A chat completion; with ``stream: true`` the body is instead a ``text/event-stream``
    of ``chat.completion.chunk`` objects (``delta`` with ``role``, ``content``, ``reasoning``,
    ``reasoning_content`` or ``tool_calls``) ending with ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: dict[str, Any] | None = None


class Completion(BaseModel):
    """A text completion (``text_completion`` chunks as server-sent events when streaming)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    loaded: bool = Field(description="True for the model being served")
    model_type: str | None = None
    source: str | None = Field(None, description="demo, folder or hf-cache")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "no_model"]
    model: str | None
    running: int = Field(description="generation requests in flight")
    group: dict[str, Any] | None = Field(
        None, description="MLX distributed: the group's size, backend and this process's rank "
        "(always 0: rank 0 serves); null in a single process")


class ResponseObject(_Open):
    """A Responses API ``response`` object (``output`` items: reasoning, message,
    function_call); with ``stream: true`` a ``text/event-stream`` of typed events."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    no_answer: str | None = Field(
        None, description="harmony-tui: set when the turn ended without an answer (no output "
        "text, no function call), e.g. after reasoning only; says why in one line")
