"""Validate a model folder and load it with mlx-lm.

GPT-OSS is recognised by ``config.json``'s ``model_type == "gpt_oss"`` (never by its name) and
gets the Harmony format with openai-harmony's tokenizer; every other architecture mlx-lm supports
gets its own tokenizer and chat template. Quantized weights (affine 4/8-bit, MXFP4) load as mlx-lm
loads them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_tui.engine.formats.base import ChatFormat
from harmony_tui.engine.model_source import Progress, is_named_model, resolve_model_path
from harmony_tui.errors import ModelLoadError

DEFAULT_CONTEXT = 4096
GPT_OSS = "gpt_oss"


@dataclass
class LoadedModel:
    """A model ready for the engine."""

    name: str
    path: Path
    model: Any
    format: ChatFormat
    config: dict[str, Any]
    context_limit: int
    load_seconds: float
    sharding: str | None = None  # "tensor" or "pipeline" when sharded over a distributed group

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def is_gpt_oss(self) -> bool:
        return self.model_type == GPT_OSS


def read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a model folder, with one-line errors."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"model folder {path} has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelLoadError(
            f"{config_file}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{config_file}: cannot read: {err}") from err
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ModelLoadError(f"{config_file}: no model_type field")
    return config


def check_supported(path: Path, config: dict[str, Any]) -> None:
    """Raise unless mlx-lm has an architecture for ``config``."""
    from mlx_lm import __version__ as mlx_lm_version
    from mlx_lm.utils import _get_classes

    try:
        _get_classes(config)
    except ValueError as err:
        raise ModelLoadError(
            f"{path / 'config.json'}: model_type {config['model_type']!r} is not supported by "
            f"mlx-lm {mlx_lm_version}"
        ) from err


def context_limit(path: Path, config: dict[str, Any]) -> int:
    """The model's context window: tokenizer ``model_max_length``, else max position embeddings."""
    limit = None
    tok_config = path / "tokenizer_config.json"
    if tok_config.is_file():
        try:
            value = json.loads(tok_config.read_text(encoding="utf-8")).get("model_max_length")
            if isinstance(value, int) and 0 < value < 10_000_000:
                limit = value
        except (json.JSONDecodeError, OSError, AttributeError):
            pass
    if limit is None:
        text_config = config.get("text_config") or {}
        value = config.get("max_position_embeddings") or text_config.get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            limit = value
    return limit or DEFAULT_CONTEXT


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def load_model(
    spec: str, models_dir: Path | None = None, progress: Progress | None = None
) -> LoadedModel:
    """Resolve, validate and load ``spec``. Call from the engine's generation thread."""
    started = time.perf_counter()
    progress = progress or (lambda message, fraction: None)
    path = resolve_model_path(spec, models_dir, progress)
    config = read_config(path)
    check_supported(path, config)
    if not list(path.glob("model*.safetensors")):
        raise ModelLoadError(f"model folder {path} has no weights (model*.safetensors)")
    name = spec if is_named_model(spec) or not Path(spec).expanduser().is_dir() else path.name
    progress(f"Loading {name}", None)
    from mlx_lm.utils import load_model as mlx_load_model

    from harmony_tui.engine import distributed

    group = distributed.group()
    sharding = None
    try:
        model, config = mlx_load_model(path, lazy=group is not None)
        if group is not None:  # only this rank's shard of the weights is ever read
            import mlx.core as mx

            sharding = distributed.shard(model, group, path.name, config)
            mx.eval(model.parameters())
    except (ModelLoadError, distributed.DistributedError):
        raise
    except Exception as err:  # corrupt or mismatched safetensors
        raise ModelLoadError(f"model {path}: weights could not be loaded: {_first_line(err)}") \
            from err
    from harmony_tui.engine.fast_head import transpose_head

    transpose_head(model)  # CPU only; the same logits, faster (see fast_head.py)
    fmt: ChatFormat
    if config.get("model_type") == GPT_OSS:
        from harmony_tui.engine.formats.harmony import HarmonyFormat

        fmt = HarmonyFormat()
    else:
        fmt = _chat_template_format(path, config)
    return LoadedModel(name, path, model, fmt, config, context_limit(path, config),
                       time.perf_counter() - started, sharding)


def _chat_template_format(path: Path, config: dict[str, Any]) -> ChatFormat:
    from mlx_lm.utils import load_tokenizer

    from harmony_tui.engine.formats.chat_template import ChatTemplateFormat

    try:
        tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    except Exception as err:
        raise ModelLoadError(f"model {path}: tokenizer could not be loaded: {_first_line(err)}") \
            from err
    vocab = int(config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
                or len(tokenizer))
    return ChatTemplateFormat(tokenizer, vocab)
