"""One turn can never hurt another: the real engine on the demo model, driven directly.

Each test runs a good turn next to a bad one (sampling values that cannot sample, a prompt the
tokenizer cannot take, a step that fails) and checks that the good one ends normally, the bad
one ends with its own one-line error, nothing stays running, and later turns still work (in
particular unseeded sampling, which a failed compiled sampler used to break for good).
"""

from __future__ import annotations

import time

import pytest
from conftest import wait_until
from pydantic import ValidationError

from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine import batch as batch_module
from harmony_tui.engine import prepare as prepare_module
from harmony_tui.engine.engine import TurnRequest, TurnStream
from harmony_tui.engine.events import Event, TextDelta, TokenProgress, TurnEnd
from harmony_tui.engine.formats.harmony import CALL, END, ENDOFTEXT, RETURN
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

HELLO = next(s for s in SCRIPTS if s.prompt == "Hello!")
GREEDY = GenerationParams(temperature=0)
NO_STOP = {t: -100.0 for t in (RETURN, CALL, END, ENDOFTEXT)}  # generation never ends early


def bad(**changes) -> GenerationParams:
    """Parameters that skipped validation, as if a caller built them by hand."""
    return GenerationParams().model_copy(update=changes)


def hello(params: GenerationParams = GREEDY, text: str = "Hello!", **kwargs) -> TurnRequest:
    return TurnRequest([Message("user", text)], params=params, **kwargs)


def end_of(stream: TurnStream, timeout: float = 120) -> TurnEnd:
    deadline = time.monotonic() + timeout
    while True:
        event = stream.get(timeout=max(deadline - time.monotonic(), 0.01))
        if isinstance(event, TurnEnd):
            return event


def start_long(engine, max_tokens: int = 4000) -> tuple[TurnStream, list[Event]]:
    """A batched greedy turn that keeps generating; returns once it produces tokens."""
    stream = engine.submit_batched(hello(GREEDY.updated(max_tokens=max_tokens,
                                                        logit_bias=NO_STOP)))
    seen: list[Event] = []
    while not any(isinstance(e, TextDelta) for e in seen):
        seen.append(stream.get(timeout=60))
    return stream, seen


def stop_long(stream: TurnStream) -> TurnEnd:
    stream.cancel()
    return end_of(stream)


def assert_healthy(engine) -> None:
    """Nothing is left running, and an unseeded sampled turn works on both paths."""
    wait_until(lambda: engine._batch is None or engine._batch.running == 0, timeout=30,
               message="the batch to empty")
    sampled = GenerationParams(temperature=1.0, max_tokens=8)
    for submit in (engine.submit_batched, engine.submit):
        end = end_of(submit(hello(sampled)))
        assert end.reason in ("length", "return"), end.error
    assert engine.chat([Message("user", "Hello!")], params=GREEDY).final == HELLO.final
    with engine._active_lock:
        assert not engine._active


def assert_one_line(end: TurnEnd, *words: str) -> None:
    assert end.reason == "error" and end.error and "\n" not in end.error, end
    for word in words:
        assert word in end.error, end.error


# -- item 1 and 3: sampling values --------------------------------------------------------------


def test_a_failed_compiled_sampler_no_longer_breaks_the_random_state():
    # The mechanism behind "every later unseeded request fails": mlx-lm's samplers are
    # compiled with the random state as input and output, and a failure while tracing leaves
    # placeholder arrays in it. restore_random_key puts the saved key back.
    import mlx.core as mx
    from mlx_lm.sample_utils import make_sampler

    from harmony_tui.engine.sampling import random_key, restore_random_key

    row = mx.zeros((1, 50))
    saved = random_key()
    with pytest.raises(ValueError, match="argpartition"):
        make_sampler(temp=1.0, min_p=0.5, min_tokens_to_keep=10**9)(row)
    with pytest.raises(RuntimeError, match="without a primitive"):
        mx.eval(mx.random.state[0])
    restore_random_key(saved)
    assert make_sampler(temp=1.0)(row).shape == (1,)


