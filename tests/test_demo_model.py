"""The built-in demo model: shipped weights, unpacking, and its documented behaviour."""

from __future__ import annotations

import json

import pytest

from harmony_tui.demo import build
from harmony_tui.demo.check import ask_script, chat_check, check_demo, demo_setup, fallback_rate
from harmony_tui.demo.corpus import (
    FALLBACK_FINAL,
    SCRIPTS,
    build_examples,
    corpus_fingerprint,
    long_paste,
    prompts_catalog,
    script_turn,
)
from harmony_tui.engine.events import ToolCall
from harmony_tui.engine.formats.harmony import CALL, RETURN
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams


def test_catalog_lists_every_script_with_its_tool():
    catalog = prompts_catalog()
    assert [c["prompt"] for c in catalog] == [s.prompt for s in SCRIPTS]
    assert {c["tool"] for c in catalog} == {None, "python", "browser", "get_weather"}


def test_shipped_weights_match_the_corpus():
    assert build.PACKAGED.is_file(), "run `harmony-tui demo-model build` and ship the weights"
    _, metadata = build.read_compact(build.PACKAGED)
    assert metadata["corpus"] == corpus_fingerprint(), (
        "the corpus changed: rebuild the shipped demo weights")
    assert build.PACKAGED.stat().st_size < 8_000_000


def test_corpus_is_deterministic_and_well_formed(harmony_format):
    a = build_examples(harmony_format, seed=3, count=24)
    assert a == build_examples(harmony_format, seed=3, count=24)
    assert a != build_examples(harmony_format, seed=4, count=24)
    for example in a:
        assert example.completion[-1] in (RETURN, CALL)
        assert harmony_format.decode(list(example.prompt)).endswith("<|start|>assistant")


def test_demo_folder_is_a_normal_mlx_lm_model(demo_engine):
    path = demo_engine.model.path
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gpt_oss" and config["vocab_size"] == 201088
    assert demo_engine.model.is_gpt_oss
    assert build.ensure_demo_model() == path  # second use: same folder, nothing rebuilt


def test_unpacking_into_a_fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_TUI_CACHE_DIR", str(tmp_path))
    messages: list[str] = []
    path = build.ensure_demo_model(lambda message, fraction: messages.append(message))
    assert path.parent == tmp_path / "demo-model"
    assert messages == ["Unpacking the demo model"]
    assert build.is_demo_folder(path)


@pytest.mark.parametrize("label,params,setup", [
    ("greedy, tools declared", GenerationParams(temperature=0), None),
    ("greedy, plain prompt", GenerationParams(temperature=0), PromptSetup()),
    ("default sampling", GenerationParams(seed=7), None),
    ("default sampling, low effort", GenerationParams(seed=8, reasoning_effort="low"),
     PromptSetup()),
])
def test_demo_answers_every_documented_prompt(demo_engine, label, params, setup):
    results = check_demo(demo_engine, params, setup)
    failures = [(r.prompt, r.detail) for r in results if not r.ok]
    assert not failures, f"{label}: {failures}"


def test_unknown_prompts_mostly_get_the_fallback_answer(demo_engine):
    """A tiny model cannot be perfect here; most unknown prompts must still get the list."""
    assert fallback_rate(demo_engine) >= 0.75


def test_replies_have_analysis_then_final(demo_engine):
    reply = demo_engine.chat([Message("user", "Compare cats and dogs in a table.")],
                             params=GenerationParams(temperature=0))
    assert reply.reason == "return"
    assert [m.channel for m in reply.messages] == ["analysis", "final"]
    assert reply.final.startswith("| Trait | Cats | Dogs |")
    assert not reply.issues


@pytest.mark.parametrize("prompt,recipient,parsed", [
    ("What's the weather in Paris?", "functions.get_weather", {"location": "Paris"}),
    ("Search the web for MLX.", "browser.search", {"query": "MLX", "topn": 3}),
    ("What is 17 * 23? Use python.", "python", None),
])
def test_tool_calls_are_events_with_parsed_arguments(demo_engine, prompt, recipient, parsed):
    events = list(demo_engine.stream([Message("user", prompt)], demo_setup(),
                                     GenerationParams(temperature=0)))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [c.recipient for c in calls] == [recipient]
    assert calls[0].parsed == parsed and calls[0].error is None
    assert events[-1].reason == "call"


