"""Request and response bodies of the OpenAI-compatible API (they drive ``/openapi.json``).

Requests reject unknown fields (400 naming the field), like OpenAI; a few fields that OpenAI
clients commonly send and that change nothing here (``user``, ``metadata``, ``store`` ...) are
accepted and ignored. Sampling values are checked against the engine's ``GenerationParams``
when the request is turned into a turn, so the limits live in one place.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ReasoningEffort = Literal["low", "medium", "high"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- shared request fields ------------------------------------------------------------------


class SamplingFields(_Strict):
    """Sampling fields shared by every generation endpoint (None: the server's default)."""

    temperature: float | None = Field(None, description="0 is greedy; default 1.0")
    top_p: float | None = Field(None, description="nucleus sampling mass, in (0, 1]")
    seed: int | None = Field(None, description="reproducible sampling (runs the request alone)")
    presence_penalty: float | None = Field(None, description="-2 to 2")
    frequency_penalty: float | None = Field(None, description="-2 to 2")
    logit_bias: dict[str, float] | None = Field(
        None, description="token id (as a string) -> bias added to its logit, -100 to 100")
    stop: str | list[str] | None = Field(
        None, description="up to 4 strings that end the answer (not included in it)")
    # harmony-tui extras (mlx-lm samplers)
    top_k: int | None = Field(None, description="keep the k most likely tokens (0: off)")
    min_p: float | None = Field(None, description="drop tokens below min_p x the top one")
    min_tokens_to_keep: int | None = Field(None, description="tokens min_p always keeps")
    repetition_penalty: float | None = Field(None, description="1 disables")
    repetition_context_size: int | None = Field(None, description="tokens the penalties see")
    xtc_probability: float | None = Field(None, description="XTC sampling probability")
    xtc_threshold: float | None = Field(None, description="XTC threshold")
    # accepted for compatibility, no effect
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


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
    max_tokens: int | None = Field(None, ge=1, description="most tokens to generate")
    max_completion_tokens: int | None = Field(None, ge=1, description="same as max_tokens")
    n: int | None = Field(None, description="only 1 is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | None = Field(None, description="log-probabilities of the answer's tokens")
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = Field(
        None, description="'auto' (default) or 'none'; the model cannot be forced to call")
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
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1, description="most tokens to generate (default 16)")
    n: int | None = None
    best_of: int | None = None
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


class ResponsesRequest(SamplingFields):
    """``POST /v1/responses``: text, reasoning and function calls (stateless)."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[ResponseFunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    reasoning: ReasoningConfig | None = None
    stream: bool = False
    previous_response_id: str | None = None
    text: dict[str, Any] | None = None
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


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


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
