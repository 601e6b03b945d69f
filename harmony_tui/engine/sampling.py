"""Turn ``GenerationParams`` into mlx-lm's sampler and logits processors, and keep one turn's
bad sampling setup from hurting any other turn.

Every parameter reaches mlx-lm: temperature, top_p, top_k, min_p (+ min_tokens_to_keep), XTC
(+ the special tokens XTC must never exclude), repetition / presence / frequency penalties
and logit bias. Values beyond what the model can mean are clamped to that meaning:
``top_k`` or ``min_tokens_to_keep`` at or above the vocabulary size keep every token,
``repetition_context_size`` beyond MLX's 32-bit slice range looks at the whole history, and
XTC special tokens outside the vocabulary are ignored.

Why the guards below exist: mlx-lm's samplers are ``mx.compile``d with the global random state
as an implicit input and output. When one raises while it is traced (an invalid ``kth`` for
``argpartition``, say), MLX leaves placeholder arrays without a primitive in
``mx.random.state``, and from then on every unseeded sampling in the thread fails with
"Attempting to eval an array without a primitive". So every call that may fail saves the
random key first and restores it on failure (``restore_random_key``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from harmony_tui.engine.params import MAX_INT32, GenerationParams, describe_error
from harmony_tui.errors import HarmonyTuiError

Sampler = Callable[[Any], Any]
LogitsProcessor = Callable[[Any, Any], Any]

MAX_CONTEXT_WINDOW = MAX_INT32  # MLX slices take 32-bit indices
TRIAL_HISTORY = (0, 1, 2)  # tokens the trial run's penalties look at


def build_sampler(
    params: GenerationParams, vocab_size: int, xtc_special_tokens: Sequence[int] = ()
) -> Sampler:
    """The sampler for ``params`` (see the module docstring for the clamped values)."""
    from mlx_lm.sample_utils import make_sampler

    top_k = params.top_k if 0 < params.top_k < vocab_size else 0
    return make_sampler(
        temp=params.temperature,
        top_p=params.top_p,
        min_p=params.min_p,
        min_tokens_to_keep=max(1, min(params.min_tokens_to_keep, vocab_size)),
        top_k=top_k,
        xtc_probability=params.xtc_probability,
        xtc_threshold=params.xtc_threshold,
        xtc_special_tokens=[t for t in xtc_special_tokens if 0 <= t < vocab_size],
    )


def build_logits_processors(params: GenerationParams, vocab_size: int) -> list[LogitsProcessor]:
    """Penalties and bias; an empty list when none is active."""
    from mlx_lm.sample_utils import make_logits_processors

    bias = None
    if params.logit_bias:
        bias = {t: b for t, b in params.logit_bias.items() if 0 <= t < vocab_size}
        if len(bias) != len(params.logit_bias):
            bad = next(t for t in params.logit_bias if not 0 <= t < vocab_size)
            raise ValueError(
                f"logit_bias token id {bad} is outside the vocabulary (0 to {vocab_size - 1})"
            )
    context = max(1, min(params.repetition_context_size, MAX_CONTEXT_WINDOW))
    return make_logits_processors(
        logit_bias=bias or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
        repetition_context_size=context,
        presence_penalty=params.presence_penalty or None,
        presence_context_size=context,
        frequency_penalty=params.frequency_penalty or None,
        frequency_context_size=context,
    )


class SamplingError(HarmonyTuiError):
    """A turn's sampling setup cannot sample (found by ``check_sampling``)."""

    error_code = "invalid_request"


def check_params(params: GenerationParams) -> None:
    """SamplingError (one line naming the field) for values the schema refuses.

    ``GenerationParams`` validates on construction, but ``model_copy(update=...)`` or
    ``model_construct`` skip that; the engine checks again so that no such value reaches MLX.
    """
    from pydantic import ValidationError

    try:
        GenerationParams.model_validate(params.model_dump())
    except ValidationError as err:
        raise SamplingError(describe_error(err)) from None


# -- the random state ------------------------------------------------------------------------


def random_key() -> Any:
    """The current random key of this thread (a reference; costs nothing)."""
    import mlx.core as mx

    return mx.random.state[0]


def restore_random_key(saved: Any) -> None:
    """Undo what a failed sampler did to the random state: if the current key cannot be
    evaluated, put ``saved`` back (or a fresh random key if ``saved`` is broken too)."""
    import mlx.core as mx

    try:
        mx.eval(mx.random.state[0])
        return
    except Exception:
        pass
    try:
        mx.eval(saved)
        high, low = (int(v) for v in saved.tolist())
        mx.random.seed((high << 32) | low)  # key(seed) is [seed >> 32, seed & 0xffffffff]
    except Exception:
        mx.random.seed(int.from_bytes(os.urandom(8), "little"))


# -- admission and in-step guards ------------------------------------------------------------


def check_sampling(sampler: Sampler | None, processors: Sequence[LogitsProcessor],
                   vocab_size: int) -> None:
    """Run ``processors`` and ``sampler`` once on a dummy logits row, so a setup that cannot
    sample fails its own turn before the turn shares a batch step with others.

    Raises SamplingError with one line; the random state is left as it was on failure.
    """
    import mlx.core as mx

    saved = random_key()
    try:
        logits = mx.zeros((1, vocab_size), dtype=mx.float32)
        history = mx.array(TRIAL_HISTORY, dtype=mx.int32)
        for processor in processors:
            logits = processor(history, logits)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        token = sampler(logprobs) if sampler is not None else mx.argmax(logprobs, axis=-1)
        mx.eval(token, logprobs)
        if token.shape != (1,) or not 0 <= int(token.item()) < vocab_size:
            raise ValueError(f"sampled {token.tolist()} from one row of {vocab_size} logits")
    except Exception as err:
        restore_random_key(saved)
        raise SamplingError(f"these sampling parameters cannot be used: {one_line(err)}") \
            from err


class GuardedSampler:
    """A sampler that records its failure instead of raising inside a batch step.

    Turns with equal sampling parameters share one (mlx-lm then samples them in one call).
    If it raises, the random state is restored, the rows get their greedy token as a
    placeholder, and ``error`` is set: the scheduler ends the turns that use this sampler
    with that error after the step, and every other turn in the step carries on unharmed.
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.error: str | None = None

    def __call__(self, logprobs: Any) -> Any:
        import mlx.core as mx

        saved = random_key()
        try:
            return self.sampler(logprobs)
        except Exception as err:
            restore_random_key(saved)
            self.error = self.error or f"sampling failed: {one_line(err)}"
            return mx.argmax(logprobs, axis=-1)


class ProcessorGuard:
    """Wraps one turn's logits processors; a failure is recorded (``error``) and that
    processor leaves the logits as they were, so the batch step completes for the others."""

    def __init__(self) -> None:
        self.error: str | None = None

    def wrap(self, processors: Sequence[LogitsProcessor]) -> list[LogitsProcessor]:
        return [self._guarded(p) for p in processors]

    def _guarded(self, processor: LogitsProcessor) -> LogitsProcessor:
        def run(tokens: Any, logits: Any) -> Any:
            try:
                return processor(tokens, logits)
            except Exception as err:
                self.error = self.error or f"a logits processor failed: {one_line(err)}"
                return logits

        return run


def one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, cut to about ``limit`` characters."""
    text = " ".join(str(err).split()) or "no details"
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"{type(err).__name__}: {text}"
