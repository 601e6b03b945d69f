"""A faster output head on the CPU: the head's weight stored transposed.

MLX stores a ``Linear`` weight as ``[out, in]`` and multiplies by ``x @ W.T``. On the CPU
backend that product is about twice as slow as ``x @ Wt`` with ``Wt`` the same weight stored
``[in, out]`` contiguously (measured on the demo model: a batch of 8 rows 115 ms against 55 ms,
one row 12 ms against 8 ms), and the output head (vocabulary x hidden) is most of a decode step
of a small model: the demo's vocabulary has 201,088 entries. The gain grows with the rows per
step, so continuous batching gains the most.

``transpose_head`` swaps an untied, unquantized ``lm_head`` for a ``TransposedHead``, which holds
only the transposed copy (the original is dropped: no extra memory once loaded). The logits are
the same bits as before with MLX's reference BLAS (tests/test_fast_head.py checks it); because
another BLAS (an ``LD_PRELOAD``ed OpenBLAS, say) might sum in another order for one layout, a
small probe (a slice of the head, one row and a batch of rows) compares both layouts at load and
keeps the original head if any bit differs. It does nothing on Metal (MLX's default is
its fast path there), for quantized heads, tied embeddings (a transposed copy would cost memory)
or anything that is not a plain ``nn.Linear``.
"""

from __future__ import annotations

import functools
from typing import Any

PROBE_COLUMNS = 4096  # head rows (vocabulary entries) the load-time probe multiplies
PROBE_ROWS = 8


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
    if not same_bits(head.weight, weight_t):
        return False
    model.lm_head = head_class()(weight_t)
    return True


def same_bits(weight: Any, weight_t: Any) -> bool:
    """Whether ``x @ weight.T`` and ``x @ weight_t`` agree bit for bit on a probe (a slice of
    the head; one row and ``PROBE_ROWS`` rows). Leaves the global random state alone."""
    import mlx.core as mx

    cols = min(weight.shape[0], PROBE_COLUMNS)
    plain, transposed = weight[:cols], mx.contiguous(weight_t[:, :cols])
    x = mx.random.normal((PROBE_ROWS, weight.shape[1]), key=mx.random.key(0)).astype(weight.dtype)
    return all(mx.array_equal(x[:rows] @ plain.T, x[:rows] @ transposed).item()
               for rows in (1, PROBE_ROWS))
