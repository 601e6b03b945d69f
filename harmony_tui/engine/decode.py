"""The serial path's two MLX loops: chunked prefill and the token loop (generation thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from harmony_tui.engine.events import PromptProgress
from harmony_tui.engine.prompt_cache import Snapshot, snapshot

CacheHook = Callable[[list[Any]], None]
"""Called with the cache after each prefill chunk and token step (e.g. ``KVQuantizer``)."""


def prefill(model: Any, cache: list[Any], prompt: Sequence[int], start: int, step: int,
            put: Callable[[Any], None], cancelled: Callable[[], bool],
            stops: Sequence[int] = (), snapshots: dict[int, Snapshot] | None = None,
            after_chunk: CacheHook | None = None) -> int:
    """Run ``prompt[start:-1]`` through the model in chunks of ``step``; returns tokens now
    cached (fewer when ``cancelled()`` turned true).

    Chunks also end at ``stops`` (ascending positions), where the cache's unshareable layers
    are snapshotted into ``snapshots`` for the prompt cache. ``put`` receives PromptProgress.
    """
    import mlx.core as mx

    end = len(prompt) - 1
    done = start
    pending = [p for p in stops if start < p < end]
    put(PromptProgress(done, len(prompt)))
    while done < end:
        if cancelled():
            return done
        stop = min(done + step, end, *pending[:1])
        chunk = prompt[done:stop]
        model(mx.array(chunk)[None], cache=cache)
        if after_chunk is not None:
            after_chunk(cache)
        mx.eval([c.state for c in cache])
        done += len(chunk)
        if pending and done == pending[0]:
            pending.pop(0)
            if snapshots is not None:
                snapshots[done] = snapshot(cache)
        put(PromptProgress(done, len(prompt)))
    return done


def decode_tokens(model: Any, cache: list[Any], prompt: Sequence[int], sampler: Any,
                  processors: list[Any], max_tokens: int, stream: Any,
                  with_logprobs: bool = False,
                  after_step: CacheHook | None = None) -> Iterator[Any]:
    """Yield up to ``max_tokens`` token ids after ``prompt``, whose last token is not yet cached.

    Mirrors mlx-lm's ``generate_step``: the next step is queued with ``async_eval`` before the
    current token is handed out, so Python work overlaps the model. Penalty processors see the
    prompt and the generated tokens, as in mlx-lm. With ``with_logprobs`` it yields
    ``(token, logprobs)`` pairs, ``logprobs`` being the normalised MLX row the token was sampled
    from.
    """
    import mlx.core as mx

    history = mx.array(prompt[:-1], dtype=mx.int32) if processors else None

    def step(y: Any) -> Any:
        nonlocal history
        logits = model(y[None], cache=cache)[:, -1, :]
        if after_step is not None:
            after_step(cache)
        if processors:
            history = mx.concatenate([history, y]) if history is not None else y
            for processor in processors:
                logits = processor(history, logits)
        logprobs = logits - mx.logsumexp(logits, keepdims=True)
        return sampler(logprobs), logprobs

    if max_tokens <= 0:
        return
    with mx.stream(stream):
        y, lp = step(mx.array(prompt[-1:], dtype=mx.int32))
        mx.async_eval(y, lp)
        n = 0
        while True:
            if n + 1 < max_tokens:
                next_y, next_lp = step(y)
                mx.async_eval(next_y, next_lp)
            yield (int(y.item()), lp) if with_logprobs else int(y.item())
            n += 1
            if n >= max_tokens:
                return
            if n % 256 == 0:
                mx.clear_cache()
            y, lp = next_y, next_lp
