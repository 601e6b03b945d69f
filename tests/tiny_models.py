"""Random-weight tiny models of real mlx-lm architectures, built on disk for tests.

- ``build_tiny_gpt_oss``: the real ``gpt_oss`` class with the real o200k_harmony vocabulary size
  (Harmony's special tokens live at ids 199998-201087), so the Harmony path runs end to end.
- ``build_tiny_llama``: a ``llama`` model with a small byte-level tokenizer whose vocabulary
  holds ``<think>``/``</think>`` and ``<tool_call>``/``</tool_call>`` and a chat template that
  declares tools, so mlx-lm infers its thinking markers and JSON tool parser as it would for a
  real model.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

GPT_OSS_CONFIG = {
    "model_type": "gpt_oss",
    "num_hidden_layers": 2,
    "num_local_experts": 2,
    "num_experts_per_tok": 1,
    "vocab_size": 201088,
    "hidden_size": 32,
    "intermediate_size": 32,
    "head_dim": 16,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "sliding_window": 128,
    "rope_theta": 150000,
    "layer_types": ["sliding_attention", "full_attention"],
    "max_position_embeddings": 4096,
}

LLAMA_SPECIALS = ["<|begin|>", "<|end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
                  "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>"]

LLAMA_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}<|end|>"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}<|end|>"
    "{% elif m['role'] == 'tool' %}<|tool|>{{ m['content'] }}<|end|>"
    "{% else %}<|assistant|>{{ m['content'] }}"
    "{% if m.get('tool_calls') %}{% for tool_call in m['tool_calls'] %}"
    "{% set tool_call = tool_call.function %}<tool_call>{\"name\": \"{{ tool_call.name }}\", "
    "\"arguments\": {{ tool_call.arguments | tojson }}}</tool_call>{% endfor %}{% endif %}"
    "<|end|>{% endif %}"
    "{% endfor %}"
    "{% if tools %}<|system|>tools: {{ tools | tojson }}<|end|>{% endif %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _save(model, config: dict, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(path / "model.safetensors"), weights)
    (path / "config.json").write_text(json.dumps(config, indent=2))


def build_tiny_gpt_oss(path: Path, seed: int = 0, quantize_bits: int | None = None,
                       **overrides) -> Path:
    """A random 2-layer gpt_oss model folder (no tokenizer files: Harmony provides them)."""
    from mlx_lm.models import gpt_oss

    config = {**GPT_OSS_CONFIG, **overrides}
    mx.random.seed(seed)
    model = gpt_oss.Model(gpt_oss.ModelArgs.from_dict(config))
    if quantize_bits:
        import mlx.nn as nn

        nn.quantize(model, group_size=32, bits=quantize_bits)
        config = {**config, "quantization": {"group_size": 32, "bits": quantize_bits}}
    mx.eval(model.parameters())
    _save(model, config, path)
    return path


def _llama_tokenizer(path: Path) -> int:
    """Write a byte-level tokenizer; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import ByteLevel as ByteLevelProcessor

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    merges: list[tuple[str, str]] = []
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = ByteLevelProcessor(trim_offsets=False)
    tok.add_special_tokens(LLAMA_SPECIALS)
    tok.save(str(path / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin|>",
        "eos_token": "<|end|>",
        "model_max_length": 2048,
        "chat_template": LLAMA_TEMPLATE,
        "clean_up_tokenization_spaces": False,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (path / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<|begin|>", "eos_token": "<|end|>"})
    )
    return tok.get_vocab_size()


def build_tiny_llama(path: Path, seed: int = 0) -> Path:
    """A random 2-layer llama model with a tokenizer and chat template."""
    from mlx_lm.models import llama

    path.mkdir(parents=True, exist_ok=True)
    vocab_size = _llama_tokenizer(path)
    config = {
        "model_type": "llama",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "max_position_embeddings": 2048,
        "eos_token_id": None,
    }
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    config.pop("eos_token_id")
    _save(model, config, path)
    return path
