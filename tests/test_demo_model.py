"""The built-in demo model: shipped weights, unpacking, and its documented behaviour."""

from __future__ import annotations

import json

import pytest

from harmony_tui.demo import build
from harmony_tui.demo.check import check_demo, demo_setup, fallback_rate
from harmony_tui.demo.corpus import (
    SCRIPTS,
    build_examples,
    corpus_fingerprint,
    prompts_catalog,
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
