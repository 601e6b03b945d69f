"""Continuous batching: many turns share each token step through mlx-lm's ``BatchGenerator``.

The scheduler lives on the engine's generation thread like every other MLX call. A turn handed
to ``BatchScheduler.submit`` arrives with its prompt already prepared (rendered, tokenized and
fitted on a preparation thread, see ``prepare.py``) and waits in a queue; a *drive* job on the
generation thread admits queued turns into the ``BatchGenerator`` (sampler, logits processors,
prompt-cache lookup), advances every running turn by one step, routes each sampled token through
that turn's own decoder, and removes a turn as soon as it ends or is cancelled, so a cancel takes
effect before the next step. Every turn has its own sampler, logits processors, stop strings and
KV cache rows: no turn sees another's tokens.

When a serial job (a ``submit`` turn, a model load) is waiting on the generation thread, the
drive job re-queues itself behind it after the current step, so serial work never starves and
the batch resumes afterwards. Turns that cannot batch (a ``seed``, which needs the global random
state to itself, speculative decoding, whose steps verify several tokens of one turn, or a
model whose caches cannot merge) run alone, in arrival order, between batch steps.

One request can never hurt another, in three layers:

1. Admission: a turn's sampler and logits processors are built and trial-run on a dummy logits
   row (``check_sampling``) before the turn joins the batch; a setup that cannot sample ends
   that turn with its own error and never enters a shared step.
2. Attribution inside a step: each turn's processors and each shared sampler are wrapped in
   guards (``ProcessorGuard``, ``GuardedSampler``) that record a failure instead of raising, so
   the step completes for everyone; after the step the turns whose guard fired end with their
   own error. The same holds for a turn's decoder (``_feed``) and its closing.
3. A failure no turn can be blamed for (the model, memory, a bug): the random state is restored,
   every running turn ends with a generic error that names no other request's values, and the
   generator and the sampler cache are dropped, so the next turn starts from a clean engine.
   (Retrying the step without a suspect is not attempted: a failed step leaves the shared
   batch caches half advanced, and with nobody to blame there is no suspect to leave out.)
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from harmony_tui.engine.distributed import insert_command, is_peer_lost
from harmony_tui.engine.events import (
    ContextTrimmed,
    EndReason,
    PromptProgress,
    Stats,
    TokenProgress,
    TurnEnd,
    TurnStart,
)
from harmony_tui.engine.kv_quant import KVQuantization, KVQuantizer, check_model, saved_bytes
from harmony_tui.engine.prompt_cache import Snapshot, checkpoint_stops, snapshot
from harmony_tui.engine.reply import TurnOutput
from harmony_tui.engine.sampling import (
    GuardedSampler,
    ProcessorGuard,
    build_logits_processors,
    build_sampler,
    check_sampling,
    one_line,
    random_key,
    restore_random_key,
)
from harmony_tui.engine.turns import TurnRequest, TurnStream, error_code
from harmony_tui.errors import HarmonyTuiError

if TYPE_CHECKING:
    from harmony_tui.engine.loader import LoadedModel
    from harmony_tui.engine.prepare import PreparedPrompt

MAX_BATCH = 16  # turns decoded together; more wait inside the generator
PREFILL_BATCH = 4  # prompts prefilled together
PROGRESS_EVERY = 8
STEP_FAILED = ("generation failed in a step shared with other requests (the server log has the "
               "details); the engine was reset: retry the request")
log = logging.getLogger("harmony_tui.engine")


def _fatal(err: BaseException) -> bool:
    """Exceptions that must stop the thread's job rather than fail one turn."""
    return isinstance(err, KeyboardInterrupt | SystemExit)


def can_batch(loaded: LoadedModel) -> bool:
    """Whether the model's caches can be merged into batch caches (generation thread)."""
    cached = getattr(loaded, "_harmony_tui_batchable", None)
    if cached is None:
        from mlx_lm.models.cache import make_prompt_cache

        cached = all(hasattr(c, "merge") for c in make_prompt_cache(loaded.model))
        loaded._harmony_tui_batchable = cached  # type: ignore[attr-defined]
    return bool(cached)