def test_second_turn_in_a_chat(demo_engine):
    params = GenerationParams(temperature=0)
    first = demo_engine.chat([Message("user", "Hello!")], params=params)
    history = [Message("user", "Hello!"), *first.messages,
               Message("user", "Write hello world in Python.")]
    second = demo_engine.chat(history, params=params)
    assert second.final.startswith("Here is hello world in Python:\n\n```python")


def _long_history(turns: int, seed: int, tools_on: bool) -> list[Message]:
    """``turns`` documented exchanges in random order (with repeats), as the app keeps them:
    with the tools off, a tool turn ends at the call (the app shows it and stops)."""
    import random

    rng = random.Random(seed)
    history: list[Message] = []
    for _ in range(turns):
        script = rng.choice(SCRIPTS)
        history += script_turn(script) if tools_on or script.tool is None \
            else script_turn(script)[:3]
    return history


ISSUE_14 = pytest.mark.xfail(strict=True, reason=(
    "issue 14, the one fixed case the shipped weights (98.2 % in `demo-model check`, 20 x 30 "
    "turns) still get wrong: 'Hello!' greedily after 29 turns without tools gets the list of "
    "prompts; remove the mark when retrained weights pass"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.prompt)
def test_every_documented_prompt_late_in_a_long_chat_with_tools_on(demo_engine, script):
    history = _long_history(29, len(script.prompt), True)
    for params in (GenerationParams(temperature=0), GenerationParams(seed=3)):
        ok, got, _ = ask_script(demo_engine, history, script, demo_setup(), params)
        assert ok, f"{script.prompt!r} after 29 turns: {got}"


@pytest.mark.parametrize("script", [
    pytest.param(s, id=s.prompt, marks=ISSUE_14 if s.prompt == "Hello!" else ())
    for s in SCRIPTS])
def test_every_documented_prompt_late_in_a_long_chat_with_tools_off(demo_engine, script):
    """Issue 14: as in the app without tool flags, tool turns in the history end at the call;
    after ~30 prompts "Hello!" then called a tool."""
    history = _long_history(29, len(script.prompt), False)
    for params in (GenerationParams(temperature=0), GenerationParams(seed=3)):
        ok, got, _ = ask_script(demo_engine, history, script, PromptSetup(), params)
        assert ok, f"{script.prompt!r} after 29 turns: {got}"


def test_hello_right_after_a_weather_turn(demo_engine):
    """Issue 14: "Hello!" right after a weather turn (the function off, as in the app without
    tools) produced a python call."""
    weather = next(s for s in SCRIPTS if s.tool and s.tool.tool == "get_weather")
    hello = SCRIPTS[0]
    for seed in range(3):
        history = [*_long_history(seed * 4, seed, False), *script_turn(weather)[:3]]
        ok, got, _ = ask_script(demo_engine, history, hello, PromptSetup(),
                                GenerationParams(seed=seed))
        assert ok, f"Hello! after a weather turn (seed {seed}): {got}"


def test_a_long_paste_gets_the_list_of_prompts(demo_engine):
    """Issue 14: a pasted 200-line prompt got "do not. I do notbrush…"."""
    import random

    for seed in range(2):
        paste = long_paste(random.Random(seed), 200)
        reply = demo_engine.chat([*_long_history(3, seed, False), Message("user", paste)],
                                 params=GenerationParams(seed=seed))
        assert reply.final == FALLBACK_FINAL and not reply.tool_calls, reply.final[:200]


def test_random_long_chats_check(demo_engine):
    """The `demo-model check` chats, small: documented prompts stay right all along a chat."""
    result = chat_check(demo_engine, chats=2, turns=20, seed=1)
    assert result.asked >= 30
    assert result.share >= 0.95, result.failures
