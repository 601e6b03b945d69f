"""The engine on real tiny models: event order, cancellation, context, cache reuse, isolation."""

from __future__ import annotations

import threading

import pytest
from conftest import wait_until

from harmony_tui.engine.engine import Engine, TurnRequest
from harmony_tui.engine.events import (
    ContextTrimmed,
    PromptProgress,
    Stats,
    TextDelta,
    TurnEnd,
    TurnStart,
)
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

GREEDY = GenerationParams(temperature=0, max_tokens=16)
LONG_SETUP = PromptSetup(developer_instructions="Follow these instructions closely. " * 12)


def events_of(engine, messages, params=GREEDY, setup=None):
    return list(engine.stream(messages, setup or PromptSetup(), params))


def test_event_order(gpt_oss_engine):
    events = events_of(gpt_oss_engine, [Message("user", "hello")])
    assert isinstance(events[0], TurnStart)
    assert isinstance(events[-1], TurnEnd)
    assert isinstance(events[-2], Stats)
    assert sum(isinstance(e, TurnEnd) for e in events) == 1
    kinds = [type(e) for e in events]
    assert kinds.index(PromptProgress) < kinds.index(Stats)
    stats = events[-2]
    assert stats.prompt_tokens == events[0].prompt_tokens
    assert stats.generation_tokens == 16 or events[-1].reason in ("return", "call")
    assert stats.ttft_s > 0 and stats.peak_memory_gb > 0
    assert events[0].params == GREEDY


def test_work_runs_on_the_generation_thread(gpt_oss_engine):
    names: list[str] = []
    stream = gpt_oss_engine.submit(
        TurnRequest([Message("user", "hi")], params=GREEDY),
        notify=lambda event: names.append(threading.current_thread().name),
    )
    stream.result()
    assert names and set(names) == {"harmony-generation"}


def test_cancel_takes_effect_within_one_token(llama_engine):
    """Cancelled from the generation thread as the 5th token's text arrives: no 6th token."""
    (token,) = llama_engine.model.format.encode("A")
    request = TurnRequest([Message("user", "go on")], params=GenerationParams(
        temperature=0, max_tokens=500, logit_bias={token: 100.0}))
    seen = 0
    holder = {}
    ready = threading.Event()

    def on_event(event) -> None:
        nonlocal seen
        if isinstance(event, TextDelta):
            seen += 1
            if seen == 5:
                ready.wait(10)
                holder["stream"].cancel()

    holder["stream"] = stream = llama_engine.submit(request, notify=on_event)
    ready.set()
    reply = stream.result()
    assert reply.reason == "cancelled"
    assert reply.stats.generation_tokens == 5
    assert reply.final == "AAAAA"
    assert reply.messages[-1].content == "AAAAA"  # the partial answer is kept


def test_cancel_from_another_thread(gpt_oss_engine):
    stream = gpt_oss_engine.stream([Message("user", "ramble")],
                                   params=GenerationParams(max_tokens=2000, seed=2))
    first = stream.get(timeout=60)
    assert isinstance(first, TurnStart)
    wait_until(lambda: any(isinstance(e, TextDelta) for e in [stream.get(timeout=60)]),
               message="a token")
    stream.cancel()
    reply = stream.result()
    assert reply.reason == "cancelled"
    assert reply.stats.generation_tokens < 2000


def test_cancelled_before_start_produces_only_turn_end(gpt_oss_engine):
    blocker = gpt_oss_engine.stream([Message("user", "a")], params=GREEDY)
    queued = gpt_oss_engine.stream([Message("user", "b")], params=GREEDY)
    queued.cancel()
    blocker.result()
    events = list(queued)
    assert [type(e) for e in events] == [TurnEnd]
    assert events[0].reason == "cancelled"


def test_prompt_cache_reuse_gives_the_same_answer_as_a_cold_start(tiny_gpt_oss, gpt_oss_engine):
    """Second turn continues from the checkpoint (past the 128-token sliding window)."""
    first = [Message("user", "first question")]
    r1 = gpt_oss_engine.chat(first, LONG_SETUP, GREEDY)
    second = [*first, Message("assistant", r1.final or "ok", channel="final"),
              Message("user", "second question")]
    stream = gpt_oss_engine.stream(second, LONG_SETUP, GREEDY)
    events = list(stream)
    start = events[0]
    assert start.prompt_tokens > 128
    assert start.cached_tokens >= r1.stats.prompt_tokens - 1
    warm = "".join(e.text for e in events if isinstance(e, TextDelta))
    with Engine.start(str(tiny_gpt_oss)) as cold_engine:
        cold = cold_engine.stream(second, LONG_SETUP, GREEDY)
        cold_events = list(cold)
    assert cold_events[0].cached_tokens == 0
    assert warm == "".join(e.text for e in cold_events if isinstance(e, TextDelta))


