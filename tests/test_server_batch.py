"""The engine side of the server: continuous batching, stop strings, raw prompts, logprobs."""

from __future__ import annotations

from harmony_tui.demo.check import demo_setup
from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.engine import TurnRequest
from harmony_tui.engine.events import MessageDone, TextDelta, TurnEnd
from harmony_tui.engine.messages import Message
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.reply import RawDecoder, StopFilter

HELLO = next(s for s in SCRIPTS if s.prompt == "Hello!")
TABLE = next(s for s in SCRIPTS if s.prompt.startswith("Compare cats"))
GREEDY = GenerationParams(temperature=0)


def answer(text: str) -> TextDelta:
    return TextDelta("final", text)


def shown(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == "final")


def test_stop_filter_holds_back_a_possible_stop_and_cuts_at_it():
    stops = StopFilter(["END!"])
    assert shown(stops.filter([answer("abc E")])) == "abc "  # "E" might start the stop
    assert shown(stops.filter([answer("N")])) == ""
    assert shown(stops.filter([answer("x")])) == "ENx"  # it was not the stop after all
    out = stops.filter([answer("yz EN"), answer("D! tail"), TextDelta("analysis", "no")])
    assert shown(out) == "yz " and stops.hit and len(out) == 1
    closing = stops.close([MessageDone(Message("assistant", "abc ENxyz END! tail",
                                               channel="final"))])
    assert closing[0].message.content == "abc ENxyz "
    assert stops.fix(Message("assistant", "whatever", channel="final")).content == "abc ENxyz "


def test_stop_filter_ignores_thinking_and_flushes_before_other_events():
    stops = StopFilter(["###"])
    assert stops.filter([TextDelta("analysis", "a ### b")])[0].text == "a ### b"
    out = stops.filter([answer("x #"), MessageDone(Message("assistant", "x #", channel="final"))])
    assert [type(e).__name__ for e in out] == ["TextDelta", "TextDelta", "MessageDone"]
    assert shown(out) == "x #" and not stops.hit
    passthrough = StopFilter([])
    events = [answer("###")]
    assert passthrough.filter(events) == events


def test_raw_decoder_waits_for_whole_characters(harmony_format):
    tokens = harmony_format.encode("héllo 🙂 <|end|>")
    decoder = RawDecoder(harmony_format.decode, harmony_format.stop_tokens)
    pieces = [e.text for t in tokens for e in decoder.feed(t)]
    pieces += [e.text for e in decoder.finish() if isinstance(e, TextDelta)]
    assert "".join(pieces) == "héllo 🙂 <|end|>" and "\ufffd" not in "".join(pieces)
    assert decoder.messages[-1].content == "héllo 🙂 <|end|>"


def test_batched_turns_keep_their_own_parameters_and_tokens(demo_engine):
    setup = demo_setup()
    plain = TurnRequest([Message("user", "Hello!")], setup, GREEDY)
    # a different sampler setup, penalties and a bias that forbids the usual first token
    odd = TurnRequest([Message("user", "Hello!")], setup, GREEDY.updated(
        logit_bias={200005: -100.0}, repetition_penalty=1.3, max_tokens=12, top_k=5))
    short = TurnRequest([Message("user", TABLE.prompt)], setup, GREEDY, stop=("Dogs",),
                        logprobs=3)
    streams = [demo_engine.submit_batched(r) for r in (plain, odd, short)]
    replies = [s.result() for s in streams]
    assert (replies[0].final, replies[0].analysis) == (HELLO.final, HELLO.analysis)
    assert replies[1].final != HELLO.final and replies[1].stats.generation_tokens <= 12
    assert replies[2].reason == "stop" and replies[2].final == TABLE.final.split("Dogs")[0]
    logprobs = replies[2].logprobs
    assert len(logprobs) == replies[2].stats.generation_tokens
    assert all(len(lp.top) == 3 and lp.top[0][2] >= lp.logprob - 1e-4 for lp in logprobs)
    assert demo_engine._batch.peak_batch >= 2


def test_seeded_turns_are_reproducible_and_raw_prompts_continue_tokens(demo_engine):
    seeded = GenerationParams(temperature=1.0, seed=7, max_tokens=24)
    request = TurnRequest([Message("user", "Tell me a joke.")], demo_setup(), seeded)
    first, second = (demo_engine.submit_batched(request).result() for _ in range(2))
    assert first.messages == second.messages
    prompt = demo_engine.render(TurnRequest([Message("user", "Hello!")], demo_setup(), GREEDY))
    raw = demo_engine.submit_batched(TurnRequest([], params=GREEDY, prompt_tokens=prompt))
    reply = raw.result()
    assert reply.final.startswith(f"<|channel|>analysis<|message|>{HELLO.analysis}<|end|>")
    assert reply.final.endswith(HELLO.final) and reply.reason == "return"


def test_cancelled_and_impossible_turns_end_cleanly(demo_engine):
    stream = demo_engine.submit_batched(TurnRequest(
        [Message("user", "Hello!")], params=GREEDY.updated(max_tokens=4000,
                                                         logit_bias={200002: -100.0})))
    for event in stream:
        if isinstance(event, TextDelta):
            stream.cancel()
        if isinstance(event, TurnEnd):
            break
    assert event.reason == "cancelled"
    too_long = demo_engine.submit_batched(TurnRequest([Message("user", "word " * 7000)]))
    end = next(e for e in too_long if isinstance(e, TurnEnd))
    assert end.reason == "error" and end.error_code == "context_length_exceeded"
    assert demo_engine._batch.running == 0
