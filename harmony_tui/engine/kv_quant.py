"""KV-cache quantization of the full-attention layers (``kv_bits``, ``kv_group_size``,
``quantized_kv_start``).

mlx-lm's ``QuantizedKVCache`` hands attention packed arrays, and its quantized attention refuses
attention sinks, which every gpt-oss layer has. ``QuantizedKV`` stores the keys and values
packed (``mx.quantize``) and hands attention a dequantized view, so it works with any attention,
sinks included; memory held between steps is the packed size. It is trimmable like ``KVCache``
(the prompt cache shares and slices it the same way) and merges into mlx-lm's batch cache by
dequantizing. Sliding-window layers stay as they are: they hold at most ``window`` tokens.

Rows are quantized per head (``head_dim`` divisible by the group size) or, for models with
small heads (the demo's 16), per token across all key/value heads (stored with one "head" of
``heads * head_dim`` values), so the group size still divides the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harmony_tui.engine.params import KV_GROUP_SIZES
from harmony_tui.errors import HarmonyTuiError

GROUP_SIZES = KV_GROUP_SIZES


class KVQuantizationError(HarmonyTuiError):
    """The model's key/value rows cannot be quantized with the requested group size."""

    error_code = "invalid_request"


@dataclass(frozen=True, slots=True)
class KVQuantization:
    """What to quantize: ``bits`` and ``group_size``, once a layer holds ``start`` tokens."""

    bits: int
    group_size: int = 64
    start: int = 0

    @classmethod
    def of(cls, params: Any) -> KVQuantization | None:
        """The quantization ``GenerationParams`` ask for (None: full precision)."""
        if getattr(params, "kv_bits", None) is None:
            return None
        return cls(params.kv_bits, params.kv_group_size, params.quantized_kv_start)