def test_regenerate_reuses_the_whole_prompt(gpt_oss_engine):
    messages = [Message("user", "regenerate me")]
    a = list(gpt_oss_engine.stream(messages, LONG_SETUP, GREEDY))
    b = list(gpt_oss_engine.stream(messages, LONG_SETUP, GREEDY))
    assert b[0].cached_tokens == b[0].prompt_tokens - 1
    text = lambda evs: "".join(e.text for e in evs if isinstance(e, TextDelta))  # noqa: E731
    assert text(a) == text(b)


def test_trimmable_cache_is_reused_after_an_edit(llama_engine, tiny_llama):
    base = [Message("user", "x" * 40), Message("assistant", "y", channel="final")]
    llama_engine.chat([*base, Message("user", "original question")], params=GREEDY)
    edited = [*base, Message("user", "edited question")]
    events = list(llama_engine.stream(edited, params=GREEDY))
    assert 40 < events[0].cached_tokens < events[0].prompt_tokens - 1
    with Engine.start(str(tiny_llama)) as cold_engine:
        cold = list(cold_engine.stream(edited, params=GREEDY))
    text = lambda evs: "".join(e.text for e in evs if isinstance(e, TextDelta))  # noqa: E731
    assert text(events) == text(cold)


def test_no_state_leaks_between_conversations(gpt_oss_engine):
    a = [Message("user", "conversation A")]
    b = [Message("user", "something else entirely, B")]
    first = gpt_oss_engine.chat(a, params=GREEDY)
    gpt_oss_engine.chat(b, params=GenerationParams(temperature=1.0, seed=9, max_tokens=40))
    again = gpt_oss_engine.chat(a, params=GREEDY)
    assert (first.final, first.analysis) == (again.final, again.analysis)


def test_context_trimming_drops_oldest_turns_and_says_so(llama_engine):
    history = []
    for i in range(6):
        history += [Message("user", f"question {i} " + "q" * 60),
                    Message("assistant", f"answer {i} " + "a" * 60, channel="final")]
    history.append(Message("user", "latest"))
    params = GenerationParams(temperature=0, max_tokens=8, max_context_tokens=400)
    events = list(llama_engine.stream(history, PromptSetup(developer_instructions="SYS"), params))
    trimmed = next(e for e in events if isinstance(e, ContextTrimmed))
    start = events[0]
    assert trimmed.dropped_messages >= 2 and trimmed.dropped_messages % 2 == 0
    assert trimmed.limit == 400
    assert start.prompt_tokens <= 400 - 8
    fmt = llama_engine.model.format
    kept = [*history[trimmed.dropped_messages:]]
    assert start.prompt_tokens == len(fmt.render(kept, PromptSetup(developer_instructions="SYS"),
                                                 params))
    assert isinstance(events[-1], TurnEnd) and events[-1].reason != "error"


def test_prompt_that_cannot_fit_is_an_error_turn(llama_engine):
    reply = llama_engine.chat([Message("user", "z" * 500)],
                              params=GenerationParams(max_context_tokens=100))
    assert reply.reason == "error"
    assert "context limit is 100" in reply.error and "max_context_tokens" in reply.error


def test_generation_stops_at_the_context_limit(llama_engine):
    params = GenerationParams(temperature=0, max_tokens=1000, max_context_tokens=64,
                              logit_bias={65: 50.0})
    reply = llama_engine.chat([Message("user", "hi")], params=params)
    assert reply.reason == "length"
    assert reply.stats.prompt_tokens + reply.stats.generation_tokens <= 64


def test_a_failing_turn_leaves_the_engine_usable(llama_engine):
    bad = llama_engine.chat([Message("user", "hi")],
                            params=GenerationParams(logit_bias={10**6: 1.0}))
    assert bad.reason == "error" and "outside the vocabulary" in bad.error
    good = llama_engine.chat([Message("user", "hi")], params=GREEDY)
    assert good.reason != "error"


def test_concurrent_submitters_each_get_their_own_turn(gpt_oss_engine):
    results: dict[int, object] = {}

    def run(i: int) -> None:
        results[i] = gpt_oss_engine.chat([Message("user", f"thread {i}")], params=GREEDY)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 1, 2, 3]
    alone = gpt_oss_engine.chat([Message("user", "thread 2")], params=GREEDY)
    assert (results[2].final, results[2].analysis) == (alone.final, alone.analysis)


def test_quantized_model_loads_and_generates(tmp_path):
    from tiny_models import build_tiny_gpt_oss

    path = build_tiny_gpt_oss(tmp_path / "q4", quantize_bits=4)
    with Engine.start(str(path)) as engine:
        reply = engine.chat([Message("user", "hi")], params=GREEDY)
    assert reply.reason != "error" and reply.stats.generation_tokens > 0


def test_closed_engine_refuses_work(tiny_llama):
    engine = Engine.start(str(tiny_llama))
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.stream([Message("user", "hi")])