def test_impossible_values_are_refused_by_the_schema_in_one_line():
    for field, value, words in [("seed", 2**64, "less than or equal to"),
                                ("repetition_context_size", 2**31, "less than or equal to"),
                                ("xtc_special_tokens", (-1,), "token id -1 must be >= 0")]:
        with pytest.raises(ValidationError) as info:
            GenerationParams(**{field: value})
        assert field in str(info.value) and words in str(info.value)
    assert GenerationParams(seed=2**64 - 1).seed == 2**64 - 1


def test_values_that_skipped_validation_fail_their_own_turn(demo_engine):
    # model_copy(update=...) skips pydantic: the engine validates again, so these reach no
    # MLX call; each fails alone, in one line naming the field.
    good, _ = start_long(demo_engine)
    for field, value in [("repetition_context_size", 10**12), ("seed", 2**64),
                         ("min_p", 2.0), ("max_tokens", 0), ("temperature", float("nan"))]:
        for submit in (demo_engine.submit_batched, demo_engine.submit):
            end = end_of(submit(hello(bad(**{field: value}))))
            assert_one_line(end, f"{field}=")
            assert end.error_code == "invalid_request"
    assert not good.ended and stop_long(good).error is None
    assert_healthy(demo_engine)


def test_values_beyond_the_vocabulary_are_clamped_to_their_meaning(demo_engine):
    # The request (min_tokens_to_keep=10**9 with min_p) used to fail with an invalid
    # argpartition kth and take every later unseeded turn down. Keeping more tokens than the
    # vocabulary keeps them all; so does a top_k that large; XTC cannot exclude a token id
    # outside the vocabulary, so protecting one changes nothing.
    good, _ = start_long(demo_engine)
    for params in (GenerationParams(min_tokens_to_keep=10**9, min_p=0.5),
                   GenerationParams(top_k=10**12),
                   GenerationParams(xtc_probability=1.0, xtc_special_tokens=(10**9,))):
        for submit in (demo_engine.submit_batched, demo_engine.submit):
            end = end_of(submit(hello(params.updated(max_tokens=6))))
            assert end.reason in ("length", "return") and end.error is None, (params, end)
    assert not good.ended and stop_long(good).error is None
    assert_healthy(demo_engine)


def test_a_sampler_that_cannot_sample_fails_at_admission(demo_engine, monkeypatch):
    # The engine's schema check is switched off to reach the next layer: the trial run on a
    # dummy logits row at admission. mlx-lm's min-p sampler raises while it is traced; the
    # turn fails before it shares a step, and the random state is restored.
    good, _ = start_long(demo_engine)
    monkeypatch.setattr(prepare_module, "check_params", lambda params: None)
    for submit in (demo_engine.submit_batched, demo_engine.submit):
        end = end_of(submit(hello(bad(min_p=2.0))))
        assert_one_line(end, "sampling parameters cannot be used", "min_p")
        assert end.error_code == "invalid_request"
    monkeypatch.undo()
    assert not good.ended and stop_long(good).error is None
    assert_healthy(demo_engine)


def test_a_sampler_failing_inside_a_shared_step_ends_only_its_turns(demo_engine, monkeypatch):
    # The engine's schema check and the admission trial run catch every failure we know of,
    # so they are switched off here to exercise the third layer: the guards that attribute a failure
    # inside a batch step to the turn that caused it. Samplers and processors are mlx-lm's own.
    from mlx_lm.sample_utils import make_logits_processors

    good, _ = start_long(demo_engine)
    monkeypatch.setattr(prepare_module, "check_params", lambda params: None)
    monkeypatch.setattr(batch_module, "check_sampling", lambda *args: None)
    failing_sampler = demo_engine.submit_batched(hello(bad(min_p=2.0, max_tokens=50)))
    monkeypatch.setattr(batch_module, "build_logits_processors", lambda params, vocab:
                        make_logits_processors(repetition_penalty=1.5,
                                               repetition_context_size=10**12))
    failing_processor = demo_engine.submit_batched(hello(GREEDY.updated(max_tokens=50)))
    ends = [end_of(failing_sampler), end_of(failing_processor)]
    monkeypatch.undo()
    assert_one_line(ends[0], "sampling failed", "min_p")
    assert_one_line(ends[1], "logits processor failed", "32-bit")
    assert not good.ended, "the good turn shared those steps and goes on"
    assert stop_long(good).error is None
    assert_healthy(demo_engine)


