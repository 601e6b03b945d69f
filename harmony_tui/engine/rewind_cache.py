"""KV caches that a rejected speculative draft can rewind (mlx-lm #1914).

mlx-lm's ``RotatingKVCache`` (gpt-oss's sliding-window layers) overwrites its oldest slot with
every new token, so once it holds ``window`` tokens nothing can be taken back: verifying ``k``
drafted tokens writes ``k`` slots, and rejecting them would need the tokens they overwrote.

``WindowKVCache`` keeps the keys and values in temporal order in a buffer that holds the last
``window - 1 + slack`` tokens *before* each update (plus the new ones), and masks attention to
the window itself. Rewinding by up to ``slack`` tokens just moves ``offset`` back: the tokens
that then fall back inside the window are still there. The buffer grows by ``step`` slots and is
compacted (the needed tail copied to the front) when full, so a token step costs an in-place
write plus, every ``step`` tokens, one copy of at most ``window + slack`` tokens.

Full-attention layers (``KVCache`` and the engine's ``QuantizedKV``) are trimmable already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harmony_tui.errors import HarmonyTuiError


class NotRewindableError(HarmonyTuiError):
    """The model has a layer cache that speculative decoding cannot rewind."""

    error_code = "invalid_request"


class WindowKVCache:
    """A sliding-window attention cache (window ``window``) rewindable by ``slack`` tokens.

    ``keys``/``values`` are ``(B, H, capacity, D)`` buffers; slot ``i`` holds position
    ``start + i`` and slots ``[0, offset - start)`` are filled.
    """

    step = 256

    def __init__(self, window: int, slack: int) -> None:
        self.window = window
        self.slack = slack
        self.keys: Any = None
        self.values: Any = None
        self.offset = 0
        self.start = 0

    @classmethod
    def from_rotating(cls, layer: Any, slack: int) -> WindowKVCache:
        """The same tokens as a ``RotatingKVCache`` (``keep == 0``), in a rewindable cache."""
        from harmony_tui.engine.prompt_cache import rotating_snapshot

        out = cls(layer.max_size, slack)
        ordered = rotating_snapshot(layer)  # the last max_size tokens, in temporal order
        out.offset = layer.offset
        if ordered.keys is not None:
            out.keys, out.values = ordered.keys, ordered.values
            out.start = layer.offset - ordered.keys.shape[2]
        return out

    # -- the cache protocol (what mlx-lm models call) -----------------------------------------

    @property
    def stored(self) -> int:
        return self.offset - self.start

    def _prior(self) -> int:
        """Earlier tokens the next update's first query attends to (at most window - 1)."""
        return min(self.stored, self.window - 1)

    def update_and_fetch(self, keys: Any, values: Any) -> tuple[Any, Any]:
        import mlx.core as mx

        count = keys.shape[2]
        prior = self._prior()
        filled = self.stored
        if self.keys is None or filled + count > self.keys.shape[2]:
            keep = min(filled, self.window - 1 + self.slack)
            capacity = keep + count + self.step

            def grow(old: Any, new: Any) -> Any:
                buffer = mx.zeros((*new.shape[:2], capacity, new.shape[3]), dtype=new.dtype)
                if old is not None and keep:
                    buffer[..., :keep, :] = old[..., filled - keep:filled, :]
                return buffer

            self.keys, self.values = grow(self.keys, keys), grow(self.values, values)
            self.start = self.offset - keep
            filled = keep
        self.keys[..., filled:filled + count, :] = keys
        self.values[..., filled:filled + count, :] = values
        self.offset += count
        lo = filled - prior
        end = filled + count
        return self.keys[..., lo:end, :], self.values[..., lo:end, :]

    def make_mask(self, N: int, window_size: int | None = None,
                  return_array: bool = False) -> Any:
        from mlx_lm.models.base import create_causal_mask

        window = window_size or self.window
        prior = self._prior()
        if N == 1 and not return_array:
            return None  # at most window - 1 earlier keys are handed out: all are visible
        if prior + N > window or return_array:
            return create_causal_mask(N, prior, window_size=window)
        return "causal"

    def is_trimmable(self) -> bool:
        return True

    def trim(self, n: int) -> int:
        """Rewind ``n`` tokens (fewer if the tokens the window then needs are gone)."""
        room = self.stored - (self.window - 1) if self.start else self.stored
        n = max(0, min(n, room))
        self.offset -= n
        return n

    def size(self) -> int:
        return min(self.offset, self.window)

    def empty(self) -> bool:
        return self.keys is None

    @property
    def state(self) -> tuple[Any, Any]:
        if self.keys is None:
            return (), ()
        return self.keys[..., :self.stored, :], self.values[..., :self.stored, :]

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else int(self.keys.nbytes + self.values.nbytes)


def rewindable(cache: list[Any], slack: int) -> list[Any]:
    """``cache`` with every sliding-window layer made rewindable by ``slack`` tokens (a new list;
    the full-attention layers are the same objects). NotRewindableError for a layer kind that
    cannot be rewound (recurrent state, ``keep`` tokens)."""
    out: list[Any] = []
    for layer in cache:
        kind = type(layer).__name__
        if kind == "RotatingKVCache" and getattr(layer, "keep", 0) == 0:
            out.append(WindowKVCache.from_rotating(layer, slack))
        elif isinstance(layer, WindowKVCache) or (
                kind in ("KVCache", "QuantizedKV") and hasattr(layer, "offset")):
            out.append(layer)
        else:
            raise NotRewindableError(f"speculative decoding cannot rewind this model's {kind} "
                                     "layers (only attention caches can be rewound)")
    return out


def rewind(cache: Sequence[Any], n: int) -> None:
    """Take the last ``n`` tokens back out of every layer of ``cache``."""
    if n <= 0:
        return
    for layer in cache:
        taken = layer.trim(n)
        if taken != n:
            raise RuntimeError(f"a {type(layer).__name__} layer rewound {taken} of {n} tokens")
