"""Every generation parameter reaches mlx-lm's sampler or logits processors.

First on hand-made distributions (the sampler itself), then through the real engine on the tiny
llama model, where each parameter must change (or pin) what is generated.
"""

from __future__ import annotations

import math

import mlx.core as mx
import pytest
from pydantic import ValidationError

from harmony_tui.engine.messages import Message
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.sampling import build_logits_processors, build_sampler

PROBS = [0.6, 0.3, 0.08, 0.02]


def logprobs() -> mx.array:
    return mx.array([[math.log(p) for p in PROBS]])


def sample_counts(params: GenerationParams, n: int = 400, keep=()) -> list[int]:
    mx.random.seed(1)
    sampler = build_sampler(params, vocab_size=len(PROBS), xtc_special_tokens=keep)
    counts = [0] * len(PROBS)
    for _ in range(n):
        counts[sampler(logprobs()).item()] += 1
    return counts


def test_defaults_sample_rather_than_argmax():
    params = GenerationParams()
    assert params.temperature == 1.0 and params.top_p == 1.0
    counts = sample_counts(params)
    assert counts[0] < 400 and counts[1] > 50


def test_temperature_zero_is_greedy():
    assert sample_counts(GenerationParams(temperature=0)) == [400, 0, 0, 0]


def test_top_k_one_is_greedy():
    assert sample_counts(GenerationParams(top_k=1)) == [400, 0, 0, 0]


def test_top_k_two_never_picks_the_third():
    counts = sample_counts(GenerationParams(top_k=2))
    assert counts[2] == counts[3] == 0 and counts[1] > 0


def test_top_k_at_vocab_size_is_disabled_not_an_error():
    assert sample_counts(GenerationParams(top_k=10))[2] > 0


def test_top_p_keeps_the_nucleus():
    counts = sample_counts(GenerationParams(top_p=0.5))
    assert counts == [400, 0, 0, 0]
    counts = sample_counts(GenerationParams(top_p=0.85))
    assert counts[1] > 0 and counts[2] == counts[3] == 0


def test_min_p_and_min_tokens_to_keep():
    counts = sample_counts(GenerationParams(min_p=0.4))
    assert counts[1] > 0 and counts[2] == counts[3] == 0
    counts = sample_counts(GenerationParams(min_p=0.9, min_tokens_to_keep=3))
    assert counts[1] > 0 and counts[2] > 0 and counts[3] == 0


def test_xtc_excludes_top_choices_except_special_tokens():
    counts = sample_counts(GenerationParams(xtc_probability=1.0, xtc_threshold=0.2))
    assert counts[0] == 0 and counts[1] > 0
    counts = sample_counts(GenerationParams(xtc_probability=1.0, xtc_threshold=0.2), keep=[0])
    assert counts[0] > 0


def test_penalties_and_bias_change_logits():
    history = mx.array([3, 3, 1])

    def apply(params):
        out = mx.array([[1.0, 2.0, 3.0, 4.0]])  # fresh: mlx-lm's processors write in place
        for proc in build_logits_processors(params, 4):
            out = proc(history, out)
        return out[0].tolist()

    assert build_logits_processors(GenerationParams(), 4) == []
    assert apply(GenerationParams(repetition_penalty=2.0)) == [1.0, 1.0, 3.0, 2.0]
    assert apply(GenerationParams(repetition_penalty=2.0, repetition_context_size=1)) == [
        1.0, 1.0, 3.0, 4.0]
    assert apply(GenerationParams(presence_penalty=0.5)) == [1.0, 1.5, 3.0, 3.5]
    assert apply(GenerationParams(frequency_penalty=0.5)) == [1.0, 1.5, 3.0, 3.0]
    assert apply(GenerationParams(logit_bias={0: 10.0})) == [11.0, 2.0, 3.0, 4.0]


