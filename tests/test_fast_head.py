"""The CPU output head with its weight stored transposed (engine/fast_head.py): the same logits,
bit for bit, for prefill and for batched decode steps; only plain float heads are swapped."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import load_model as mlx_load_model

from harmony_tui.engine.fast_head import head_class, same_bits, transpose_head
from harmony_tui.engine.loader import load_model


def test_loaded_gpt_oss_gets_the_transposed_head_with_identical_logits(tiny_gpt_oss):
    ours = load_model(str(tiny_gpt_oss)).model
    plain, _ = mlx_load_model(tiny_gpt_oss)  # mlx-lm's own head: x @ W.T
    assert isinstance(ours.lm_head, head_class()) and type(plain.lm_head) is nn.Linear
    assert "weight" not in ours.lm_head  # no second copy of the head is kept
    assert mx.array_equal(ours.lm_head.weight_t, plain.lm_head.weight.T).item()
    prompts = mx.array([[200006, 1428, 200008, 13225, 0, 200007, 200006, 173781],
                        [200006, 1428, 200008, 3575, 5, 9, 200007, 200006]])
    caches = [make_prompt_cache(ours), make_prompt_cache(plain)]
    prefill = [ours(prompts, cache=caches[0]), plain(prompts, cache=caches[1])]
    assert mx.array_equal(*prefill).item()
    tokens = mx.argmax(prefill[0][:, -1:, :], axis=-1)
    for _ in range(3):  # decode steps of a batch of two rows
        steps = [ours(tokens, cache=caches[0]), plain(tokens, cache=caches[1])]
        assert steps[0].shape == (2, 1, 201088) and mx.array_equal(*steps).item()
        tokens = mx.argmax(steps[0], axis=-1)


class _Holder(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.lm_head = head


def test_only_plain_float_heads_without_bias_are_swapped():
    quantized = _Holder(nn.QuantizedLinear(64, 128, bias=False))
    biased = _Holder(nn.Linear(64, 128, bias=True))
    tied = nn.Module()  # a model whose head is its embedding: nothing to swap
    for model in (quantized, biased, tied):
        assert transpose_head(model) is False
    assert type(quantized.lm_head) is nn.QuantizedLinear and type(biased.lm_head) is nn.Linear
    plain = _Holder(nn.Linear(64, 128, bias=False))
    x = mx.random.normal((3, 64))
    before = plain.lm_head(x)
    assert transpose_head(plain) is True
    assert mx.array_equal(plain.lm_head(x), before).item()


def test_the_load_time_probe_refuses_a_layout_that_changes_any_bit():
    weight = mx.random.normal((5000, 48))
    weight_t = mx.contiguous(weight.T)
    state = mx.random.state[0]
    assert same_bits(weight, weight_t) is True
    assert mx.array_equal(mx.random.state[0], state).item()  # seeded turns stay reproducible
    off = weight_t.at[7, 123].add(mx.array(1e-3))  # what a BLAS summing differently would give
    assert same_bits(weight, off) is False
