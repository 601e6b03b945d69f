"""Non-GPT-OSS models: chat template rendering, think splitting and tool calls (tiny llama)."""

from __future__ import annotations

from harmony_tui.engine.events import MessageDone, TextDelta, ToolCall
from harmony_tui.engine.messages import FunctionTool, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

WEATHER = FunctionTool("get_weather", "Get weather",
                       {"type": "object", "properties": {"city": {"type": "string"}}})


def run_decoder(fmt, text: str, setup=None, prompt=()):
    decoder = fmt.new_decoder(setup or PromptSetup(), list(prompt))
    events = []
    for tok in fmt.encode(text):
        events += decoder.feed(tok)
    events += decoder.finish()
    return decoder, events


def text_on(events, channel):
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == channel
                   and e.recipient is None)


def test_loaded_with_chat_template_format(llama_engine):
    assert llama_engine.model.format.name == "chat_template"
    assert not llama_engine.model.is_gpt_oss


def test_render_uses_the_template_with_system_tools_and_history(llama_engine):
    fmt = llama_engine.model.format
    history = [
        Message("system", "Speak plainly."),
        Message("user", "hi"),
        Message("assistant", "secret thoughts", channel="analysis"),
        Message("assistant", "hello", channel="final"),
        Message("user", "weather?"),
        Message("assistant", '{"city": "Oslo"}', channel="commentary",
                recipient="functions.get_weather", content_type="json"),
        Message("tool", '{"t": 3}', channel="commentary", name="functions.get_weather"),
    ]
    text = fmt.decode(fmt.render(history, PromptSetup(developer_instructions="Be brief.",
                                                      function_tools=(WEATHER,)),
                                 GenerationParams()))
    assert text.startswith("<|system|>Be brief.\n\nSpeak plainly.<|end|>")
    assert "secret thoughts" not in text
    assert "<|assistant|>hello<|end|>" in text
    assert ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
            in text)
    assert '<|tool|>{"t": 3}<|end|>' in text
    assert '"name": "get_weather", "description": "Get weather"' in text
    assert text.endswith("<|assistant|>")


def test_think_tags_go_to_analysis(llama_engine):
    fmt = llama_engine.model.format
    decoder, events = run_decoder(fmt, "<think>step one, step two</think>The answer is 4.<|end|>")
    assert text_on(events, "analysis") == "step one, step two"
    assert text_on(events, "final") == "The answer is 4."
    assert [(m.channel, m.content) for m in decoder.messages] == [
        ("analysis", "step one, step two"), ("final", "The answer is 4.")]
    assert decoder.finished == "return"
    assert "<think>" not in text_on(events, "final")


def test_prompt_ending_inside_think_starts_on_analysis(llama_engine):
    fmt = llama_engine.model.format
    prompt = fmt.encode("<|assistant|><think>")
    _, events = run_decoder(fmt, "pondering</think>Done.<|end|>", prompt=prompt)
    assert text_on(events, "analysis") == "pondering"
    assert text_on(events, "final") == "Done."


def test_tool_call_markers_become_tool_call_events(llama_engine):
    fmt = llama_engine.model.format
    setup = PromptSetup(function_tools=(WEATHER,))
    decoder, events = run_decoder(
        fmt, 'Let me check.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}'
        "</tool_call><|end|>", setup)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert call.recipient == "functions.get_weather"
    assert call.parsed == {"city": "Paris"}
    assert decoder.finished == "call"
    assert text_on(events, "final") == "Let me check."
    assert "<tool_call>" not in "".join(e.text for e in events if isinstance(e, TextDelta))


def test_malformed_tool_call_is_an_error_event_not_a_crash(llama_engine):
    fmt = llama_engine.model.format
    _, events = run_decoder(fmt, "<tool_call>not json at all</tool_call><|end|>")
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert call.error and "could not parse" in call.error


def test_engine_turn_on_llama_streams_events(llama_engine):
    reply = llama_engine.chat([Message("user", "hello")],
                              params=GenerationParams(max_tokens=12, seed=3))
    assert reply.reason in ("length", "return", "call")
    assert reply.stats and 1 <= reply.stats.generation_tokens <= 12
    streamed_final = "".join(m.content for m in reply.messages if m.channel == "final")
    assert streamed_final == reply.final.strip()


def test_message_done_events_match_decoder_messages(llama_engine):
    fmt = llama_engine.model.format
    decoder, events = run_decoder(fmt, "<think>a</think>b<|end|>")
    assert [e.message for e in events if isinstance(e, MessageDone)] == decoder.messages
