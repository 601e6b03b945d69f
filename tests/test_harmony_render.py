"""Harmony prompts rendered by the engine follow the spec (checked on the decoded text)."""

from __future__ import annotations

import datetime as dt

from harmony_tui.engine.messages import FunctionTool, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

WEATHER = FunctionTool("get_weather", "Get the weather.",
                       {"type": "object", "properties": {"city": {"type": "string"}}})


def render(fmt, messages, setup=None, params=None, today=dt.date(2026, 3, 4)) -> str:
    tokens = fmt.render(messages, setup or PromptSetup(), params or GenerationParams(), today)
    return fmt.decode(tokens)


def test_system_message_carries_identity_effort_cutoff_date(harmony_format):
    setup = PromptSetup(model_identity="You are Testy.", knowledge_cutoff="2025-01")
    text = render(harmony_format, [Message("user", "hi")], setup,
                  GenerationParams(reasoning_effort="high"))
    system = text.split("<|end|>")[0]
    assert system.startswith("<|start|>system<|message|>You are Testy.")
    assert "Knowledge cutoff: 2025-01" in system
    assert "Current date: 2026-03-04" in system
    assert "Reasoning: high" in system
    assert text.endswith("<|start|>user<|message|>hi<|end|><|start|>assistant")


def test_date_is_taken_at_render_time_unless_fixed(harmony_format):
    msgs = [Message("user", "hi")]
    assert "Current date: 2030-12-31" in render(harmony_format, msgs, today=dt.date(2030, 12, 31))
    fixed = PromptSetup(conversation_start_date="2001-02-03")
    assert "Current date: 2001-02-03" in render(harmony_format, msgs, fixed,
                                                today=dt.date(2030, 12, 31))


def test_builtin_tools_go_to_system_and_functions_to_developer(harmony_format):
    setup = PromptSetup(builtin_tools=("python", "browser"), function_tools=(WEATHER,),
                        developer_instructions="Be terse.")
    text = render(harmony_format, [Message("user", "hi")], setup)
    system, developer = text.split("<|end|>")[:2]
    assert "## python" in system and "## browser" in system
    assert "namespace functions" not in system
    assert developer.startswith("<|start|>developer<|message|># Instructions\n\nBe terse.")
    assert "type get_weather = (_: {" in developer
    assert "Calls to these tools must go to the commentary channel: 'functions'." in system


def test_no_developer_message_without_instructions_or_functions(harmony_format):
    text = render(harmony_format, [Message("user", "hi")])
    assert "<|start|>developer" not in text


def test_system_messages_in_history_fold_into_developer_instructions(harmony_format):
    text = render(harmony_format, [Message("system", "Speak French."), Message("user", "hi")],
                  PromptSetup(developer_instructions="Be terse."))
    assert "# Instructions\n\nBe terse.\n\nSpeak French." in text
    assert text.count("<|start|>system") == 1


def test_example_dialogues_come_before_the_history(harmony_format):
    setup = PromptSetup(example_dialogues=((Message("user", "2+2?"),
                                            Message("assistant", "4", channel="final")),))
    text = render(harmony_format, [Message("user", "3+3?")], setup)
    assert text.index("2+2?") < text.index("4<|end|>") < text.index("3+3?")


def test_earlier_turns_lose_analysis_but_the_current_turn_keeps_it(harmony_format):
    history = [
        Message("user", "first"),
        Message("assistant", "THINK-1", channel="analysis"),
        Message("assistant", "ANSWER-1", channel="final"),
        Message("user", "second"),
        Message("assistant", "THINK-2", channel="analysis"),
        Message("assistant", "ANSWER-2", channel="final"),
        Message("user", "third"),
        Message("assistant", "THINK-3", channel="analysis"),
        Message("assistant", "print(1)", channel="analysis", recipient="python",
                content_type="code"),
        Message("tool", "1", channel="analysis", name="python"),
    ]
    text = render(harmony_format, history)
    assert "THINK-1" not in text and "THINK-2" not in text
    assert "ANSWER-1<|end|>" in text and "ANSWER-2<|end|>" in text
    assert "<|channel|>analysis<|message|>THINK-3<|end|>" in text
    assert "<|start|>assistant to=python<|channel|>analysis code<|message|>print(1)<|call|>" in text
    assert text.endswith(
        "<|start|>python to=assistant<|channel|>analysis<|message|>1<|end|><|start|>assistant"
    )


def test_function_call_and_result_render_on_commentary(harmony_format):
    history = [
        Message("user", "weather?"),
        Message("assistant", '{"city": "Oslo"}', channel="commentary",
                recipient="functions.get_weather", content_type="<|constrain|>json"),
        Message("tool", '{"t": 3}', channel="commentary", name="functions.get_weather"),
    ]
    text = render(harmony_format, history, PromptSetup(function_tools=(WEATHER,)))
    assert ("<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json"
            '<|message|>{"city": "Oslo"}<|call|>') in text
    assert ('<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"t": 3}'
            "<|end|><|start|>assistant") in text


def test_final_answers_in_history_end_with_end_not_return(harmony_format):
    text = render(harmony_format, [Message("user", "a"), Message("assistant", "b",
                                                                  channel="final"),
                                   Message("user", "c")])
    assert "<|channel|>final<|message|>b<|end|>" in text
    assert "<|return|>" not in text


# -- issue 10 items 10-12 ---------------------------------------------------------------------


