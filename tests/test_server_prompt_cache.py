"""Through the real server (uvicorn on loopback, the official openai SDK), every turn reuses the
prompt cache: after a client-side tool call, with or without the reasoning sent back, and after
an edit (issue 16 item 2). A fresh tiny gpt_oss engine per test keeps the cache figures exact."""

from __future__ import annotations

import json

import openai
import pytest

from harmony_tui.engine.engine import Engine
from harmony_tui.server.runner import EmbeddedServer

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}]
WORDS = "north quiet paper garden silver window candle mirror bridge forest".split()


def words(seed: int, n: int = 150) -> str:
    return " ".join(WORDS[(seed * 3 + i * (seed + 1)) % len(WORDS)] for i in range(n))


@pytest.fixture
def client(tiny_gpt_oss):
    with Engine.start(str(tiny_gpt_oss)) as engine, EmbeddedServer(engine, port=0) as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0,
                            timeout=120)


def ask(client: openai.OpenAI, messages: list[dict]) -> tuple[int, int]:
    reply = client.chat.completions.create(model="tiny-gpt-oss", messages=messages, tools=TOOLS,
                                           temperature=0, max_tokens=4)
    return reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens


@pytest.mark.parametrize("send_reasoning", [False, True], ids=["plain", "reasoning-sent-back"])
def test_the_turn_after_a_tool_call_reuses_the_cache(client, send_reasoning):
    first = [{"role": "user", "content": "Weather please. " + words(1)}]
    call = {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"location": "Paris"})}}]}
    if send_reasoning:
        call["reasoning_content"] = "The user wants the weather, I call the tool."
    result = {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}
    prompt1, _ = ask(client, first)
    _, cached2 = ask(client, [*first, call, result])
    assert cached2 >= prompt1 - 1  # the sub-turn continues the first one
    answer = {"role": "assistant", "content": "It is sunny in Paris. " + words(2, 40)}
    if send_reasoning:
        answer["reasoning_content"] = "Now I answer."
    second = [*first, call, result, answer, {"role": "user", "content": words(3)}]
    prompt3, cached3 = ask(client, second)
    assert cached3 >= prompt1 - 1
    assert prompt3 - cached3 <= prompt3 - prompt1 + 1  # only what is new since turn 1's start


def test_an_edited_last_message_reuses_the_turns_before_it(client):
    history = [{"role": "user", "content": words(1)},
               {"role": "assistant", "content": words(2, 40)}]
    prompt1, _ = ask(client, [history[0]])
    ask(client, [*history, {"role": "user", "content": words(3)}])
    _, cached = ask(client, [*history, {"role": "user", "content": "Reworded: " + words(4)}])
    # Past turn 1's prompt and its answer: the checkpoint before the edited message.
    assert cached > prompt1 + 40