def test_a_step_failure_nobody_caused_resets_the_engine_with_a_generic_error(demo_engine):
    # A failure inside the model itself (memory, a bug) cannot be produced on purpose with a
    # real model, so the running generator's ``next`` is made to raise once.
    first, _ = start_long(demo_engine)
    second, _ = start_long(demo_engine)
    generator = demo_engine._batch._generator
    real_next = generator.next

    def failing_next():
        generator.next = real_next
        raise RuntimeError("min_p=0.123 secret detail of some request")

    generator.next = failing_next
    for stream in (first, second):
        end = end_of(stream)
        assert_one_line(end, "retry the request")
        assert "secret" not in end.error and "min_p" not in end.error
    assert demo_engine._batch._generator is None  # dropped, rebuilt by the next turn
    assert_healthy(demo_engine)


# -- item 2 and 6b: prompts the tokenizer cannot take, prompts that take long ----------------


def test_a_run_the_tokenizer_cannot_take_is_refused_and_frees_its_slot(demo_engine):
    good, _ = start_long(demo_engine)
    huge = "ab" * 500_000  # made openai-harmony panic (regex stack overflow) on this thread
    for submit in (demo_engine.submit_batched, demo_engine.submit):
        end = end_of(submit(hello(text=huge)))
        assert_one_line(end, "message 1 (user)", "1000000 bytes")
        assert end.error_code == "invalid_request"
    assert not good.ended and stop_long(good).error is None
    assert_healthy(demo_engine)


@pytest.mark.parametrize("where", ["thread", "child"])
def test_a_tokenizer_panic_fails_only_its_turn(demo_engine, monkeypatch, where):
    # With the up-front refusal lifted, the real openai-harmony panic (a BaseException) happens
    # on a preparation thread or in a child process: either way it ends that turn alone.
    monkeypatch.setattr(prepare_module, "MAX_RUN_BYTES", 10**9)
    if where == "thread":
        monkeypatch.setattr(prepare_module, "IN_PROCESS_BUDGET_S", float("inf"))
        monkeypatch.setattr(prepare_module, "IN_PROCESS_MAX_CHARS", 10**9)
    good, _ = start_long(demo_engine)
    end = end_of(demo_engine.submit_batched(hello(text="ab" * 500_000)))
    assert_one_line(end, "could not be tokenized", "PanicException")
    assert not good.ended and stop_long(good).error is None
    monkeypatch.undo()
    assert_healthy(demo_engine)


def test_a_costly_prompt_never_stalls_the_running_turns(demo_engine):
    # openai-harmony holds the GIL while it tokenizes and is quadratic in a run's length:
    # these eight 32,000-letter runs take seconds. Rendered on the generation thread (or any
    # thread of this process) the running turn would stop for that long.
    good, _ = start_long(demo_engine)
    text = " ".join(["a" * 32_000] * 8)
    assert prepare_module.estimate_render_s([text]) > 2
    costly = demo_engine.submit_batched(hello(bad(max_context_tokens=1024), text=text))
    started = time.perf_counter()
    gaps, last = [], time.perf_counter()
    while not costly.ended:
        event = good.get(timeout=30)
        if isinstance(event, TokenProgress | TextDelta):
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    took = time.perf_counter() - started
    end = end_of(costly)
    assert end.error_code == "context_length_exceeded", end
    assert took > 1.5, "the prompt was expected to take a while to tokenize"
    assert max(gaps) < 0.75, f"the running turn stalled for {max(gaps):.2f} s of {took:.2f} s"
    assert stop_long(good).error is None
    assert_healthy(demo_engine)


