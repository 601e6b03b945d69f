"""A turn run alone on the generation thread: prefill from the prompt cache, then decode
token by token (or speculatively, with a draft model or prompt lookup), streaming events.

The batched path is ``batch.py``; both share the engine's prompt cache and decoders.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harmony_tui.engine.decode import decode_tokens, prefill
from harmony_tui.engine.events import EndReason, Stats, TokenProgress, TurnEnd, TurnStart
from harmony_tui.engine.kv_quant import (
    KVQuantization,
    KVQuantizer,
    cache_bytes,
    check_model,
    saved_bytes,
)
from harmony_tui.engine.loader import LoadedModel
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.prepare import PreparedPrompt
from harmony_tui.engine.prompt_cache import Snapshot, checkpoint_stops
from harmony_tui.engine.reply import TurnOutput
from harmony_tui.engine.rewind_cache import rewindable
from harmony_tui.engine.sampling import build_logits_processors, build_sampler, check_sampling
from harmony_tui.engine.speculative import (
    LookupDrafter,
    LookupThenModel,
    SpecCounts,
    speculative_tokens,
)
from harmony_tui.engine.turns import TurnRequest, TurnStream
from harmony_tui.errors import HarmonyTuiError

if TYPE_CHECKING:
    from harmony_tui.engine.engine import Engine

PROGRESS_EVERY = 8  # tokens between TokenProgress events


def generate_serial(engine: Engine, request: TurnRequest, stream: TurnStream,
                    prep: PreparedPrompt, partial: list[Any]) -> None:
    """Run one turn alone on the generation thread; ``partial`` receives the decoder so an
    error keeps what was made."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    loaded = prep.loaded
    lockstep = engine.lockstep
    engine.generation_stream()
    fmt, params = loaded.format, request.params
    if params.speculative and lockstep is not None:
        raise HarmonyTuiError("speculative decoding (draft_model, prompt_lookup) is not "
                              "available in a distributed session")
    prompt, limit = prep.prompt, prep.limit
    sampler = build_sampler(params, fmt.vocab_size, fmt.keep_tokens
                            if params.xtc_special_tokens is None
                            else params.xtc_special_tokens)
    processors = build_logits_processors(params, fmt.vocab_size)
    check_sampling(sampler, processors, fmt.vocab_size)
    quant = KVQuantization.of(params)
    check_model(loaded.model, quant)
    quantizer = KVQuantizer(quant)
    cancelled: Callable[[], bool] = lambda: stream.cancelled  # noqa: E731
    stop_flags: collections.deque[Any] = collections.deque()
    if lockstep is not None:  # the leader decides, every rank does the same
        sampler = lockstep.broadcast_sampler(sampler, cancelled, stop_flags)
        cancelled = lockstep.shared_check(cancelled)
    cache, cached = engine.prompt_cache.take(prompt)
    if cache is None:
        cache = make_prompt_cache(loaded.model)
    quantizer.conform(cache)
    stream.put(TurnStart(request.request_id, len(prompt), cached, params))
    trimmed = engine.trimmed(request, prep)
    if trimmed is not None:
        stream.put(trimmed)

    mx.reset_peak_memory()
    started = time.perf_counter()
    snapshots: dict[int, Snapshot] = {}
    stops = checkpoint_stops(fmt, cache, prompt, cached)
    with mx.stream(engine.mlx_stream):
        prefilled = prefill(loaded.model, cache, prompt, cached, engine.prefill_step,
                            stream.put, cancelled, stops, snapshots,
                            quantizer)
    if prefilled < len(prompt) - 1:  # cancelled during prefill: keep what was computed
        if prefilled > 0:
            engine.prompt_cache.store(prompt[:prefilled], cache, snapshots)
        stream.put(TurnEnd("cancelled"))
        return
    if len(prompt) > 1:
        engine.prompt_cache.store(prompt[:-1], cache, snapshots)

    max_new = min(params.max_tokens, limit - len(prompt))
    with_logprobs = request.logprobs is not None
    counts: SpecCounts | None = None
    if params.speculative and max_new > 1:
        counts = SpecCounts()
        drafter = _drafter(engine, params, loaded, prompt, stream)
        if drafter is None:  # cancelled while the draft model read the prompt
            stream.put(TurnEnd("cancelled"))
            return
        cache = rewindable(cache, drafter.most)
        tokens = speculative_tokens(loaded.model, cache, prompt,
                                    sampler, processors, max_new, engine.mlx_stream, drafter,
                                    counts, with_logprobs=with_logprobs,
                                    after_step=quantizer)
    else:
        tokens = decode_tokens(loaded.model, cache, prompt, sampler, processors, max_new,
                               engine.mlx_stream, with_logprobs=with_logprobs,
                               after_step=quantizer)
    prefill_done = time.perf_counter()

    if params.seed is not None:
        mx.random.seed(params.seed)
    decoder = engine.new_decoder(request, loaded, prompt)
    partial.append(decoder)
    output = TurnOutput(decoder, fmt, stream.put, request.stop, request.logprobs)
    reason: EndReason = "length"
    generated = 0
    first_token_at = prefill_done
    try:
        for item in tokens:
            token, logprobs = item if with_logprobs else (item, None)
            if stop_flags and stop_flags.popleft().item():  # rank 0 had cancelled
                reason = "cancelled"
                break
            generated += 1
            if generated == 1:
                first_token_at = time.perf_counter()
            if generated % PROGRESS_EVERY == 1:
                now = time.perf_counter()
                tps = (generated - 1) / (now - first_token_at) if generated > 1 else 0.0
                stream.put(TokenProgress(generated, first_token_at - started, tps))
            ended = output.feed(token, logprobs)
            if ended is not None:
                reason = ended
                break
            if lockstep is None and stream.cancelled:
                reason = "cancelled"
                break
    finally:
        tokens.close()
    messages, tool_calls = output.close()
    ended = time.perf_counter()
    decode_time = ended - first_token_at
    tps = (generated - 1) / decode_time if generated > 1 and decode_time > 0 else 0.0
    speedup = None
    if counts is None:
        if generated > 16:
            engine.plain_tps[id(loaded)] = tps
    elif engine.plain_tps.get(id(loaded)):
        speedup = tps / engine.plain_tps[id(loaded)]
    stream.put(Stats(
        prompt_tokens=len(prompt),
        cached_tokens=cached,
        generation_tokens=generated,
        ttft_s=first_token_at - started,
        prompt_tps=(len(prompt) - cached) / max(prefill_done - started, 1e-9),
        generation_tps=tps,
        peak_memory_gb=mx.get_peak_memory() / 1e9,
        kv_cache_bytes=cache_bytes(cache),
        kv_saved_bytes=saved_bytes(cache),
        draft_tokens=counts.drafted if counts else 0,
        accepted_tokens=counts.accepted if counts else 0,
        verify_steps=counts.steps if counts else 0,
        speedup=speedup,
    ))
    stream.put(TurnEnd(reason, messages, tool_calls=tool_calls))

def _drafter(engine: Engine, params: GenerationParams, loaded: LoadedModel,
             prompt: list[int], stream: TurnStream) -> Any:
    """The turn's drafter (None: cancelled while the draft model prefilled)."""
    lookup = None if params.prompt_lookup is None \
        else LookupDrafter(params.prompt_lookup, prompt)
    if params.draft_model is None:
        return lookup

    def run(model: Any, cache: list[Any], tokens: list[int], start: int,
            stops: list[int], snapshots: dict[int, Snapshot]) -> int:
        import mlx.core as mx

        with mx.stream(engine.mlx_stream):
            return prefill(model, cache, tokens, start, engine.prefill_step, lambda _: None,
                           lambda: stream.cancelled, stops, snapshots)

    drafter = engine.drafts.drafter(params.draft_model, loaded, prompt, params.draft_tokens,
                                  run)
    if drafter is None or lookup is None:
        return drafter
    return LookupThenModel(lookup, drafter)

