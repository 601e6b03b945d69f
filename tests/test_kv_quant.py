"""KV-cache quantization (issue 16 item 6) on the real demo model.

The demo is a trained gpt_oss (attention sinks in every layer, 2 sliding-window + 2
full-attention layers, 2 key/value heads of 16 values): its rows are quantized per token across
both heads, in groups of 32. ``quantized_kv_start=0`` quantizes from the first chunk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from harmony_tui.engine.engine import Engine, TurnRequest
from harmony_tui.engine.events import Stats, TurnEnd, TurnStart
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

PLAIN = GenerationParams(temperature=0, max_tokens=64)
KV8 = PLAIN.updated(kv_bits=8, kv_group_size=32, quantized_kv_start=0)
# An unknown prompt: the demo says so and lists what it knows (well over 64 tokens).
PACKING = [Message("user", "What is the capital of France? Tell me about it.")]


def run(engine: Engine, messages: list[Message], params: GenerationParams,
        batched: bool = False) -> tuple[Any, list[int], Stats | None, TurnEnd]:
    """One turn: its TurnStart, the sampled token ids, its Stats and its TurnEnd."""
    request = TurnRequest(list(messages), PromptSetup(), params, logprobs=0)
    events: list[object] = []
    submit = engine.submit_batched if batched else engine.submit
    reply = submit(request, events.append).result()
    start = next((e for e in events if isinstance(e, TurnStart)), None)
    stats = next((e for e in events if isinstance(e, Stats)), None)
    end = events[-1]
    assert isinstance(end, TurnEnd)
    return start, [t.token for t in reply.logprobs], stats, end


@pytest.fixture
def engine():
    with Engine.start("demo") as fresh:  # an empty prompt cache per test
        yield fresh


def test_greedy_demo_output_is_identical_for_64_tokens_at_8_bits(engine):
    _, plain, plain_stats, _ = run(engine, PACKING, PLAIN)
    engine.prompt_cache.clear()
    _, quantized, stats, end = run(engine, PACKING, KV8)
    assert end.reason != "error", end.error
    assert plain_stats is not None and stats is not None
    assert plain_stats.generation_tokens == stats.generation_tokens == 64
    assert len(plain) >= 56  # logprobs skip the Harmony markup the decoder consumes
    assert quantized == plain
    assert plain_stats.kv_saved_bytes == 0
    # Memory saved is reported: the 2 full-attention layers hold the prompt and the answer
    # (less the last token), keys and values of 32 float32 values a token, now 32 bytes plus
    # a float32 scale and bias per group of 32: 69 % saved.
    tokens = stats.prompt_tokens + 64 - 1
    full_precision = 2 * tokens * 2 * 32 * 4
    assert 0.65 * full_precision < stats.kv_saved_bytes < 0.7 * full_precision
    assert stats.kv_cache_bytes < plain_stats.kv_cache_bytes
    assert stats.to_dict()["kv_saved_bytes"] == stats.kv_saved_bytes


@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
def test_quantized_checkpoints_are_reused_and_smaller(engine, batched):
    _, _, _, first = run(engine, PACKING, PLAIN, batched)
    plain_bytes = engine.prompt_cache.stats()["shared_bytes"]
    engine.prompt_cache.clear()
    _, _, _, first = run(engine, PACKING, KV8, batched)
    assert first.reason != "error", first.error
    assert engine.prompt_cache.stats()["shared_bytes"] < plain_bytes / 2
    history = [*PACKING, *first.messages, Message("user", "Hello!")]
    start, _, stats, end = run(engine, history, KV8, batched)
    assert end.reason != "error", end.error
    assert start.cached_tokens >= len(engine.render(TurnRequest(PACKING, PromptSetup(),
                                                                KV8))) - 1
    assert stats is not None and stats.kv_saved_bytes > 0
    # Turning quantization off keeps reusing the (dequantized) checkpoint.
    start, _, stats, end = run(engine, history, PLAIN, batched)
    assert end.reason != "error", end.error
    assert start.cached_tokens == start.prompt_tokens - 1
    assert stats is not None and stats.kv_saved_bytes == 0


def test_quantization_starts_after_the_given_number_of_tokens(engine):
    prompt_tokens = len(engine.render(TurnRequest(PACKING, PromptSetup(), PLAIN)))
    late = KV8.updated(quantized_kv_start=prompt_tokens + 1000)
    _, _, stats, _ = run(engine, PACKING, late)
    assert stats is not None and stats.kv_saved_bytes == 0
    engine.prompt_cache.clear()
    during = KV8.updated(quantized_kv_start=prompt_tokens + 10)  # during the answer
    _, _, stats, _ = run(engine, PACKING, during)
    assert stats is not None and stats.kv_saved_bytes > 0


def test_concurrent_quantized_turns_batch_together(engine):
    requests = [TurnRequest([Message("user", q)], PromptSetup(), KV8, logprobs=0)
                for q in ("Hello!", "Give me a packing list for a weekend trip.",
                          "Write hello world in Python.")]
    streams = [engine.submit_batched(r) for r in requests]
    replies = [s.result() for s in streams]
    assert all(r.reason != "error" for r in replies)
    assert all(len(r.logprobs) > 0 for r in replies)
    assert engine._batch.peak_batch >= 2


@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
def test_a_group_size_the_model_cannot_use_is_a_one_line_error(engine, batched):
    _, _, _, end = run(engine, PACKING, KV8.updated(kv_group_size=64), batched)
    assert end.reason == "error"
    assert end.error == ("kv_group_size=64 does not divide this model's key/value rows "
                         "(2 heads x 16 values); use 32")
    _, tokens, _, end = run(engine, PACKING, PLAIN, batched)  # the engine is fine afterwards
    assert end.reason != "error" and len(tokens) >= 56


def test_kv_flags_reach_the_engine_and_stats():
    out = subprocess.run(
        [sys.executable, "-m", "harmony_tui", "generate", "--json", "-p",
         "Give me a packing list for a weekend trip.", "--temperature", "0",
         "--kv-bits", "8", "--kv-group-size", "32", "--quantized-kv-start", "0"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stats"]["kv_saved_bytes"] > 0
    bad = subprocess.run([sys.executable, "-m", "harmony_tui", "generate", "-p", "hi",
                          "--kv-bits", "7"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "--kv-bits=7: must be one of 2, 3, 4, 5, 6, 8" in bad.stderr
    assert "Traceback" not in bad.stderr
