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
