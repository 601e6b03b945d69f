"""Does a demo model say what its scripts say? Used after a build and by the tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from harmony_tui.demo.corpus import (
    DEMO_FUNCTION_TOOLS,
    FALLBACK_FINAL,
    SCRIPTS,
    Script,
    long_paste,
)
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


CHECK_MAX_TOKENS = 400  # every scripted reply is shorter; a derailed one stops here


@dataclass
class ChatCheck:
    """Documented prompts answered correctly in random long chats."""

    chats: int
    turns: int
    asked: int
    correct: int
    failures: list[tuple[int, int, str, str]]  # chat, turn, prompt, what came instead

    @property
    def share(self) -> float:
        return self.correct / self.asked if self.asked else 1.0


def ask_script(engine, history: list[Message], script: Script, setup: PromptSetup,
              params: GenerationParams) -> tuple[bool, str, list[Message]]:
    """Ask ``script.prompt`` after ``history``: (right answer?, what came, messages to keep)."""
    messages = [*history, Message("user", script.prompt)]
    reply = engine.chat(messages, setup, params)
    kept = [Message("user", script.prompt), *reply.messages]
    expected = script.tool
    if expected is None:
        ok = not reply.tool_calls and reply.final == script.final
        return ok, reply.final or repr([c.recipient for c in reply.tool_calls]), kept
    calls = [(c.recipient, c.arguments) for c in reply.tool_calls]
    if calls != [(expected.recipient, expected.arguments)]:
        if reply.tool_calls:  # the app answers a wrong call; keep the history well formed
            kept.append(Message("tool", "error: the call failed", channel=reply.tool_calls[0]
                                .channel or "commentary", name=reply.tool_calls[0].recipient))
        return False, f"calls {calls!r}, final {reply.final!r}", kept
    if not expected.declared_by(setup):  # the app shows the call, says the tool is off, stops
        return True, "", kept
    kept.append(expected.result_message())
    second = engine.chat([*history, *kept], setup, params)
    kept += second.messages
    return second.final == script.final, f"after the tool: {second.final!r}", kept


def chat_check(engine, chats: int = 20, turns: int = 30, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> ChatCheck:
    """Random long chats as a newcomer has them: documented prompts in random order (with
    repeats), now and then an unknown prompt or a long paste, every answer kept in the history.

    Even chats declare the demo's tools, odd ones none (as the app without tool flags: a right
    call then ends the turn, as the app ends it when the tool is off); each
    chat samples with the default settings and its own seed. Counts the documented prompts
    answered exactly as scripted (tool call and final answer).
    """
    rng = random.Random(seed)
    result = ChatCheck(chats, turns, 0, 0, [])
    for chat in range(chats):
        setup = demo_setup() if chat % 2 == 0 else PromptSetup()
        params = GenerationParams(seed=seed * 1000 + chat, max_tokens=CHECK_MAX_TOKENS)
        history: list[Message] = []
        for turn in range(turns):
            roll = rng.random()
            if roll < 0.08 or roll > 0.97:
                text = long_paste(rng, 200) if roll > 0.97 else rng.choice(UNKNOWN_PROMPTS)
                reply = engine.chat([*history, Message("user", text)], setup, params)
                history += [Message("user", text), *reply.messages]
                if reply.tool_calls:
                    call = reply.tool_calls[0]
                    history.append(Message("tool", "error: the call failed",
                                           channel=call.channel or "commentary",
                                           name=call.recipient))
                continue
            script = rng.choice(SCRIPTS)
            ok, got, kept = ask_script(engine, history, script, setup, params)
            history += kept
            result.asked += 1
            result.correct += ok
            if not ok:
                result.failures.append((chat, turn, script.prompt, got[:120]))
        if progress:
            progress(chat + 1, chats)
    return result