def test_logit_bias_outside_vocabulary_is_refused():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        build_logits_processors(GenerationParams(logit_bias={99: 1.0}), 4)


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1), ("min_p", 2.0),
    ("min_tokens_to_keep", 0), ("xtc_probability", 1.1), ("xtc_threshold", 0.6),
    ("repetition_penalty", 0.0), ("repetition_context_size", 0), ("max_tokens", 0),
    ("max_context_tokens", 4), ("seed", -1), ("reasoning_effort", "extreme"),
    ("logit_bias", {1: 500.0}),
])
def test_out_of_range_values_are_refused(field, value):
    with pytest.raises(ValidationError) as info:
        GenerationParams(**{field: value})
    assert field in str(info.value)


# -- through the engine ------------------------------------------------------------------------

PROMPT = [Message("user", "Tell me something.")]


def generate(engine, **params) -> str:
    params.setdefault("max_tokens", 24)
    reply = engine.chat(PROMPT, params=GenerationParams(**params))
    assert reply.reason != "error", reply.error
    return reply.final + "|" + reply.analysis


@pytest.fixture(scope="module")
def greedy(llama_engine) -> str:
    return generate(llama_engine, temperature=0)


def test_engine_temperature_zero_is_deterministic(llama_engine, greedy):
    assert generate(llama_engine, temperature=0) == greedy


def test_engine_same_seed_same_text_other_seed_other_text(llama_engine):
    a = generate(llama_engine, temperature=1.5, seed=11)
    assert generate(llama_engine, temperature=1.5, seed=11) == a
    assert generate(llama_engine, temperature=1.5, seed=12) != a


def test_engine_top_k_one_equals_greedy(llama_engine, greedy):
    assert generate(llama_engine, temperature=2.0, top_k=1, seed=5) == greedy


def test_engine_top_p_tiny_equals_greedy(llama_engine, greedy):
    assert generate(llama_engine, temperature=2.0, top_p=0.001, seed=5) == greedy


def test_engine_min_p_one_equals_greedy_unless_more_tokens_are_kept(llama_engine, greedy):
    assert generate(llama_engine, temperature=2.0, min_p=1.0, seed=5) == greedy
    assert generate(llama_engine, temperature=5.0, min_p=1.0, min_tokens_to_keep=50,
                    seed=5) != greedy


def test_engine_xtc_excludes_the_likely_tokens(llama_engine, greedy):
    assert generate(llama_engine, temperature=0.01, xtc_probability=1.0, xtc_threshold=0.0,
                    seed=5) != greedy


def test_engine_repetition_penalty_changes_greedy_output(llama_engine, greedy):
    assert generate(llama_engine, temperature=0, repetition_penalty=3.0) != greedy


def test_engine_repetition_context_size_matters(llama_engine):
    wide = generate(llama_engine, temperature=0, repetition_penalty=3.0,
                    repetition_context_size=64)
    assert generate(llama_engine, temperature=0, repetition_penalty=3.0,
                    repetition_context_size=1) != wide


def test_engine_presence_and_frequency_penalties_change_output(llama_engine, greedy):
    assert generate(llama_engine, temperature=0, presence_penalty=2.0) != greedy
    assert generate(llama_engine, temperature=0, frequency_penalty=2.0) != greedy


def test_engine_logit_bias_forces_a_token(llama_engine):
    fmt = llama_engine.model.format
    (token,) = fmt.encode("Z")
    text = generate(llama_engine, temperature=0, logit_bias={token: 100.0}, max_tokens=6)
    assert text.startswith("ZZZZZZ")


def test_engine_max_tokens_limits_generation(llama_engine):
    reply = llama_engine.chat(PROMPT, params=GenerationParams(max_tokens=3, temperature=0,
                                                              logit_bias={65: 50.0}))
    assert reply.reason == "length"
    assert reply.stats.generation_tokens == 3


def test_engine_xtc_special_tokens_setting_reaches_the_sampler(llama_engine, greedy):
    every_token = tuple(range(llama_engine.model.format.vocab_size))
    # XTC may never exclude a protected token: protecting all of them turns it off.
    assert generate(llama_engine, temperature=0.01, xtc_probability=1.0, xtc_threshold=0.0,
                    xtc_special_tokens=every_token, seed=5) == greedy
