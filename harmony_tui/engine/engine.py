"""The engine: the generation thread owns every MLX call; callers get typed events.

``Engine.load`` and ``Engine.submit`` queue jobs for the thread. A submitted turn returns a
``TurnStream`` that the caller reads from any thread (blocking ``get``, non-blocking ``drain``,
iteration, or ``result()`` for the whole reply) and can ``cancel()``; cancellation is checked
before every token step and between prefill chunks.

A turn's prompt is rendered and fitted to the context on a preparation thread (or a child
process for costly prompts, see ``prepare.py``) before the turn reaches the generation thread.
Whatever one turn does wrong (a prompt the tokenizer cannot take, sampling values that cannot
sample) ends that turn with its own error; the engine's state (random state, prompt cache,
batch) stays healthy for every other turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from harmony_tui.engine import distributed
from harmony_tui.engine.context import TrimNotices
from harmony_tui.engine.drafts import DraftModels
from harmony_tui.engine.events import (
    ContextTrimmed,
    Event,
    TurnEnd,
)
from harmony_tui.engine.loader import LoadedModel, load_model
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.model_source import Progress
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.prepare import PreparedPrompt, PromptPreparer
from harmony_tui.engine.prompt_cache import PromptCacheStore
from harmony_tui.engine.reply import RawDecoder, Reply
from harmony_tui.engine.sampling import (
    one_line,
    random_key,
    restore_random_key,
)
from harmony_tui.engine.turns import (  # TurnRequest, TurnStream: also imported from here
    TurnRequest,
    TurnStream,
    error_code,
)
from harmony_tui.engine.worker import generation_worker
from harmony_tui.errors import HarmonyTuiError

PREFILL_STEP = 512


class Engine:
    """Loads models and generates turns on a single background thread."""

    def __init__(self, models_dir: Path | None = None, prefill_step: int = PREFILL_STEP) -> None:
        self.models_dir = models_dir
        self.prefill_step = prefill_step
        self.model: LoadedModel | None = None
        self.prompt_cache = PromptCacheStore()
        self.trim_notices = TrimNotices()
        self._worker = generation_worker()
        self._active: set[TurnStream] = set()
        self._active_lock = threading.Lock()
        self.mlx_stream: Any = None  # the generation thread's MLX stream (generation_stream)
        self._closed = False
        self._batch: Any = None  # BatchScheduler, made on first submit_batched
        self.drafts = DraftModels(models_dir)
        self.plain_tps: dict[int, float] = {}  # id(loaded model) -> its last plain decode speed
        self._preparer = PromptPreparer()
        self._worker.add_cancel_hook(self.cancel_all)
        # MLX distributed (rank 0 leads, the others follow; see distributed.py), else None
        self.lockstep = distributed.lockstep()

    # -- public API ---------------------------------------------------------------------------

    @classmethod
    def start(cls, model: str = "demo", *, models_dir: Path | None = None,
              progress: Progress | None = None) -> Engine:
        """An engine with ``model`` loaded (blocks until loaded; raises ModelLoadError)."""
        engine = cls(models_dir=models_dir)
        try:
            engine.load(model, progress).result()
        except BaseException:
            engine.close()
            raise
        return engine

    def load(self, spec: str, progress: Progress | None = None) -> Future[LoadedModel]:
        """Load ``spec`` on the generation thread, replacing the current model when it succeeds."""
        future: Future[LoadedModel] = Future()

        def guarded(message: str, fraction: float | None) -> None:
            if self._closed:  # stop a long build or unpack when the engine goes away
                raise HarmonyTuiError(f"loading {spec} was cancelled")
            if progress is not None:
                progress(message, fraction)

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                if self.lockstep is not None and self.model is not None:
                    raise HarmonyTuiError("a distributed session keeps the model it started "
                                          f"with ({self.model.name}); restart every rank to "
                                          "change it")
                loaded = load_model(spec, self.models_dir, guarded)
                if self.lockstep is not None:
                    self.lockstep.check_same_model(loaded)
            except BaseException as err:
                future.set_exception(err)
                return
            self.model = loaded
            self.prompt_cache.clear()
            self.plain_tps.clear()
            if self.lockstep is not None:
                self.lockstep.start_heartbeat(self._worker)
            future.set_result(loaded)

        self._put(job)
        return future

    def load_draft(self, spec: str) -> Future[LoadedModel]:
        """Load the draft model ``spec`` now (turns load it when they first need it) and check
        it against the current model; the future raises DraftModelError with one line."""
        return self._job(lambda: self.drafts.get(spec, self._require_model()))

    def submit(self, request: TurnRequest,
               notify: Callable[[Event], None] | None = None) -> TurnStream:
        """Queue a turn; its events arrive on the returned stream (and ``notify``, if given)."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        stream = TurnStream(request.request_id, notify)
        stream.on_end = self._discard  # a reader that sees the end never finds it active
        with self._active_lock:
            self._active.add(stream)
        prepared = self.prepare(request, stream)
        self._put(lambda: self._run_turn(request, stream, prepared))
        return stream

    def submit_batched(self, request: TurnRequest,
                       notify: Callable[[Event], None] | None = None) -> TurnStream:
        """Like ``submit``, but the turn may run together with other batched turns.

        Turns submitted here share token steps through mlx-lm's ``BatchGenerator`` when the
        model's caches can be merged; a turn with a ``seed`` (which needs the global random
        state to itself) or a model that cannot batch runs alone, in arrival order. Turns from
        ``submit`` are queued behind the running step and run alone. A turn joins the batch
        once its prompt is prepared, so a long prompt never holds up the others.
        """
        from harmony_tui.engine.batch import BatchScheduler

        stream = TurnStream(request.request_id, notify)
        stream.on_end = self._discard  # a reader that sees the end never finds it active
        with self._active_lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._active.add(stream)
            if self._batch is None:
                self._batch = BatchScheduler(self)
            batch = self._batch
        prepared = self.prepare(request, stream)
        prepared.add_done_callback(lambda _: batch.submit(request, stream, prepared))
        return stream

    def prepare(self, request: TurnRequest, stream: TurnStream) -> Future[PreparedPrompt | None]:
        """Start preparing ``request``'s prompt for the current model, off this thread."""
        return self._preparer.submit(request, self.model,
                                     lambda: stream.cancelled or self._closed)

    def stream(self, messages: Sequence[Message], setup: PromptSetup | None = None,
               params: GenerationParams | None = None, **kwargs: Any) -> TurnStream:
        """Shorthand for ``submit(TurnRequest(...))``."""
        return self.submit(TurnRequest(list(messages), setup or PromptSetup(),
                                       params or GenerationParams(), **kwargs))

    def chat(self, messages: Sequence[Message], setup: PromptSetup | None = None,
             params: GenerationParams | None = None, **kwargs: Any) -> Reply:
        """Generate one turn and return the whole reply."""
        return self.stream(messages, setup, params, **kwargs).result()

    def render(self, request: TurnRequest) -> list[int]:
        """The prompt tokens ``request`` would use, before any context trimming."""
        loaded = self._require_model()
        return loaded.format.render(request.messages, request.setup, request.params,
                                    request.today)

    def cancel_all(self) -> None:
        """Cancel every queued or running turn of this engine (and, at exit, loads)."""
        if self._worker.exiting:
            self._closed = True
        with self._active_lock:
            streams = list(self._active)
        for stream in streams:
            stream.cancel()

    def save_prompt_cache(self, path: Path, max_bytes: int) -> Future[int]:
        """Write the newest prompt-cache checkpoints to ``path`` (see ``cache_file.py``).

        The future's result is the bytes written: 0 when nothing was cached or the cache is
        larger than ``max_bytes`` (an older file at ``path`` is then removed)."""
        from harmony_tui.engine import cache_file

        if self.lockstep is not None:  # each rank holds only its shard of the cache
            return self._job(lambda: 0)
        return self._job(lambda: cache_file.save(self.prompt_cache, self._require_model(),
                                                 path, max_bytes))

    def load_prompt_cache(self, path: Path) -> Future[int]:
        """Reuse the checkpoints saved at ``path`` by the same model; the future's result is
        the tokens they cover (0: no file, another model's, or unreadable)."""
        from harmony_tui.engine import cache_file

        if self.lockstep is not None:
            return self._job(lambda: 0)
        return self._job(lambda: cache_file.load(self.prompt_cache, self._require_model(),
                                                 path))

    def _job(self, work: Callable[[], Any]) -> Future[Any]:
        """Run ``work`` on the generation thread; its result or exception in the future."""
        future: Future[Any] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(work())
            except BaseException as err:
                future.set_exception(err)

        self._put(job)
        return future

    def wire_weights(self) -> Future[str]:
        """Keep the loaded model's weights wired in memory (``mlock``; Metal only).

        The future's result says what happened, in words for the person.
        """
        future: Future[str] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                import mlx.core as mx
                from mlx.utils import tree_flatten

                loaded = self._require_model()
                if not mx.metal.is_available():
                    future.set_result("mlock has no effect here: MLX runs on the CPU")
                    return
                size = sum(v.nbytes for _, v in tree_flatten(loaded.model.parameters()))
                limit = mx.metal.device_info()["max_recommended_working_set_size"]
                mx.set_wired_limit(min(size, limit))
                future.set_result(f"{size / 2**30:.1f} GB of weights wired in memory"
                                  + (" (capped by the GPU's working set)" if size > limit else ""))
            except BaseException as err:
                future.set_exception(err)

        self._put(job)
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Cancel running turns and release the model (the shared generation thread lives on)."""
        if self._closed:
            return
        self._closed = True
        self.cancel_all()
        self._preparer.shutdown()
        self._worker.remove_cancel_hook(self.cancel_all)
        done = threading.Event()

        def release() -> None:
            if self.lockstep is not None:
                self.lockstep.stop_followers()
            self.model = None
            self.prompt_cache.clear()
            self.drafts.release()
            if self._batch is not None:
                self._batch.release()
            done.set()

        self._worker.submit(release)
        if threading.current_thread() is not self._worker.thread:
            done.wait(timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation thread ---------------------------------------------------------------------

    def _put(self, job: Callable[[], None]) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")
        self._worker.submit(job)

    def generation_stream(self) -> Any:
        """The MLX stream every model step runs on (made on first use; generation thread).

        Distributed, it is also the stream of the control collectives, so that they are ordered
        with the model's own on every rank."""
        if self.mlx_stream is None:
            import mlx.core as mx

            self.mlx_stream = (self.lockstep.generation_stream() if self.lockstep is not None
                            else mx.new_stream(mx.default_device()))
        return self.mlx_stream

    def _require_model(self) -> LoadedModel:
        if self.model is None:
            raise HarmonyTuiError("no model is loaded")
        return self.model

    def _run_turn(self, request: TurnRequest, stream: TurnStream,
                  prepared: Future[PreparedPrompt | None]) -> None:
        """Run a serial turn once its prompt is prepared; never waits for it on this thread."""
        def resubmit(future: Future[PreparedPrompt | None]) -> None:
            self._worker.submit(lambda: self._run_turn(request, stream, future))

        if not prepared.done():
            prepared.add_done_callback(resubmit)
            return
        prep = self.take_prepared(request, stream, prepared, resubmit)
        if prep is not None:
            self.run_prepared(request, stream, prep)

    def run_prepared(self, request: TurnRequest, stream: TurnStream,
                     prep: PreparedPrompt) -> None:
        """Run a prepared turn alone, to its end (generation thread)."""
        try:
            if self.lockstep is not None and self.lockstep.leader:
                try:
                    self.lockstep.command(distributed.turn_command(request, prep))
                except HarmonyTuiError as err:
                    stream.put(TurnEnd("error", error=str(err)))
                    return
            self._run_turn_guarded(request, stream, prep)
        finally:
            self._discard(stream)

    def take_prepared(self, request: TurnRequest, stream: TurnStream,
                      prepared: Future[PreparedPrompt | None],
                      resubmit: Callable[[Future[PreparedPrompt | None]], None],
                      ) -> PreparedPrompt | None:
        """The prepared prompt of a turn whose preparation is done (generation thread).

        None when the turn was ended (cancelled, failed to prepare, no model) or was sent to be
        prepared again for a model loaded since: ``resubmit(future)`` is then called when that
        is done.
        """
        if stream.cancelled:
            self.end_turn(stream, TurnEnd("cancelled"))
            return None
        try:
            prep = prepared.result()
        except HarmonyTuiError as err:
            self.end_turn(stream, TurnEnd("error", error=str(err), error_code=error_code(err)))
            return None
        except BaseException as err:
            self.end_turn(stream, TurnEnd("error", error=one_line(err)))
            return None
        if self.model is None:
            self.end_turn(stream, TurnEnd("error", error="no model is loaded"))
            return None
        if prep is None or prep.loaded is not self.model:
            again = self.prepare(request, stream)
            again.add_done_callback(resubmit)
            return None
        return prep

    def end_turn(self, stream: TurnStream, event: TurnEnd) -> None:
        """Put the last event of a turn (the stream forgets the turn first: ``on_end``)."""
        stream.put(event)

    def _discard(self, stream: TurnStream) -> None:
        with self._active_lock:
            self._active.discard(stream)

    def _run_turn_guarded(self, request: TurnRequest, stream: TurnStream,
                          prep: PreparedPrompt) -> None:
        partial: list[Any] = []
        saved_key = random_key()
        try:
            self._generate(request, stream, prep, partial)
        except HarmonyTuiError as err:
            stream.put(TurnEnd("error", error=str(err), error_code=error_code(err)))
        except BaseException as err:  # a generation failure must never kill the thread
            if isinstance(err, KeyboardInterrupt | SystemExit):
                raise
            if self.lockstep is not None and distributed.is_peer_lost(err):
                self.lockstep.lost(err)
            restore_random_key(saved_key)
            messages = tuple(partial[0].messages) if partial else ()
            stream.put(TurnEnd("error", messages, error=one_line(err)))

    def _generate(self, request: TurnRequest, stream: TurnStream, prep: PreparedPrompt,
                  partial: list[Any]) -> None:
        from harmony_tui.engine.serial import generate_serial

        generate_serial(self, request, stream, prep, partial)

    # -- shared by the serial and the batched paths (generation thread) -------------------------

    def trimmed(self, request: TurnRequest, prep: PreparedPrompt) -> ContextTrimmed | None:
        """The ``ContextTrimmed`` event of a turn whose oldest turns were dropped, if any."""
        if not prep.dropped_messages:
            return None
        first, new = self.trim_notices.first(request.messages, prep.dropped_messages)
        return ContextTrimmed(prep.dropped_messages, prep.dropped_tokens, prep.limit, first, new)

    @staticmethod
    def new_decoder(request: TurnRequest, loaded: LoadedModel, prompt: Sequence[int]) -> Any:
        """The format's decoder, or a ``RawDecoder`` for a raw-prompt turn."""
        fmt = loaded.format
        if request.prompt_tokens is not None:
            return RawDecoder(fmt.decode, fmt.stop_tokens)
        return fmt.new_decoder(request.setup, prompt)
