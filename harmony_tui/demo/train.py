"""Train the demo model: the real mlx-lm ``gpt_oss`` class on a corpus-sized vocabulary.

A full 201,088-way softmax costs seconds per step on a small CPU, so the model is trained with
only the token ids the corpus uses (plus one ``UNK`` row for everything else). The loss still
equals the full-vocabulary loss of the exported model: there, every other head row is zero, so
each of those tokens has logit 0, and together they enter the softmax as one fixed logit of
``log(201088 - corpus size)``. Every other embedding row becomes a copy of ``UNK``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from harmony_tui.demo.corpus import Example
from harmony_tui.engine.formats.harmony import VOCAB_SIZE

TrainProgress = Callable[[int, int, float], None]
CHECKPOINT_EVERY = 5


@dataclass(frozen=True)
class TrainConfig:
    """Everything the build depends on; the same config gives the same weights."""

    seed: int = 0
    examples: int = 768
    steps: int = 800
    batch_tokens: int = 4096
    learning_rate: float = 3e-3
    warmup_steps: int = 40
    decision_tokens: int = 12
    decision_weight: float = 4.0
    hidden_size: int = 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    num_local_experts: int = 4
    num_experts_per_tok: int = 2
    intermediate_size: int = 128
    sliding_window: int = 128

    def model_config(self, vocab_size: int) -> dict[str, Any]:
        """An mlx-lm ``gpt_oss`` config with ``vocab_size`` rows."""
        layer_types = ["sliding_attention", "full_attention"] * (self.num_hidden_layers // 2)
        return {
            "model_type": "gpt_oss",
            "vocab_size": vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "num_local_experts": self.num_local_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "intermediate_size": self.intermediate_size,
            "sliding_window": self.sliding_window,
            "rope_theta": 150000,
            "rms_norm_eps": 1e-5,
            "layer_types": layer_types,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def continued(self, steps: int) -> TrainConfig:
        """The settings for continuing trained weights on today's corpus (``--init``)."""
        return replace(self, steps=steps, examples=1500, learning_rate=5e-4, warmup_steps=10,
                       batch_tokens=2048)


@dataclass
class TrainedDemo:
    """Compact weights: a small embedding/head over ``vocab_ids`` (+ UNK last) and the body."""

    vocab_ids: list[int]
    weights: dict[str, Any]
    config: TrainConfig
    final_loss: float
    seconds: float
    steps_done: int = 0


def corpus_vocab(examples: list[Example]) -> list[int]:
    """Token ids the model needs: all completions, and prompts of scripted examples.

    Tokens seen only in fallback prompts are left out on purpose: they become ``UNK``, which
    teaches the model that unknown words lead to the fallback answer.
    """
    ids: set[int] = set()
    for example in examples:
        ids.update(example.completion)
        if not example.fallback:
            ids.update(example.prompt)
    return sorted(ids)


def _batches(examples: list[Example], batch_tokens: int) -> list[list[int]]:
    order = sorted(range(len(examples)),
                   key=lambda i: len(examples[i].prompt) + len(examples[i].completion))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        length = len(examples[i].prompt) + len(examples[i].completion)
        if current and (len(current) + 1) * _padded(length) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _padded(length: int) -> int:
    return (length + 31) // 32 * 32


def warm_start(model: Any, vocab: list[int], init: tuple[list[int], dict[str, Any]]) -> None:
    """Load earlier compact weights (``vocab_ids``, arrays) into ``model`` over ``vocab``:
    the body as is, embedding and head rows by token id (new ids start as ``UNK``/zero)."""
    import mlx.core as mx

    old_vocab, arrays = init
    arrays = dict(arrays)
    old_row = {tok: i for i, tok in enumerate(old_vocab)}
    old_unk = len(old_vocab)
    rows = mx.array([old_row.get(tok, old_unk) for tok in vocab] + [old_unk])
    embed = arrays["model.embed_tokens.weight"][rows]
    head = arrays["lm_head.weight"][rows]
    known = mx.array([tok in old_row for tok in vocab] + [True])[:, None]
    arrays["model.embed_tokens.weight"] = embed
    arrays["lm_head.weight"] = mx.where(known, head, mx.zeros_like(head))
    model.load_weights(list(arrays.items()), strict=True)