def sampler_key(params: Any) -> tuple[Any, ...]:
    """Parameters that define a sampler: turns with equal keys share one (a batched call)."""
    return (params.temperature, params.top_p, params.top_k, params.min_p,
            params.min_tokens_to_keep, params.xtc_probability, params.xtc_threshold,
            params.xtc_special_tokens)


@dataclass
class _Turn:
    """One admitted turn's bookkeeping."""

    request: TurnRequest
    stream: TurnStream
    prompt: list[int]
    cached: int
    output: TurnOutput
    started: float
    segment_ends: list[int]  # prompt positions where the prefill segments end, in order
    sampler: GuardedSampler
    guard: ProcessorGuard
    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    prefill_done: float = 0.0
    first_token_at: float = 0.0
    generated: int = 0
    in_generator: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        """What went wrong with this turn's own sampling in the last step, if anything."""
        return self.sampler.error or self.guard.error


Pending = tuple["TurnRequest", "TurnStream", "Future[PreparedPrompt | None]"]


class BatchHost(Protocol):
    """What the scheduler needs from its engine (``Engine`` provides it)."""

    model: LoadedModel | None
    prefill_step: int
    prompt_cache: Any  # PromptCacheStore
    _worker: Any  # GenerationWorker
    lockstep: Any  # distributed.Lockstep, or None in a single process

    def generation_stream(self) -> Any: ...

    def take_prepared(self, request: TurnRequest, stream: TurnStream,
                      prepared: Future[PreparedPrompt | None],
                      resubmit: Any) -> PreparedPrompt | None: ...

    def run_prepared(self, request: TurnRequest, stream: TurnStream,
                     prep: PreparedPrompt) -> None: ...

    def new_decoder(self, request: TurnRequest, loaded: LoadedModel,
                    prompt: Any) -> Any: ...

    def end_turn(self, stream: TurnStream, event: TurnEnd) -> None: ...

    def trimmed(self, request: TurnRequest, prep: PreparedPrompt) -> ContextTrimmed | None: ...