def test_system_and_developer_messages_later_in_the_history_render_where_they_stand(
        harmony_format):
    """Item 10: they raised "cannot render a 'system' message inside the history" (HTTP 500)."""
    history = [Message("system", "Be terse."), Message("user", "hi"),
               Message("assistant", "hello", channel="final"),
               Message("system", "Speak French."), Message("developer", "Use emoji."),
               Message("user", "again")]
    text = render(harmony_format, history)
    assert text.count("<|start|>system") == 1
    assert "<|start|>developer<|message|># Instructions\n\nBe terse.<|end|>" in text
    speak = "<|start|>developer<|message|># Instructions\n\nSpeak French.<|end|>"
    emoji = "<|start|>developer<|message|># Instructions\n\nUse emoji.<|end|>"
    assert text.index("hello<|end|>") < text.index(speak) < text.index(emoji) < \
        text.index("<|start|>user<|message|>again")
    assert text.count("Speak French.") == 1  # not folded into the first developer message too


def test_an_empty_tool_result_renders_as_an_empty_tool_message(harmony_format):
    """Item 11: an empty result disappeared, so the call looked unanswered."""
    history = [
        Message("user", "weather?"),
        Message("assistant", "{}", channel="commentary", recipient="functions.get_weather",
                content_type="<|constrain|>json"),
        Message("tool", "", channel="commentary", name="functions.get_weather"),
    ]
    text = render(harmony_format, history, PromptSetup(function_tools=(WEATHER,)))
    assert text.endswith("<|call|><|start|>functions.get_weather to=assistant<|channel|>"
                         "commentary<|message|><|end|><|start|>assistant")


def _returned(events) -> dict:
    """The assistant message the server returns for a turn's events (as a client keeps it)."""
    from harmony_tui.server.output import ChatOutput

    output = ChatOutput()
    for event in events:
        output.feed(event)
    return output.message()


def test_server_mapped_history_renders_token_identical_to_the_apps(harmony_format):
    """Item 12: the server dropped a built-in call's content type (``code``) and rewrote the
    model's ``json`` as ``<|constrain|>json``, so the same conversation rendered differently
    (and missed the prompt cache) on the API."""
    from harmony_tui.engine.events import TextDelta, ToolCall, TurnEnd
    from harmony_tui.server.mapping import chat_messages
    from harmony_tui.server.schemas import ChatCompletionRequest

    python_call = Message("assistant", "print(2**10)", channel="analysis", recipient="python",
                          content_type="code")
    weather_call = Message("assistant", '{"city": "Oslo"}', channel="commentary",
                           recipient="functions.get_weather", content_type="json")
    app = [
        Message("user", "first"),
        Message("assistant", "THINK-1", channel="analysis"),
        Message("assistant", "ANSWER-1", channel="final"),
        Message("user", "second"),
        Message("assistant", "THINK-2", channel="analysis"),
        python_call,
        Message("tool", "1024", channel="analysis", name="python"),
        Message("assistant", "THINK-3", channel="analysis"),
        weather_call,
        Message("tool", '{"t": 3}', channel="commentary", name="functions.get_weather"),
    ]

    def call_events(thought: str, call: Message) -> list:
        return [TextDelta("analysis", thought),
                TextDelta(call.channel, call.content, call.recipient),
                ToolCall("engine-id", call.recipient, call.channel, call.content_type,
                         call.content),
                TurnEnd("call")]

    first = _returned(call_events("THINK-2", python_call))
    second = _returned(call_events("THINK-3", weather_call))
    api = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ANSWER-1", "reasoning": "THINK-1"},
        {"role": "user", "content": "second"},
        first, {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": "1024"},
        second, {"role": "tool", "tool_call_id": second["tool_calls"][0]["id"],
                 "content": '{"t": 3}'},
    ]
    request = ChatCompletionRequest.model_validate({"model": "demo", "messages": api, "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": {}}}]})
    setup = PromptSetup(builtin_tools=("python",), function_tools=(WEATHER,))
    params, today = GenerationParams(), dt.date(2026, 3, 4)
    ours = harmony_format.render(app, setup, params, today)
    theirs = harmony_format.render(chat_messages(request), setup, params, today)
    assert harmony_format.decode(theirs) == harmony_format.decode(ours)
    assert theirs == ours


def test_calls_the_server_did_not_make_render_as_gpt_oss_writes_them(harmony_format):
    """Unknown call ids: python gets ``code``; a declared function named python stays one."""
    from harmony_tui.server.mapping import chat_messages
    from harmony_tui.server.schemas import ChatCompletionRequest

    def mapped(tools: list) -> list[Message]:
        return chat_messages(ChatCompletionRequest.model_validate({"model": "demo", "tools": tools,
                                                                   "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_from_elsewhere", "type": "function",
                "function": {"name": "python", "arguments": "print(1)"}}]},
            {"role": "tool", "tool_call_id": "call_from_elsewhere", "content": "1"}]}))

    builtin = mapped([])
    assert (builtin[1].recipient, builtin[1].channel, builtin[1].content_type) == (
        "python", "analysis", "code")
    assert (builtin[2].name, builtin[2].channel) == ("python", "analysis")
    function = mapped([{"type": "function", "function": {"name": "python"}}])
    assert (function[1].recipient, function[1].channel, function[1].content_type) == (
        "functions.python", "commentary", "<|constrain|>json")
    assert function[2].name == "functions.python"
