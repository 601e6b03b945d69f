"""Generation parameters: one pydantic schema drives validation, CLI flags, configs and the UI.

Each field's ``json_schema_extra`` carries ``step`` (the +/- increment in the sidebar) and
``cli`` (whether it is a shared command-line flag).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from harmony_tui.errors import short_repr

ReasoningEffort = Literal["low", "medium", "high"]
MAX_INT32 = 2**31 - 1  # MLX indexes with 32-bit integers
MAX_SEED = 2**64 - 1  # MLX seeds are unsigned 64-bit
KV_BITS = (2, 3, 4, 5, 6, 8)  # what mx.quantize packs
KV_GROUP_SIZES = (32, 64, 128)


def _extra(step: float | int | None = None, cli: bool = True) -> dict[str, Any]:
    return {"step": step, "cli": cli}


class GenerationParams(BaseModel):
    """Sampling and length settings for one turn. Defaults follow OpenAI's gpt-oss advice."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    temperature: float = Field(
        1.0, ge=0.0, le=5.0, json_schema_extra=_extra(0.05),
        description="Softmax temperature; 0 picks the most likely token (greedy).",
    )
    top_p: float = Field(
        1.0, gt=0.0, le=1.0, json_schema_extra=_extra(0.05),
        description="Nucleus sampling: keep the smallest set of tokens whose mass reaches top_p "
        "(1 disables).",
    )
    top_k: int = Field(
        0, ge=0, json_schema_extra=_extra(1),
        description="Keep only the k most likely tokens (0 disables).",
    )
    min_p: float = Field(
        0.0, ge=0.0, le=1.0, json_schema_extra=_extra(0.01),
        description="Drop tokens less likely than min_p times the top token (0 disables).",
    )
    min_tokens_to_keep: int = Field(
        1, ge=1, json_schema_extra=_extra(1),
        description="Tokens that min_p filtering always keeps.",
    )
    xtc_probability: float = Field(
        0.0, ge=0.0, le=1.0, json_schema_extra=_extra(0.05),
        description="XTC: chance per token of excluding the top choices (0 disables).",
    )
    xtc_threshold: float = Field(
        0.1, ge=0.0, le=0.5, json_schema_extra=_extra(0.01),
        description="XTC: tokens above this probability are candidates for exclusion.",
    )
    xtc_special_tokens: tuple[int, ...] | None = Field(
        None, json_schema_extra=_extra(None, cli=False),
        description="Token ids XTC never excludes (default: the model's newline and end "
        "tokens).",
    )
    repetition_penalty: float = Field(
        1.0, gt=0.0, le=10.0, json_schema_extra=_extra(0.05),
        description="Divide the logits of recently seen tokens by this (1 disables).",
    )
    repetition_context_size: int = Field(
        20, ge=1, le=MAX_INT32, json_schema_extra=_extra(1),
        description="How many recent tokens the repetition penalty looks at.",
    )
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, json_schema_extra=_extra(0.1, cli=False),
        description="Subtract this from the logit of every recently seen token.",
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, json_schema_extra=_extra(0.1, cli=False),
        description="Subtract this times the count of each recently seen token.",
    )
    logit_bias: dict[int, float] | None = Field(
        None, json_schema_extra=_extra(None, cli=False),
        description="Token id -> value added to its logit.",
    )
    max_tokens: int = Field(
        4096, ge=1, json_schema_extra=_extra(256),
        description="Most tokens to generate in one turn.",
    )
    max_context_tokens: int | None = Field(
        None, ge=16, json_schema_extra=_extra(1024),
        description="Context window; the oldest turns are dropped to fit (default: the model's).",
    )
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, json_schema_extra=_extra(1),
        description="Random seed for reproducible sampling (none: random).",
    )
    reasoning_effort: ReasoningEffort = Field(
        "medium", json_schema_extra=_extra(None),
        description="How much the model should think (GPT-OSS): low, medium or high.",
    )
    kv_bits: int | None = Field(
        None, json_schema_extra=_extra(None),
        description="Quantize the KV cache of the full-attention layers to this many bits "
        "(2, 3, 4, 5, 6 or 8; none: full precision).",
    )
    kv_group_size: int = Field(
        64, json_schema_extra=_extra(None),
        description="Values sharing one scale in the quantized KV cache (32, 64 or 128).",
    )
    quantized_kv_start: int = Field(
        5000, ge=0, le=MAX_INT32, json_schema_extra=_extra(None),
        description="With kv_bits, quantize a layer's KV cache once it holds this many tokens.",
    )

    draft_model: str | None = Field(
        None, min_length=1, json_schema_extra={**_extra(None), "metavar": "MODEL"},
        description="Speculative decoding with this small model drafting: a folder or name "
        "whose tokenizer is the model's (none: off).",
    )
    draft_tokens: int = Field(
        3, ge=1, le=32, json_schema_extra=_extra(None),
        description="With draft_model, tokens the draft model proposes per step.",
    )
    prompt_lookup: int | None = Field(
        None, ge=1, le=64, json_schema_extra={**_extra(None), "metavar": "N"},
        description="Speculative decoding from the context: propose up to N tokens that "
        "followed the context's last words where they occurred before (with draft_model: "
        "first, the draft model drafting when nothing matches; none: off).",
    )

    @property
    def speculative(self) -> bool:
        """Whether turns with these settings decode speculatively."""
        return self.draft_model is not None or self.prompt_lookup is not None

    @field_validator("xtc_special_tokens")
    @classmethod
    def _token_ids(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        bad = next((t for t in value or () if t < 0), None)
        if bad is not None:
            raise ValueError(f"token id {bad} must be >= 0")
        return value

    @field_validator("kv_bits")
    @classmethod
    def _kv_bits(cls, value: int | None) -> int | None:
        if value is not None and value not in KV_BITS:
            raise ValueError(f"must be one of {', '.join(map(str, KV_BITS))} (or none)")
        return value

    @field_validator("kv_group_size")
    @classmethod
    def _kv_group_size(cls, value: int) -> int:
        if value not in KV_GROUP_SIZES:
            raise ValueError(f"must be one of {', '.join(map(str, KV_GROUP_SIZES))}")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        if value:
            for token, bias in value.items():
                if token < 0:
                    raise ValueError(f"token id {token} must be >= 0")
                if not -100.0 <= bias <= 100.0:
                    raise ValueError(f"bias {bias} for token {token} must be within [-100, 100]")
        return value

    def updated(self, **changes: Any) -> GenerationParams:
        """A validated copy with ``changes`` applied (None values are ignored)."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return GenerationParams.model_validate(data)


def cli_fields() -> dict[str, Any]:
    """The fields exposed as shared command-line flags, in declaration order."""
    return {
        name: info
        for name, info in GenerationParams.model_fields.items()
        if (info.json_schema_extra or {}).get("cli", False)
    }


def describe_error(err: ValidationError, source: str = "") -> str:
    """One line naming the field, the value and what is allowed."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "value"
    value = first.get("input")
    where = f"{source}: " if source else ""
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"{where}{loc}={short_repr(value)}: {msg.lower()}"