def test_prompts_waiting_for_a_child_process_never_hold_up_ordinary_ones(demo_engine):
    huge = [demo_engine.submit_batched(hello(text="ab" * 500_000))
            for _ in range(prepare_module.PREPARE_THREADS)]
    small = demo_engine.submit_batched(hello(GREEDY.updated(max_tokens=2)))
    end = end_of(small, timeout=30)
    assert end.reason == "length" and not any(h.ended for h in huge)
    for stream in huge:
        assert_one_line(end_of(stream), "has a run of 1000000 bytes")
    assert_healthy(demo_engine)


def test_turns_submitted_while_the_model_loads_are_prepared_for_it(tiny_gpt_oss):
    # A turn is prepared off the generation thread when it is submitted; one submitted before
    # its model finished loading is prepared again for that model when it reaches the thread.
    from harmony_tui.engine.engine import Engine

    engine = Engine()
    try:
        loading = engine.load(str(tiny_gpt_oss))
        serial = engine.submit(hello(GREEDY.updated(max_tokens=2)))
        batched = engine.submit_batched(hello(GREEDY.updated(max_tokens=2)))
        loading.result()
        for stream in (serial, batched):
            end = end_of(stream)
            assert end.reason == "length" and end.error is None, end
    finally:
        engine.close()


def test_the_run_scanner_sees_what_the_tokenizer_keeps_in_one_piece():
    from harmony_tui.engine.prepare import MAX_RUN_BYTES, PromptRefused, check_runs

    prose = "Plain text, with spaces and punctuation. " * 2000
    assert check_runs(prose, "m") < prepare_module.IN_PROCESS_BUDGET_S
    accented = "e\u0301" * MAX_RUN_BYTES  # letters with combining marks stay one piece
    chinese = "这是没有标点的中文" * 1300  # 3 bytes a character
    for text in (accented, chinese, " " * 40_000, "-" * 40_000):
        with pytest.raises(PromptRefused, match="has a run of"):
            check_runs(text, "m")
    assert check_runs("a1" * 40_000, "m") < 1  # digits split runs


def test_fitting_a_long_chat_renders_it_a_few_times_not_once_per_dropped_turn(harmony_format):
    # Prompts are prepared off the generation thread, but each render still costs CPU: the
    # fewest turns to drop are found by galloping and bisecting.
    from harmony_tui.engine.context import TRIM_STEP, fit_prompt

    class Counting:  # the real format, counting its renders
        def __init__(self, fmt) -> None:
            self.fmt, self.renders = fmt, 0

        def render(self, *args):
            self.renders += 1
            return self.fmt.render(*args)

    chat = []
    for i in range(60):
        chat += [Message("user", f"question {i} " + "word " * 40),
                 Message("assistant", f"answer {i}", channel="final")]
    chat.append(Message("user", "last question"))
    setup, params = PromptSetup(), GREEDY.updated(max_tokens=100)
    full = len(harmony_format.render(chat, setup, params))
    for limit in (full, full - 200, full // 2, 1200):
        counting = Counting(harmony_format)
        prompt, dropped, _ = fit_prompt(counting, chat, setup, params, limit)
        budget = limit - min(100, limit // 4)
        assert len(prompt) <= budget
        kept = chat[dropped:]
        assert kept[0].role == "user"
        if dropped:  # one turn fewer dropped would not reach the trim's target (hysteresis:
            # whole steps of TRIM_STEP of the budget; see test_long_chat.py)
            step = int(budget * TRIM_STEP)
            target = full - -(-(full - budget) // step) * step
            longer = harmony_format.render(chat[dropped - 2:], setup, params)
            assert len(longer) > target
        assert counting.renders <= 2 + 2 * 6, counting.renders
