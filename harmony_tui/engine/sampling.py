"""Turn ``GenerationParams`` into mlx-lm's sampler and logits processors.

Every parameter reaches mlx-lm: temperature, top_p, top_k, min_p (+ min_tokens_to_keep), XTC
(+ the special tokens XTC must never exclude), repetition / presence / frequency penalties
and logit bias.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harmony_tui.engine.params import GenerationParams

Sampler = Callable[[Any], Any]
LogitsProcessor = Callable[[Any, Any], Any]


def build_sampler(
    params: GenerationParams, vocab_size: int, xtc_special_tokens: Sequence[int] = ()
) -> Sampler:
    """The sampler for ``params``; ``top_k`` at or above the vocabulary size disables top-k."""
    from mlx_lm.sample_utils import make_sampler

    top_k = params.top_k if 0 < params.top_k < vocab_size else 0
    return make_sampler(
        temp=params.temperature,
        top_p=params.top_p,
        min_p=params.min_p,
        min_tokens_to_keep=params.min_tokens_to_keep,
        top_k=top_k,
        xtc_probability=params.xtc_probability,
        xtc_threshold=params.xtc_threshold,
        xtc_special_tokens=list(xtc_special_tokens),
    )


def build_logits_processors(params: GenerationParams, vocab_size: int) -> list[LogitsProcessor]:
    """Penalties and bias; an empty list when none is active."""
    from mlx_lm.sample_utils import make_logits_processors

    bias = None
    if params.logit_bias:
        bias = {t: b for t, b in params.logit_bias.items() if t < vocab_size}
        if len(bias) != len(params.logit_bias):
            bad = next(t for t in params.logit_bias if t >= vocab_size)
            raise ValueError(
                f"logit_bias token id {bad} is outside the vocabulary (< {vocab_size})"
            )
    return make_logits_processors(
        logit_bias=bias or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
        repetition_context_size=params.repetition_context_size,
        presence_penalty=params.presence_penalty or None,
        presence_context_size=params.repetition_context_size,
        frequency_penalty=params.frequency_penalty or None,
        frequency_context_size=params.repetition_context_size,
    )
