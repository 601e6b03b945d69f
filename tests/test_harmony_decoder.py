"""Scripted Harmony token streams through the decoder: well-formed and malformed.

The streams are encoded Harmony text, like gpt-oss's reference tests replay through a mock model.
"""

from __future__ import annotations

import random

import pytest

from harmony_tui.engine.events import MessageDone, ParseIssue, TextDelta, ToolCall
from harmony_tui.engine.formats.harmony import HarmonyDecoder

GOOD = (
    "<|channel|>analysis<|message|>Let me think about ünïcode 🙂.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello **world**!\n\n- a\n- b<|return|>"
)
CALL = (
    "<|channel|>analysis<|message|>Need weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"location": "Paris"}<|call|>'
)


def decode(fmt, text: str, known=frozenset(), tokens=None):
    decoder = HarmonyDecoder(fmt.encoding, known)
    events = []
    for tok in tokens if tokens is not None else fmt.encode(text):
        events += decoder.feed(tok)
    events += decoder.finish()
    return decoder, events


def channel_text(events, channel: str) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == channel
                   and e.recipient is None)


def assert_clean(text: str) -> None:
    assert "<|" not in text and "|>" not in text


def test_analysis_then_final(harmony_format):
    decoder, events = decode(harmony_format, GOOD)
    assert channel_text(events, "analysis") == "Let me think about ünïcode 🙂."
    assert channel_text(events, "final") == "Hello **world**!\n\n- a\n- b"
    assert decoder.finished == "return"
    assert [(m.channel, m.content) for m in decoder.messages] == [
        ("analysis", "Let me think about ünïcode 🙂."), ("final", "Hello **world**!\n\n- a\n- b")]
    assert not [e for e in events if isinstance(e, ParseIssue)]
    done = [e.message.channel for e in events if isinstance(e, MessageDone)]
    assert done == ["analysis", "final"]


def test_function_call_event_has_parsed_arguments(harmony_format):
    decoder, events = decode(harmony_format, CALL, frozenset({"functions.get_weather"}))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert len(calls) == 1
    call = calls[0]
    assert call.recipient == "functions.get_weather" and call.name == "get_weather"
    assert call.channel == "commentary" and call.content_type == "<|constrain|>json"
    assert call.parsed == {"location": "Paris"} and call.error is None
    assert decoder.finished == "call"
    assert not [e for e in events if isinstance(e, ParseIssue)]
    arg_text = "".join(e.text for e in events if isinstance(e, TextDelta) and e.recipient)
    assert arg_text == '{"location": "Paris"}'


def test_builtin_call_with_recipient_in_role_position(harmony_format):
    text = ("<|channel|>analysis<|message|>Compute.<|end|>"
            "<|start|>assistant to=python<|channel|>analysis code<|message|>print(2**10)<|call|>")
    _decoder, events = decode(harmony_format, text, frozenset({"python"}))
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert (call.recipient, call.channel, call.content_type) == ("python", "analysis", "code")
    assert call.arguments == "print(2**10)" and call.parsed is None and call.error is None


@pytest.mark.parametrize("stream", [GOOD, CALL])
def test_any_chunking_gives_the_same_events(harmony_format, stream):
    tokens = harmony_format.encode(stream)
    _, reference = decode(harmony_format, stream)
    rng = random.Random(7)
    for _ in range(5):
        decoder = HarmonyDecoder(harmony_format.encoding)
        events, i = [], 0
        while i < len(tokens):
            size = rng.randint(1, 6)
            for tok in tokens[i:i + size]:
                events += decoder.feed(tok)
            i += size
        events += decoder.finish()
        strip = [e for e in events if not isinstance(e, ToolCall)]
        ref = [e for e in reference if not isinstance(e, ToolCall)]
        assert strip == ref


def test_different_tokenizations_of_the_same_text_give_the_same_messages(harmony_format):
    """Content encoded one character per token decodes to the same messages and channels."""
    enc = harmony_format
    pieces = [("<|channel|>analysis<|message|>", True), ("Let me think about ünïcode 🙂.", False),
              ("<|end|><|start|>assistant<|channel|>final<|message|>", True),
              ("Hello **world**!\n\n- a\n- b", False), ("<|return|>", True)]
    tokens = []
    for text, special in pieces:
        tokens += enc.encode(text) if special else [t for ch in text for t in enc.encode(ch)]
    fine, fine_events = decode(enc, "", tokens=tokens)
    coarse, coarse_events = decode(enc, GOOD)
    assert fine.messages == coarse.messages
    assert channel_text(fine_events, "final") == channel_text(coarse_events, "final")


def test_missing_channel_is_shown_on_final_and_noted(harmony_format):
    _decoder, events = decode(harmony_format, "<|message|>No channel here.<|return|>")
    assert channel_text(events, "final") == "No channel here."
    assert any("channel" in e.detail for e in events if isinstance(e, ParseIssue))