def train_demo(
    examples: list[Example],
    config: TrainConfig,
    progress: TrainProgress | None = None,
    init: tuple[list[int], dict[str, Any]] | None = None,
    checkpoint: Callable[[TrainedDemo], None] | None = None,
    stop_after: int | None = None,
) -> TrainedDemo:
    """Fit the compact model; deterministic for a given corpus, config and ``init``.

    ``init`` (vocab ids and arrays of earlier compact weights) continues their training instead
    of starting from random weights; ``checkpoint`` receives the weights every
    ``CHECKPOINT_EVERY`` steps; ``stop_after`` ends training early (the learning-rate schedule
    stays that of ``config.steps``)."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm.models import gpt_oss

    started = time.perf_counter()
    vocab = corpus_vocab(examples)
    unk = len(vocab)
    small = {tok: i for i, tok in enumerate(vocab)}
    log_others = math.log(VOCAB_SIZE - len(vocab))

    mx.random.seed(config.seed)
    model = gpt_oss.Model(gpt_oss.ModelArgs.from_dict(config.model_config(len(vocab) + 1)))
    if init is not None:
        vocab = sorted(set(vocab) | set(init[0]))
        unk = len(vocab)
        small = {tok: i for i, tok in enumerate(vocab)}
        log_others = math.log(VOCAB_SIZE - len(vocab))
        model = gpt_oss.Model(gpt_oss.ModelArgs.from_dict(config.model_config(len(vocab) + 1)))
        warm_start(model, vocab, init)
    mx.eval(model.parameters())

    def encode(example: Example) -> tuple[list[int], int]:
        seq = [small.get(t, unk) for t in (*example.prompt, *example.completion)]
        return seq, len(example.prompt)

    encoded = [encode(e) for e in examples]
    batches = _batches(examples, config.batch_tokens)

    def make_batch(indices: list[int]) -> tuple[Any, Any, Any]:
        width = _padded(max(len(encoded[i][0]) for i in indices) - 1)
        x = np.zeros((len(indices), width), np.int32)
        y = np.zeros((len(indices), width), np.int32)
        mask = np.zeros((len(indices), width), np.float32)
        for row, i in enumerate(indices):
            seq, prompt_len = encoded[i]
            x[row, : len(seq) - 1] = seq[:-1]
            y[row, : len(seq) - 1] = seq[1:]
            mask[row, prompt_len - 1: len(seq) - 1] = 1.0
            # The first tokens of a reply decide which script it follows: weigh them more.
            mask[row, prompt_len - 1: prompt_len - 1 + config.decision_tokens] = \
                config.decision_weight
        return mx.array(x), mx.array(y), mx.array(mask)

    def loss_fn(model: Any, x: Any, y: Any, mask: Any) -> Any:
        logits = model(x).astype(mx.float32)
        others = mx.full((*logits.shape[:-1], 1), log_others, dtype=mx.float32)
        losses = nn.losses.cross_entropy(mx.concatenate([logits, others], axis=-1), y)
        return (losses * mask).sum() / mask.sum()

    def schedule(step: Any) -> Any:
        warm = mx.minimum(1.0, (step + 1) / config.warmup_steps)
        cosine = 0.55 + 0.45 * mx.cos(math.pi * mx.minimum(step, config.steps) / config.steps)
        return config.learning_rate * warm * cosine

    optimizer = optim.Adam(learning_rate=schedule)
    value_and_grad = nn.value_and_grad(model, loss_fn)
    rng = random.Random(config.seed)
    schedule_order: list[int] = []
    loss_value = float("nan")
    steps_done = 0
    for step in range(config.steps if stop_after is None else min(stop_after, config.steps)):
        if not schedule_order:
            schedule_order = list(range(len(batches)))
            rng.shuffle(schedule_order)
        x, y, mask = make_batch(batches[schedule_order.pop()])
        loss, grads = value_and_grad(model, x, y, mask)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state, loss)
        loss_value = loss.item()
        steps_done = step + 1
        if progress:
            progress(step + 1, config.steps, loss_value)
        if checkpoint and (step + 1) % CHECKPOINT_EVERY == 0:
            checkpoint(TrainedDemo(vocab, dict(tree_flatten(model.parameters())), config,
                                   loss_value, time.perf_counter() - started, steps_done))
    weights = dict(tree_flatten(model.parameters()))
    return TrainedDemo(vocab, weights, config, loss_value, time.perf_counter() - started,
                       steps_done)