def _tree(fn: Callable[[Any], Any], packed: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(fn(a) for a in packed)


class QuantizedKV:
    """A full-attention KV cache held quantized and read dequantized (see the module doc).

    ``keys``/``values`` are ``(packed, scales, biases)`` tuples with tokens on axis 2, like
    mlx-lm's ``QuantizedKVCache``; ``heads`` > 0 means rows span all ``heads`` key/value heads.
    """

    step = 256

    def __init__(self, bits: int, group_size: int, heads: int = 0) -> None:
        self.kv_bits = bits  # not ``bits``: mlx-lm's attention would take the packed path
        self.kv_group_size = group_size
        self.heads = heads
        self.keys: tuple[Any, ...] | None = None
        self.values: tuple[Any, ...] | None = None
        self.offset = 0
        self.plain_itemsize = 4  # bytes per value at full precision (set from the input)

    # -- packing -----------------------------------------------------------------------------

    def _rows(self, x: Any) -> Any:
        """(B, H, L, D) -> the stored row layout."""
        if not self.heads:
            return x
        b, h, length, d = x.shape
        return x.transpose(0, 2, 1, 3).reshape(b, 1, length, h * d)

    def _unrows(self, x: Any) -> Any:
        if not self.heads:
            return x
        b, _, length, width = x.shape
        return x.reshape(b, length, self.heads, width // self.heads).transpose(0, 2, 1, 3)

    def _pack(self, x: Any) -> tuple[Any, ...]:
        import mlx.core as mx

        return tuple(mx.quantize(self._rows(x), group_size=self.kv_group_size,
                                 bits=self.kv_bits))

    def _unpack(self, packed: tuple[Any, ...], length: int) -> Any:
        import mlx.core as mx

        parts = _tree(lambda a: a[..., :length, :], packed)
        return self._unrows(mx.dequantize(*parts, group_size=self.kv_group_size,
                                          bits=self.kv_bits))

    # -- the cache protocol (what mlx-lm models call) -----------------------------------------

    def update_and_fetch(self, keys: Any, values: Any) -> tuple[Any, Any]:
        import mlx.core as mx

        prev, count = self.offset, keys.shape[2]
        self.plain_itemsize = keys.dtype.size
        new_k, new_v = self._pack(keys), self._pack(values)
        if self.keys is None or prev + count > self.keys[0].shape[2]:
            grow = (self.step + count - 1) // self.step * self.step

            def extend(old: Any, new: Any) -> Any:
                pad = mx.zeros((*new.shape[:2], grow, new.shape[3]), dtype=new.dtype)
                if old is None:
                    return pad
                return mx.concatenate([old[..., :prev, :], pad], axis=2)

            self.keys = tuple(extend(o, n) for o, n in
                              zip(self.keys or (None,) * 3, new_k, strict=True))
            self.values = tuple(extend(o, n) for o, n in
                                zip(self.values or (None,) * 3, new_v, strict=True))
        self.offset += count
        for stored, new in ((self.keys, new_k), (self.values, new_v)):
            for array, part in zip(stored, new, strict=True):
                array[..., prev:self.offset, :] = part
        return self._unpack(self.keys, self.offset), self._unpack(self.values, self.offset)

    def make_mask(self, *args: Any, **kwargs: Any) -> Any:
        from mlx_lm.models.cache import create_attention_mask

        return create_attention_mask(*args, offset=self.offset, **kwargs)

    def size(self) -> int:
        return self.offset

    def empty(self) -> bool:
        return self.keys is None

    def is_trimmable(self) -> bool:
        return True

    def trim(self, n: int) -> int:
        n = min(self.offset, n)
        self.offset -= n
        return n

    @property
    def state(self) -> tuple[Any, Any]:
        if self.keys is None or self.values is None:
            return (), ()
        return (_tree(lambda a: a[..., :self.offset, :], self.keys),
                _tree(lambda a: a[..., :self.offset, :], self.values))

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in (*(self.keys or ()), *(self.values or ())))

    @property
    def saved_bytes(self) -> int:
        """Bytes these tokens would take at full precision, minus what they take packed."""
        if self.keys is None or self.values is None:
            return 0
        values_per_row = (self.keys[1].shape[-1] + self.values[1].shape[-1]) \
            * self.kv_group_size * self.keys[0].shape[1] * self.keys[0].shape[0]
        plain = self.offset * values_per_row * self.plain_itemsize
        packed = self.nbytes * self.offset // max(self.keys[0].shape[2], 1)
        return max(plain - packed, 0)

    @classmethod
    def merge(cls, caches: Sequence[Any]) -> Any:
        """mlx-lm's batch cache of ``caches`` (dequantized: the batch runs at full precision)."""
        from mlx_lm.models.cache import BatchKVCache

        return BatchKVCache.merge([dequantized(c) for c in caches])

    # -- conversions ---------------------------------------------------------------------------

    def like(self, keys: tuple[Any, ...], values: tuple[Any, ...], offset: int) -> QuantizedKV:
        """A cache of the same settings holding ``keys``/``values`` (``offset`` tokens)."""
        layer = QuantizedKV(self.kv_bits, self.kv_group_size, self.heads)
        layer.keys, layer.values, layer.offset = keys, values, offset
        layer.plain_itemsize = self.plain_itemsize
        return layer

    @classmethod
    def from_plain(cls, layer: Any, quant: KVQuantization) -> QuantizedKV:
        """``layer`` (a ``KVCache``) quantized; KVQuantizationError if its rows cannot be."""
        out = cls(quant.bits, quant.group_size)
        out.offset = layer.offset
        if layer.keys is None:
            return out
        _, heads, _, dim = layer.keys.shape
        out.heads = row_heads(heads, dim, quant.group_size)
        out.plain_itemsize = layer.keys.dtype.size
        out.keys = out._pack(layer.keys[..., :layer.offset, :])
        out.values = out._pack(layer.values[..., :layer.offset, :])
        return out

    def to_plain(self) -> Any:
        """A ``KVCache`` holding these tokens dequantized."""
        from mlx_lm.models.cache import KVCache

        layer = KVCache()
        if self.keys is not None and self.values is not None:
            layer.keys = self._unpack(self.keys, self.offset)
            layer.values = self._unpack(self.values, self.offset)
            layer.offset = self.offset
        return layer


def row_heads(heads: int, head_dim: int, group_size: int) -> int:
    """0 to quantize per head, ``heads`` to quantize a token's whole row; or an error."""
    if head_dim % group_size == 0:
        return 0
    if (heads * head_dim) % group_size == 0:
        return heads
    fits = [g for g in GROUP_SIZES if head_dim % g == 0 or (heads * head_dim) % g == 0]
    shape = f"{heads} heads x {head_dim} values"
    if fits:
        raise KVQuantizationError(f"kv_group_size={group_size} does not divide this model's "
                                  f"key/value rows ({shape}); use "
                                  + " or ".join(map(str, fits)))
    raise KVQuantizationError(f"kv_bits: this model's key/value rows ({shape}) are too small "
                              "to quantize")


def check_model(model: Any, quant: KVQuantization | None) -> None:
    """KVQuantizationError now, before the turn starts, if ``model``'s rows cannot be
    quantized with ``quant`` (models whose shape is not known are checked when quantized)."""
    if quant is None:
        return
    args = getattr(model, "args", None)
    heads = getattr(args, "num_key_value_heads", None)
    dim = getattr(args, "head_dim", None)
    if dim is None and args is not None:
        hidden = getattr(args, "hidden_size", None)
        attention = getattr(args, "num_attention_heads", None)
        dim = hidden // attention if hidden and attention else None
    if isinstance(heads, int) and isinstance(dim, int):
        row_heads(heads, dim, quant.group_size)


def _plain(layer: Any) -> bool:
    return type(layer).__name__ == "KVCache" and hasattr(layer, "offset")


def dequantized(layer: Any) -> Any:
    return layer.to_plain() if isinstance(layer, QuantizedKV) else layer


class KVQuantizer:
    """Applies ``quant`` to a cache list in place: after each prefill chunk and token step
    (quantizing full-attention layers that reached ``start`` tokens), and once at the start of
    a turn (``conform``: a cache from the prompt cache made under other settings is converted).
    """

    def __init__(self, quant: KVQuantization | None) -> None:
        self.quant = quant
        self._done = quant is None

    def conform(self, cache: list[Any]) -> None:
        for index, layer in enumerate(cache):
            if isinstance(layer, QuantizedKV) and (
                    self.quant is None or (layer.kv_bits, layer.kv_group_size)
                    != (self.quant.bits, self.quant.group_size)):
                cache[index] = layer.to_plain()
        self(cache)

    def __call__(self, cache: list[Any]) -> None:
        if self._done:
            return
        assert self.quant is not None
        waiting = False
        for index, layer in enumerate(cache):
            if _plain(layer):
                if layer.offset >= self.quant.start and layer.keys is not None:
                    cache[index] = QuantizedKV.from_plain(layer, self.quant)
                else:
                    waiting = True
        self._done = not waiting


def saved_bytes(cache: Sequence[Any]) -> int:
    """Bytes the quantized layers of ``cache`` save against full precision."""
    return sum(layer.saved_bytes for layer in cache if isinstance(layer, QuantizedKV))


def cache_bytes(cache: Sequence[Any]) -> int:
    """Bytes ``cache`` holds (every layer)."""
    total = 0
    for layer in cache:
        try:
            total += int(layer.nbytes)
        except Exception:
            pass
    return total