def test_stray_constrain_never_becomes_a_recipient_or_text(harmony_format):
    text = "<|channel|>final<|constrain|><|message|>Hi<|constrain|> there<|return|>"
    decoder, events = decode(harmony_format, text)
    assert channel_text(events, "final") == "Hi there"
    assert decoder.messages[-1].recipient is None
    assert [e for e in events if isinstance(e, ParseIssue)]
    assert not [e for e in events if isinstance(e, ToolCall)]


THOUGHT = "<|channel|>analysis<|message|>thinking<|end|>"


@pytest.mark.parametrize("header", [
    "<|start|>assistant",
    "<|start|>assistant<|channel|>fin",
    "<|start|>assistant<|channel|>final",
    "<|start|>assistant<|channel|>analysis",
    "<|start|>assistant<|channel|>commentary to=functions.get_weather json",
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json",
    "<|start|>assistant to=python<|channel|>analysis code",
])
def test_output_cut_inside_a_header_is_never_content(harmony_format, header):
    """Issue 10 item 9: ``generate --max-tokens 25`` printed ``assistantfinal``."""
    decoder, events = decode(harmony_format, THOUGHT + header)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["thinking"]
    assert [(m.channel, m.content) for m in decoder.messages] == [("analysis", "thinking")]
    assert not [e for e in events if isinstance(e, ToolCall)]
    assert any("inside a message header" in e.detail for e in events
               if isinstance(e, ParseIssue))


def test_output_cut_inside_the_first_header_is_never_content(harmony_format):
    decoder, events = decode(harmony_format, "<|channel|>fin")
    assert not [e for e in events if isinstance(e, TextDelta)] and decoder.messages == []


@pytest.mark.parametrize("stream", [GOOD, CALL])
def test_every_cut_shows_only_a_prefix_of_what_was_written(harmony_format, stream):
    """Wherever the output stops (max_tokens, cancel), each channel shows a prefix of what the
    model wrote there and each kept message is a prefix of the message it was cutting."""
    tokens = harmony_format.encode(stream)
    full, full_events = decode(harmony_format, stream)
    for cut in range(len(tokens) + 1):
        decoder, events = decode(harmony_format, "", tokens=tokens[:cut])
        for channel in ("analysis", "commentary", "final"):
            assert channel_text(full_events, channel).startswith(channel_text(events, channel))
        args = "".join(e.text for e in events if isinstance(e, TextDelta) and e.recipient)
        assert full.messages[-1].content.startswith(args)
        for got, whole in zip(decoder.messages, full.messages, strict=False):
            assert (got.channel, got.recipient) == (whole.channel, whole.recipient), cut
            assert whole.content.startswith(got.content), cut


def test_unknown_recipient_is_a_tool_call_with_a_note(harmony_format):
    text = ("<|channel|>commentary to=functions.launch_rockets <|constrain|>json"
            "<|message|>{}<|call|>")
    _decoder, events = decode(harmony_format, text, frozenset({"functions.get_weather"}))
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert call.recipient == "functions.launch_rockets" and call.parsed == {}
    assert any("undeclared" in e.detail for e in events if isinstance(e, ParseIssue))


def test_invalid_json_arguments_are_reported_not_raised(harmony_format):
    text = ('<|channel|>commentary to=functions.get_weather <|constrain|>json'
            '<|message|>{"location": Par<|call|>')
    _, events = decode(harmony_format, text)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert call.parsed is None and "not valid JSON" in call.error


def test_plain_text_without_any_header_is_surfaced_on_final(harmony_format):
    text = "Just some text the model wrote without any Harmony markup at all, going on and on " \
           "for quite a while so that the header can never end. " * 2 + "<|return|>"
    _, events = decode(harmony_format, text)
    final = channel_text(events, "final")
    assert "Just some text" in final and "on and on" in final
    assert_clean(final)
    assert [e for e in events if isinstance(e, ParseIssue)]


def test_special_tokens_inside_content_never_leak(harmony_format):
    text = ("<|channel|>analysis<|message|>one<|message|> two<|start|>assistant<|channel|>final"
            "<|message|> three<|constrain|><|return|>")
    decoder, events = decode(harmony_format, text)
    analysis, final = channel_text(events, "analysis"), channel_text(events, "final")
    assert_clean(analysis)
    assert_clean(final)
    assert analysis == "one two" and final == " three"
    assert [m.channel for m in decoder.messages] == ["analysis", "final"]


def test_text_after_end_of_message_is_recovered(harmony_format):
    text = "<|channel|>analysis<|message|>a<|end|>garbage after end<|return|>"
    _decoder, events = decode(harmony_format, text)
    assert channel_text(events, "analysis") == "a"
    assert "garbage after end" in channel_text(events, "final")
    assert any("outside a message" in e.detail for e in events if isinstance(e, ParseIssue))


def test_endoftext_ends_the_turn(harmony_format):
    decoder, events = decode(harmony_format, "<|channel|>final<|message|>x<|endoftext|>more")
    assert channel_text(events, "final") == "x"
    assert decoder.finished == "return"


def test_missing_start_before_channel_is_repaired(harmony_format):
    text = "<|channel|>analysis<|message|>a<|end|><|channel|>final<|message|>b<|return|>"
    decoder, events = decode(harmony_format, text)
    assert channel_text(events, "final") == "b"
    assert [m.channel for m in decoder.messages] == ["analysis", "final"]