class BatchScheduler:
    """Admits turns into an mlx-lm ``BatchGenerator`` and drives it on the generation thread."""

    def __init__(self, engine: BatchHost, max_batch: int = MAX_BATCH,
                 prefill_batch: int = PREFILL_BATCH) -> None:
        self._engine = engine
        self.max_batch = max_batch
        self.prefill_batch = prefill_batch
        self._lock = threading.Lock()
        self._pending: collections.deque[Pending] = collections.deque()
        self._scheduled = False
        # generation thread only:
        self._generator: Any = None
        self._generator_model: LoadedModel | None = None
        self._turns: dict[int, _Turn] = {}
        self._samplers: dict[tuple[Any, ...], GuardedSampler] = {}
        self.peak_batch = 0  # the most turns decoded together so far

    # -- any thread ---------------------------------------------------------------------------

    def submit(self, request: TurnRequest, stream: TurnStream,
               prepared: Future[PreparedPrompt | None]) -> None:
        """Queue a turn whose preparation is done; the drive job admits it before its next
        step."""
        with self._lock:
            self._pending.append((request, stream, prepared))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._engine._worker.submit(self._drive)
        except BaseException:
            with self._lock:
                self._scheduled = False
            raise

    @property
    def running(self) -> int:
        """Turns admitted into the generator and not yet ended."""
        return len(self._turns)

    # -- generation thread ----------------------------------------------------------------------

    def release(self) -> None:
        """Drop the generator (and its model) when no turn is running."""
        if not self._turns:
            self._close_generator()

    def _drive(self) -> None:
        try:
            while True:
                self._admit()
                if not self._turns:
                    with self._lock:
                        if not self._pending:
                            self._scheduled = False
                            self._drop_generator_if_stale()
                            return
                    continue
                self._step()
                if self._others_waiting():
                    self._engine._worker.submit(self._drive)  # after the serial job, resume
                    return
        except BaseException as err:  # never leave turns hanging, never kill the thread
            log.error("the batch drive failed: %s", one_line(err), exc_info=err)
            self._fail_all(STEP_FAILED)
            with self._lock:
                self._scheduled = False
            if _fatal(err):
                raise
            with self._lock:  # turns still queued get their own chance
                if self._pending and not self._scheduled:
                    self._scheduled = True
                    self._engine._worker.submit(self._drive)

    def _others_waiting(self) -> bool:
        # The worker's FIFO is private to worker.py; reading its size is safe (queue.Queue).
        return not self._engine._worker._jobs.empty()

    def _drop_generator_if_stale(self) -> None:
        if self._generator is not None and self._generator_model is not self._engine.model:
            self._close_generator()

    def _close_generator(self) -> None:
        generator, self._generator = self._generator, None
        self._generator_model = None
        self._samplers.clear()
        if generator is not None:
            try:
                generator.close()
            except Exception as err:  # a generator whose last step failed: drop it anyway
                log.warning("closing the batch generator failed: %s", one_line(err))

    def _ensure_generator(self, loaded: LoadedModel) -> Any:
        if self._generator is not None and self._generator_model is loaded:
            return self._generator
        from mlx_lm.generate import BatchGenerator

        self._close_generator()
        engine = self._engine
        self._generator = BatchGenerator(
            loaded.model,
            stop_tokens=[[t] for t in sorted(loaded.format.stop_tokens)],
            completion_batch_size=self.max_batch,
            prefill_batch_size=self.prefill_batch,
            prefill_step_size=engine.prefill_step,
            stream=engine.generation_stream(),
        )
        self._generator_model = loaded
        return self._generator

    def _admit(self) -> None:
        """Move queued turns into the generator (or run the ones that cannot batch)."""
        engine = self._engine
        while True:
            with self._lock:
                if not self._pending:
                    return
                if self._turns and engine.model is not self._generator_model:
                    return  # a new model: let the old batch finish first
                request, stream, prepared = self._pending.popleft()
            prep = engine.take_prepared(
                request, stream, prepared,
                lambda again, r=request, s=stream: self.submit(r, s, again))
            if prep is None:
                continue
            if request.params.seed is not None or request.params.speculative \
                    or not can_batch(prep.loaded):
                engine.run_prepared(request, stream, prep)  # alone, in arrival order
                continue
            self.admit_prepared(request, stream, prep)

    def admit_prepared(self, request: TurnRequest, stream: TurnStream,
                       prep: PreparedPrompt) -> None:
        """Admit one prepared turn into the batch (a follower rank of distributed.py: the turn
        rank 0 has just admitted); a turn it refuses ends with its own error."""
        saved = random_key()
        try:
            self._insert(request, stream, prep)
        except HarmonyTuiError as err:
            self._end(stream, TurnEnd("error", error=str(err), error_code=error_code(err)))
        except BaseException as err:  # e.g. the generator refused the prompt
            if _fatal(err):
                raise
            restore_random_key(saved)
            self._end(stream, TurnEnd("error", error=one_line(err)))

    # -- a follower rank (distributed.py): rank 0's admissions and steps, repeated -------------

    def follow_step(self) -> None:
        """Run the step rank 0 runs (its endings are shared inside ``_step``)."""
        if self._generator is None:
            return
        try:
            self._step()
        except BaseException as err:
            if _fatal(err):
                raise
            log.error("a followed batch step failed: %s", one_line(err), exc_info=err)
            self._fail_all(STEP_FAILED)

    def _insert(self, request: TurnRequest, stream: TurnStream, prep: PreparedPrompt) -> None:
        """Admit one prepared turn: its sampling is checked before it may share a step."""
        from mlx_lm.models.cache import make_prompt_cache

        engine = self._engine
        lockstep = engine.lockstep
        if lockstep is not None and lockstep.leader:  # the followers insert it too
            lockstep.command(insert_command(request, prep))
        loaded, params = prep.loaded, request.params
        fmt, prompt, limit = loaded.format, prep.prompt, prep.limit
        key = sampler_key(params)
        sampler = self._samplers.get(key)
        raw = None
        if sampler is None:
            keep = fmt.keep_tokens if params.xtc_special_tokens is None \
                else params.xtc_special_tokens
            raw = build_sampler(params, fmt.vocab_size, keep)
        processors = build_logits_processors(params, fmt.vocab_size)
        if raw is not None or processors:
            check_sampling(raw, processors, fmt.vocab_size)
        if sampler is None:
            sampler = GuardedSampler(raw if lockstep is None
                                     else lockstep.broadcast_sampler(raw))
        guard = ProcessorGuard()
        decoder = engine.new_decoder(request, loaded, prompt)
        generator = self._ensure_generator(loaded)
        quant = KVQuantization.of(params)
        check_model(loaded.model, quant)
        self._samplers[key] = sampler
        cache, cached = engine.prompt_cache.take(prompt)
        if cache is None:
            cache = make_prompt_cache(loaded.model)
        KVQuantizer(None).conform(cache)  # the batch runs at full precision (mlx-lm's caches)
        # Prefill in segments ending where the prompt cache checkpoints, the last at the end.
        ends = [*checkpoint_stops(fmt, cache, prompt, cached), len(prompt) - 1]
        segments, begin = [], cached
        for end in ends:
            if end > begin:
                segments.append(prompt[begin:end])
                begin = end
        segment_ends = list(itertools.accumulate([cached, *map(len, segments)]))[1:]
        stream.put(TurnStart(request.request_id, len(prompt), cached, params))
        trimmed = engine.trimmed(request, prep)
        if trimmed is not None:
            stream.put(trimmed)
        stream.put(PromptProgress(cached, len(prompt)))
        now = time.perf_counter()
        output = TurnOutput(decoder, fmt, stream.put, request.stop, request.logprobs)
        max_new = min(params.max_tokens, limit - len(prompt))
        turn = _Turn(request, stream, prompt, cached, output, now, segment_ends,
                     sampler=sampler, guard=guard)
        if max_new <= 0:
            turn.in_generator = False
            self._finish(turn, "length")
            return
        (uid,) = generator.insert_segments(
            [[*segments, prompt[-1:]]], max_tokens=[max_new], caches=[cache],
            all_tokens=[list(prompt[:cached])], samplers=[sampler],
            logits_processors=[guard.wrap(processors)],
        )
        self._turns[uid] = turn

    def _step(self) -> None:
        """One generator step: prefill progress, checkpoints, one token per running turn."""
        generator = self._generator
        lockstep = self._engine.lockstep
        if lockstep is not None and lockstep.leader:
            lockstep.command(("step",))
        saved = random_key()
        try:
            prompt_responses, generation_responses = generator.next()
        except BaseException as err:
            if _fatal(err):
                raise
            if lockstep is not None and is_peer_lost(err):
                lockstep.lost(err)
            restore_random_key(saved)
            log.error("a batched generation step failed: %s", one_line(err), exc_info=err)
            self._fail_all(STEP_FAILED)
            return
        now = time.perf_counter()
        for response in prompt_responses:
            turn = self._turns.get(response.uid)
            if turn is None:
                continue
            turn.stream.put(PromptProgress(turn.cached + response.progress[0], len(turn.prompt)))
            if response.end_of_segment and not response.end_of_prompt and turn.segment_ends:
                self._checkpoint(turn, response.uid, turn.segment_ends.pop(0), now)
        ended: dict[int, tuple[EndReason, str | None]] = {}
        self.peak_batch = max(self.peak_batch, len(generation_responses))
        for response in generation_responses:
            turn = self._turns.get(response.uid)
            if turn is None:
                continue
            try:
                reason = self._feed(turn, response.token, response.logprobs, now)
            except Exception as err:  # this turn's decoder failed: only this turn ends
                ended[response.uid] = ("error", f"decoding failed: {one_line(err)}")
                continue
            if response.finish_reason is not None:
                turn.in_generator = False
                if reason is None:
                    reason = "length" if response.finish_reason == "length" else "return"
            if reason is None and turn.stream.cancelled:
                reason = "cancelled"
            if reason is not None:
                ended[response.uid] = (reason, None)
        for uid, turn in self._turns.items():
            if uid in ended:
                continue
            if turn.error is not None:  # its own sampler or processors failed in this step
                ended[uid] = ("error", turn.error)
            elif turn.stream.cancelled:
                ended[uid] = ("cancelled", None)
        if lockstep is not None:  # rank 0's endings (cancels above all) hold on every rank
            ended = lockstep.share(ended if lockstep.leader else None)
        for key in [k for k, sampler in self._samplers.items() if sampler.error]:
            del self._samplers[key]  # its turns end now; a later turn builds a fresh one
        removable = [uid for uid in ended if self._turns[uid].in_generator]
        if removable:
            generator.remove(removable)
        for uid, (reason, error) in ended.items():
            self._finish(self._turns.pop(uid), reason, error)

    def _checkpoint(self, turn: _Turn, uid: int, position: int, now: float) -> None:
        """A prefill segment of ``turn`` ended at ``position``: snapshot its cache there, or
        (at the end of the prompt) hand the whole cache and the snapshots to the prompt cache.

        Extracting copies lazily: the full-attention layers of a mid-prompt extraction are
        dropped unevaluated, so they cost nothing.
        """
        extracted = self._generator.extract_cache([uid]).get(uid)
        if extracted is None:
            return
        if position < len(turn.prompt) - 1:
            turn.snapshots[position] = snapshot(extracted[0])
            return
        cache = extracted[0]
        KVQuantizer(KVQuantization.of(turn.request.params))(cache)  # checkpoints as asked
        turn.extra["kv_saved_bytes"] = saved_bytes(cache)
        self._engine.prompt_cache.store(turn.prompt[:-1], cache, turn.snapshots)
        turn.prefill_done = now

    def _feed(self, turn: _Turn, token: int, logprobs: Any, now: float) -> EndReason | None:
        turn.generated += 1
        if turn.generated == 1:
            turn.first_token_at = now
            if not turn.prefill_done:
                turn.prefill_done = now
        if turn.generated % PROGRESS_EVERY == 1:
            tps = ((turn.generated - 1) / (now - turn.first_token_at)
                   if turn.generated > 1 and now > turn.first_token_at else 0.0)
            turn.stream.put(TokenProgress(turn.generated, turn.first_token_at - turn.started, tps))
        return turn.output.feed(token, logprobs if turn.request.logprobs is not None else None)

    def _finish(self, turn: _Turn, reason: EndReason, error: str | None = None) -> None:
        import mlx.core as mx

        try:
            messages, tool_calls = turn.output.close()
        except Exception as err:  # the decoder failed while flushing: keep what it has
            messages, tool_calls = tuple(turn.output.decoder.messages), ()
            reason, error = "error", error or f"decoding failed: {one_line(err)}"
        ended = time.perf_counter()
        first = turn.first_token_at or ended
        prefill_done = turn.prefill_done or first
        decode_time = ended - first
        prompt_time = max(prefill_done - turn.started, 1e-9)
        turn.stream.put(Stats(
            prompt_tokens=len(turn.prompt),
            cached_tokens=turn.cached,
            generation_tokens=turn.generated,
            ttft_s=first - turn.started,
            prompt_tps=(len(turn.prompt) - turn.cached) / prompt_time,
            generation_tps=(turn.generated - 1) / decode_time
            if turn.generated > 1 and decode_time > 0 else 0.0,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
            kv_saved_bytes=turn.extra.get("kv_saved_bytes", 0),
        ))
        self._end(turn.stream, TurnEnd(reason, messages, tool_calls=tool_calls, error=error))

    def _end(self, stream: TurnStream, event: TurnEnd) -> None:
        self._engine.end_turn(stream, event)

    def _fail_all(self, error: str) -> None:
        """End every running turn with ``error`` and drop the generator and its samplers."""
        turns, self._turns = list(self._turns.values()), {}
        for turn in turns:
            try:
                messages = tuple(turn.output.decoder.messages)
            except Exception:
                messages = ()
            self._end(turn.stream, TurnEnd("error", messages, error=error))
        self._close_generator()
