"""Does a demo model say what its scripts say? Used after a build and by the tests."""

from __future__ import annotations

from dataclasses import dataclass

from harmony_tui.demo.corpus import DEMO_FUNCTION_TOOLS, FALLBACK_FINAL, SCRIPTS, Script
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams


@dataclass
class ScriptCheck:
    """One documented prompt replayed through the engine."""

    prompt: str
    ok: bool
    detail: str


def demo_setup() -> PromptSetup:
    """The setup the demo model knows best: its tools declared."""
    return PromptSetup(builtin_tools=("python", "browser"), function_tools=DEMO_FUNCTION_TOOLS)


def run_script(engine, script: Script, setup: PromptSetup, params: GenerationParams) -> ScriptCheck:
    """Replay one script, feeding the scripted tool result after a call."""
    messages = [Message("user", script.prompt)]
    reply = engine.chat(messages, setup, params)
    if script.tool is None:
        ok = reply.final == script.final and reply.analysis == script.analysis
        return ScriptCheck(script.prompt, ok, f"final={reply.final!r}")
    calls = reply.tool_calls
    expected = script.tool
    if len(calls) != 1 or calls[0].recipient != expected.recipient or \
            calls[0].arguments != expected.arguments:
        got = [(c.recipient, c.arguments) for c in calls]
        return ScriptCheck(script.prompt, False, f"tool calls {got!r}, final={reply.final!r}")
    follow = [*messages, *reply.messages, expected.result_message()]
    second = engine.chat(follow, setup, params)
    ok = second.final == script.final
    return ScriptCheck(script.prompt, ok, f"after the tool: final={second.final!r}")


UNKNOWN_PROMPTS = (
    "Why is the sky blue?", "What is the capital of France?", "Tell me a joke.",
    "Explain quantum physics.", "How do I bake bread?", "Recommend a movie.",
    "What does this error mean?", "Write a poem about the sea.", "List the planets.",
    "Who are you?", "What can you do?", "Plan a trip to Rome.",
)


def check_demo(engine, params: GenerationParams | None = None,
               setup: PromptSetup | None = None) -> list[ScriptCheck]:
    """Replay every documented prompt; each must give its scripted reply."""
    params = params or GenerationParams(temperature=0)
    setup = setup or demo_setup()
    return [run_script(engine, s, setup, params) for s in SCRIPTS]


def fallback_rate(engine, setup: PromptSetup | None = None) -> float:
    """Share of unknown prompts answered with the fallback text (best effort for a tiny model)."""
    params = GenerationParams(temperature=0)
    hits = sum(engine.chat([Message("user", p)], setup or PromptSetup(), params).final
               == FALLBACK_FINAL for p in UNKNOWN_PROMPTS)
    return hits / len(UNKNOWN_PROMPTS)
