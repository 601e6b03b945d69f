"""A prompt cache on disk, so a resumed chat continues without re-reading its history.

The file is mlx-lm's prompt-cache safetensors (``save_prompt_cache``): the newest trunk's
cache at its last checkpoint, followed by the sliding-window snapshots of up to
``EARLIER_CHECKPOINTS`` earlier checkpoints on it (the start of the last assistant turn, the last
user message: what the next turn, an edit or a regenerate continue from). Its metadata holds
the tokens it covers (and their SHA-256) and the model's key, so a file made by another model,
or damaged, is ignored. Where the file lives is the caller's choice (the engine knows no chats).
Everything here runs on the generation thread.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harmony_tui.engine.kv_quant import QuantizedKV

FORMAT = "harmony-tui-prompt-cache-1"
EARLIER_CHECKPOINTS = 4


def model_key(loaded: Any) -> str:
    """Identifies a model's weights: its folder, config and weight files' sizes and times."""
    path = Path(loaded.path)
    digest = hashlib.sha256(json.dumps(loaded.config, sort_keys=True, default=str).encode())
    digest.update(str(path.resolve()).encode())
    for weights in sorted(path.glob("*.safetensors")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def tokens_sha(tokens: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()


def _for_file(layer: Any) -> Any:
    """``layer`` as an mlx-lm cache class holding only its tokens (no spare capacity)."""
    from mlx_lm.models.cache import KVCache, QuantizedKVCache

    if isinstance(layer, QuantizedKV):
        out = QuantizedKVCache(layer.kv_group_size, layer.kv_bits)
        out.keys, out.values = layer.state
        out.offset = layer.offset
        return out
    if type(layer).__name__ == "KVCache" and layer.keys is not None:
        out = KVCache()
        out.keys = layer.keys[..., :layer.offset, :]
        out.values = layer.values[..., :layer.offset, :]
        out.offset = layer.offset
        return out
    return layer


def _from_file(layer: Any, heads: int) -> Any:
    if type(layer).__name__ == "QuantizedKVCache":
        out = QuantizedKV(layer.bits, layer.group_size, heads)
        out.keys, out.values, out.offset = tuple(layer.keys), tuple(layer.values), layer.offset
        out.plain_itemsize = layer.keys[1].dtype.size
        return out
    return layer


def save(store: Any, loaded: Any, path: Path, max_bytes: int) -> int:
    """Write the newest checkpoints of ``store`` to ``path``; returns bytes written.

    Nothing is written (and an older file at ``path`` is removed, being stale) when the store
    is empty or the cache would take more than ``max_bytes``.
    """
    import mlx.core as mx
    from mlx_lm.models.cache import save_prompt_cache

    exported = store.export(EARLIER_CHECKPOINTS)
    layers: list[Any] = []
    if exported is not None:
        tokens, cache, earlier = exported
        positions = sorted(earlier)
        snapshot_layers = sorted(earlier[positions[0]]) if positions else []
        layers = [_for_file(layer) for layer in cache]
        layers += [earlier[p][i] for p in positions for i in snapshot_layers]
    size = sum(int(a.nbytes) for layer in layers for a in _arrays(layer.state))
    if not layers or size > max_bytes:
        path.unlink(missing_ok=True)
        return 0
    heads = {str(i): layer.heads for i, layer in enumerate(cache) if isinstance(layer, QuantizedKV)}
    metadata = {
        "format": FORMAT, "model": model_key(loaded), "tokens": json.dumps(tokens),
        "tokens_sha256": tokens_sha(tokens), "layers": str(len(cache)),
        "positions": json.dumps(positions), "snapshot_layers": json.dumps(snapshot_layers),
        "quantized_heads": json.dumps(heads),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.safetensors")
    try:
        save_prompt_cache(str(temp), layers, metadata)
        mx.synchronize()
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.stat().st_size


def _arrays(state: Any) -> list[Any]:
    import mlx.core as mx

    out: list[Any] = []
    for item in state if isinstance(state, tuple | list) else (state,):
        if isinstance(item, mx.array):
            out.append(item)
        elif isinstance(item, tuple | list):
            out.extend(_arrays(item))
    return out


def load(store: Any, loaded: Any, path: Path) -> int:
    """Put the checkpoints of ``path`` into ``store``; returns the tokens they cover (0: no
    file, another model's, or unreadable)."""
    from mlx_lm.models.cache import load_prompt_cache

    if not path.is_file():
        return 0
    try:
        layers, metadata = load_prompt_cache(str(path), return_metadata=True)
        if metadata.get("format") != FORMAT or metadata.get("model") != model_key(loaded):
            return 0
        tokens = [int(t) for t in json.loads(metadata["tokens"])]
        if tokens_sha(tokens) != metadata.get("tokens_sha256"):
            return 0
        count = int(metadata["layers"])
        heads = {int(i): h for i, h in json.loads(metadata["quantized_heads"]).items()}
        positions = json.loads(metadata["positions"])
        snapshot_layers = json.loads(metadata["snapshot_layers"])
    except Exception:  # a damaged or foreign file is only a missed speed-up
        return 0
    cache = [_from_file(layer, heads.get(i, 0)) for i, layer in enumerate(layers[:count])]
    rest = iter(layers[count:])
    earlier = {int(p): {i: next(rest) for i in snapshot_layers} for p in positions}
    store.store(tokens, cache, earlier)
    return len(tokens)