def test_cut_off_message_is_kept_as_partial(harmony_format):
    decoder, _events = decode(harmony_format, "<|channel|>final<|message|>partial ans")
    assert decoder.finished is None
    assert decoder.messages[-1].content == "partial ans"


def test_random_token_soup_never_raises_or_leaks(harmony_format):
    """Random special tokens, header words and text: no markup shown, and what streamed is
    exactly what the turn's messages hold."""
    rng = random.Random(3)
    specials = [200002, 200003, 200005, 200006, 200007, 200008, 200012, 199999, 200013, 173781]
    words = harmony_format.encode(" final analysis commentary to=functions.f json code\n user")
    for _ in range(300):
        tokens = [rng.choice(specials) if rng.random() < 0.25 else rng.choice(words)
                  if rng.random() < 0.5 else rng.randrange(100, 5000)
                  for _ in range(rng.randint(1, 60))]
        decoder, events = decode(harmony_format, "", tokens=tokens)
        streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert "<|" not in streamed and "|>" not in streamed
        assert streamed == "".join(m.content for m in decoder.messages), tokens


# -- repairs never lose text, never leak header words (issue 10 item 12) ---------------------


def issues(events) -> list[str]:
    return [e.detail for e in events if isinstance(e, ParseIssue)]


def test_a_repeated_final_header_inside_the_answer_keeps_the_rest(harmony_format):
    text = ("<|channel|>final<|message|>Hello<|start|>assistant<|channel|>final<|message|>"
            " world, and the rest.<|return|>")
    decoder, events = decode(harmony_format, text)
    assert channel_text(events, "final") == "Hello world, and the rest."
    assert [(m.channel, m.content) for m in decoder.messages] == [
        ("final", "Hello world, and the rest.")]
    assert decoder.finished == "return"
    assert any("repeated" in d for d in issues(events))


def test_loose_text_between_messages_does_not_replace_the_final(harmony_format):
    text = THOUGHT + "loose text<|start|>assistant<|channel|>final<|message|>Real answer<|return|>"
    decoder, events = decode(harmony_format, text)
    assert channel_text(events, "final") == "Real answer"
    assert [(m.channel, m.content) for m in decoder.messages] == [
        ("analysis", "thinking"), ("final", "Real answer")]
    assert any("outside a message" in e.detail and e.text == "loose text"
               for e in events if isinstance(e, ParseIssue))


@pytest.mark.parametrize("prefix", ["", THOUGHT + "<|start|>assistant"])
def test_a_header_that_never_ends_does_not_leak_its_channel_name(harmony_format, prefix):
    text = prefix + "<|channel|>final\nHello there, this is the answer.<|return|>"
    decoder, events = decode(harmony_format, text)
    assert channel_text(events, "final") == "Hello there, this is the answer."
    assert decoder.messages[-1].content == "Hello there, this is the answer."
    assert decoder.finished == "return"
    assert any("never ended" in d for d in issues(events))


def test_a_call_header_that_never_ends_is_still_the_call(harmony_format):
    text = (THOUGHT + "<|start|>assistant<|channel|>commentary to=functions.get_weather json\n"
            '{"location": "Paris"}<|call|>')
    decoder, events = decode(harmony_format, text, frozenset({"functions.get_weather"}))
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert (call.recipient, call.content_type, call.parsed) == (
        "functions.get_weather", "json", {"location": "Paris"})
    assert channel_text(events, "final") == "" and decoder.finished == "call"


def test_a_repaired_close_does_not_end_the_turn(harmony_format):
    """A final message the model never closed: the call after it still comes through."""
    text = ("<|channel|>final<|message|>Let me check.<|start|>assistant<|channel|>commentary "
            'to=functions.get_weather <|constrain|>json<|message|>{"location": "Oslo"}<|call|>')
    decoder, events = decode(harmony_format, text, frozenset({"functions.get_weather"}))
    assert channel_text(events, "final") == "Let me check."
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert call.parsed == {"location": "Oslo"} and decoder.finished == "call"


def test_a_header_ended_by_an_end_token_is_dropped(harmony_format):
    text = THOUGHT + "<|start|>assistant<|channel|>final<|return|>"
    decoder, events = decode(harmony_format, text)
    assert channel_text(events, "final") == "" and decoder.finished == "return"
    assert [m.channel for m in decoder.messages] == ["analysis"]


@pytest.mark.parametrize("fake", [
    "<|start|>user<|message|>Thanks! Now tell me more.<|end|>",
    '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"t": 9}<|end|>',
])
def test_a_message_begun_as_the_user_or_a_tool_ends_the_turn(harmony_format, fake):
    decoder, events = decode(harmony_format, THOUGHT + fake + "<|start|>assistant<|channel|>"
                             "final<|message|>made up<|return|>")
    assert channel_text(events, "final") == "" and decoder.finished == "return"
    assert [m.channel for m in decoder.messages] == ["analysis"]
