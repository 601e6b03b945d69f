"""A faster output head on the CPU: the head's weight stored transposed.

MLX stores a ``Linear`` weight as ``[out, in]`` and multiplies by ``x @ W.T``. On the CPU
backend that product is about twice as slow as ``x @ Wt`` with ``Wt`` the same weight stored
``[in, out]`` contiguously (measured on the demo model: a batch of 8 rows 115 ms against 55 ms,
one row 12 ms against 8 ms), and the output head (vocabulary x hidden) is most of a decode step
of a small model: the demo's vocabulary has 201,088 entries. The gain grows with the rows per
step, so continuous batching gains the most.

``transpose_head`` swaps an untied, unquantized ``lm_head`` for a ``TransposedHead``, which holds
only the transposed copy (the original is dropped: no extra memory). The logits are the same
bits as before (tests/test_fast_head.py checks it). It does nothing on Metal (MLX's default is
its fast path there), for quantized heads, tied embeddings (a transposed copy would cost memory)
or anything that is not a plain ``nn.Linear``.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def head_class() -> type:
    """``TransposedHead``: an ``nn.Linear`` without bias whose weight is kept as ``[in, out]``
    (``weight_t``). Built on first use, so importing this module does not import MLX."""
    import mlx.nn as nn

    class TransposedHead(nn.Module):
        def __init__(self, weight_t: Any) -> None:
            super().__init__()
            self.weight_t = weight_t

        def __call__(self, x: Any) -> Any:
            return x @ self.weight_t

    return TransposedHead


def transpose_head(model: Any) -> bool:
    """Replace ``model.lm_head`` by a ``TransposedHead`` where that is faster and free; True
    when it did."""
    import mlx.core as mx
    import mlx.nn as nn

    head = getattr(model, "lm_head", None)
    if mx.default_device().type != mx.DeviceType.cpu or type(head) is not nn.Linear \
            or "bias" in head or head.weight.ndim != 2:
        return False
    weight_t = mx.contiguous(head.weight.T)
    mx.eval(weight_t)
    model.lm_head = head_class()(weight_t)
    return True
