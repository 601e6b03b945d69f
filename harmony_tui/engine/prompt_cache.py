"""KV-cache checkpoints that later prompts continue from: one shared cache, small snapshots.

A later prompt can share a prefix with an earlier one at a few known places: the start of an
assistant turn (the next turn, or the next sub-turn after a tool call, extends it; the next
user turn drops the turn's analysis and diverges right there) and the start of each user
message (an edit, or regenerating an older turn, diverges inside that message). The engine
takes a *checkpoint* at those places while it prefills.

Checkpoints are cheap because of how the layers' caches behave:

- Full-attention layers use a plain ``KVCache``: the keys and values at positions ``[0, P)``
  depend only on the first ``P`` tokens, so one cache holding the longest prompt serves every
  checkpoint on its path (a *trunk*), trimmed to the checkpoint's length by slicing. The trunk
  shares its arrays with the cache of the turn that made it (a turn only ever writes at or past
  its own length), so the newest trunk costs no copy.
- Sliding-window layers use ``RotatingKVCache``, which forgets tokens older than its window and
  so cannot be trimmed once full: each checkpoint keeps a snapshot of those layers only (at most
  ``window`` tokens each). Any other cache type is deep-copied per checkpoint.

A prompt continues from the trunk that shares its longest prefix, at that trunk's last
checkpoint inside the shared part (for a model whose caches are all ``KVCache``, anywhere in
it). A new trunk takes over the checkpoints of the older ones that lie on its path. The trunk
it replaces, if some of its checkpoints lie past the point where the paths split (another
branch of the chat: an edit, a regenerated answer, a tool call's sub-turn), stays as a *branch*
that keeps only its own part of the full-attention layers (from the split on) and borrows the
prefix from the newest trunk.

Memory: the newest trunk and its last checkpoint are free (the running turn holds that cache
anyway, and the next turn continues from it); everything else (branches, every other snapshot)
counts against ``budget_bytes`` (by default as much as the newest trunk, at least
``MIN_BUDGET_BYTES``: checkpoints then cost at most about two full caches), and the least
recently used goes first. Only the generation
thread touches the store.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_BUDGET_BYTES = 8 * 2**20

Snapshot = dict[int, Any]
"""Layer index -> a private copy of that layer's cache (the layers that cannot be shared)."""


def _is_shared(layer: Any) -> bool:
    """A plain ``KVCache`` or a ``QuantizedKV`` (kv_quant.py): trimmable by its offset, so one
    copy serves every prefix."""
    return type(layer).__name__ in ("KVCache", "QuantizedKV") and hasattr(layer, "offset")


def _signature(cache: Sequence[Any]) -> tuple[Any, ...]:
    """How each layer stores its tokens: trunks of different signatures cannot be combined."""
    return tuple((type(layer).__name__, getattr(layer, "kv_bits", None),
                  getattr(layer, "kv_group_size", None), getattr(layer, "heads", None))
                 for layer in cache)


def _map(fn: Any, array: Any) -> Any:
    """``fn`` on an array, or on each part of a quantized ``(packed, scales, biases)``."""
    return tuple(fn(a) for a in array) if isinstance(array, tuple) else fn(array)


def _arrays(pairs: Any) -> list[Any]:
    """Every MLX array in ``(keys, values)`` pairs."""
    out: list[Any] = []
    for pair in pairs:
        for side in pair:
            out.extend(side if isinstance(side, tuple) else (side,))
    return out


def _concat(head: Any, tail: Any) -> Any:
    import mlx.core as mx

    if isinstance(head, tuple):
        return tuple(mx.concatenate([h, t], axis=2) for h, t in zip(head, tail, strict=True))
    return mx.concatenate([head, tail], axis=2)


def _is_rotating(layer: Any) -> bool:
    return type(layer).__name__ == "RotatingKVCache" and hasattr(layer, "max_size")


def _nbytes(layer: Any) -> int:
    try:
        return int(layer.nbytes)
    except Exception:
        return 0


def rotating_snapshot(layer: Any) -> Any:
    """The last ``max_size`` tokens of a ``RotatingKVCache``, in temporal order, own arrays."""
    import mlx.core as mx
    from mlx_lm.models.cache import RotatingKVCache

    snap = RotatingKVCache(layer.max_size, layer.keep)
    snap.offset = layer.offset
    if layer.keys is None:
        return snap
    keys, values = layer.keys, layer.values
    idx, size = layer._idx, keys.shape[2]
    if idx != size:  # rotated (or preallocated past the end): put it in temporal order
        if idx < layer.offset:
            keep = layer.keep

            def order(v: Any) -> Any:
                return mx.concatenate([v[..., :keep, :], v[..., idx:, :], v[..., keep:idx, :]],
                                      axis=2)
        else:
            def order(v: Any) -> Any:
                return v[..., :idx, :]
        keys, values = order(keys), order(values)
    length = keys.shape[2]
    if length > layer.max_size and layer.keep == 0:
        keys, values = keys[..., -layer.max_size:, :], values[..., -layer.max_size:, :]
    snap.keys, snap.values = mx.array(keys), mx.array(values)
    snap._idx = snap.keys.shape[2]
    mx.eval(snap.keys, snap.values)
    return snap


def _restore_rotating(snap: Any) -> Any:
    from mlx_lm.models.cache import RotatingKVCache

    layer = RotatingKVCache(snap.max_size, snap.keep)
    layer.offset, layer._idx = snap.offset, snap._idx
    if snap.keys is not None:  # new array objects: the turn's in-place writes stay its own
        layer.keys, layer.values = snap.keys[...], snap.values[...]
    return layer


def snapshot(cache: Sequence[Any]) -> Snapshot:
    """Copies of the layers of ``cache`` that cannot be shared between checkpoints."""
    out: Snapshot = {}
    for index, layer in enumerate(cache):
        if _is_shared(layer):
            continue
        out[index] = rotating_snapshot(layer) if _is_rotating(layer) else copy.deepcopy(layer)
    return out


def checkpoint_stops(fmt: Any, cache: Sequence[Any], prompt: Sequence[int],
                     start: int) -> list[int]:
    """Positions past ``start`` where prefill should stop to snapshot ``cache`` (none when
    every layer is shared: any prefix is then reusable without a snapshot)."""
    if all(_is_shared(layer) for layer in cache):
        return []
    positions = getattr(fmt, "checkpoint_positions", None)
    if positions is None:
        return []
    return [p for p in positions(prompt) if start < p < len(prompt) - 1]


def _snapshot_bytes(snap: Snapshot) -> int:
    return sum(_nbytes(layer) for layer in snap.values())


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    step = 256
    i = 0
    while i < n and a[i:i + step] == b[i:i + step]:  # compare in blocks, then token by token
        i += step
    i = min(i, n)
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class _Checkpoint:
    layers: Snapshot
    nbytes: int
    used: int


@dataclass
class _Trunk:
    """A path of checkpoints. The newest trunk (``base == 0``) holds the full-attention layers
    for all its tokens; an older one (a *branch*) holds only ``[base, len(tokens))`` and takes
    ``[0, base)`` from the newest trunk, with which it shares that prefix."""

    tokens: list[int]
    shared: dict[int, tuple[Any, Any]]  # layer index -> (keys, values) for [base, len(tokens))
    kinds: int  # number of layers
    templates: dict[int, Any] = field(default_factory=dict)  # layer index -> empty QuantizedKV
    checkpoints: dict[int, _Checkpoint] = field(default_factory=dict)
    used: int = 0
    base: int = 0

    @property
    def anywhere(self) -> bool:
        """Every layer is shared: any prefix of ``tokens`` is a checkpoint."""
        return len(self.shared) == self.kinds

    @property
    def shared_bytes(self) -> int:
        return sum(int(a.nbytes) for a in _arrays(self.shared.values()))

    def usable(self, common: int) -> int:
        """The longest checkpoint at or before ``common`` tokens (0: none)."""
        if self.anywhere:
            return common
        return max((p for p in self.checkpoints if p <= common), default=0)

    def rebase(self, base: int, end: int) -> None:
        """Keep only ``[base, end)`` of the shared layers, in arrays of its own."""
        import mlx.core as mx

        lo, hi = base - self.base, end - self.base

        def cut(a: Any) -> Any:
            return mx.contiguous(a[..., lo:hi, :])

        self.shared = {i: (_map(cut, k), _map(cut, v)) for i, (k, v) in self.shared.items()}
        mx.eval(_arrays(self.shared.values()))
        self.tokens, self.base = self.tokens[:end], base


class PromptCacheStore:
    """Checkpoints on one or more trunks (see the module docstring)."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget_bytes = budget_bytes
        self._trunks: list[_Trunk] = []  # the newest (base 0) last
        self._signature: tuple[Any, ...] = ()
        self._clock = itertools.count(1)

    def __len__(self) -> int:
        """The number of checkpoints held."""
        return sum(len(t.checkpoints) for t in self._trunks)

    def clear(self) -> None:
        self._trunks.clear()
        self._signature = ()

    @property
    def nbytes(self) -> int:
        """Bytes held: every trunk's shared layers plus every snapshot."""
        return sum(t.shared_bytes + sum(c.nbytes for c in t.checkpoints.values())
                   for t in self._trunks)

    def stats(self) -> dict[str, int]:
        """Trunks, checkpoints and bytes: full-attention layers (``shared_bytes``, of which
        ``branch_bytes`` outside the newest trunk) and sliding-window snapshots."""
        shared = sum(t.shared_bytes for t in self._trunks)
        newest = self._trunks[-1].shared_bytes if self._trunks else 0
        return {"trunks": len(self._trunks), "checkpoints": len(self), "shared_bytes": shared,
                "branch_bytes": shared - newest, "snapshot_bytes": self.nbytes - shared}

    # -- lookup ---------------------------------------------------------------------------------

    def take(self, tokens: Sequence[int]) -> tuple[list[Any] | None, int]:
        """A cache holding the longest checkpointed prefix of ``tokens`` (at most
        ``len(tokens) - 1``) and that prefix's length; ``(None, 0)`` when there is none.

        The cache is the caller's: its writes never change a checkpoint.
        """
        limit = len(tokens) - 1
        best: _Trunk | None = None
        best_at = 0
        for trunk in reversed(self._trunks):  # newest first: it wins ties
            at = trunk.usable(min(_common_prefix(trunk.tokens, tokens), limit))
            if at > best_at:
                best, best_at = trunk, at
        if best is None:
            return None, 0
        tick = next(self._clock)
        best.used = tick
        checkpoint = best.checkpoints.get(best_at)
        if checkpoint is not None:
            checkpoint.used = tick
        return self._build(best, best_at, checkpoint), best_at

    def _build(self, trunk: _Trunk, at: int, checkpoint: _Checkpoint | None) -> list[Any]:
        from mlx_lm.models.cache import KVCache

        newest = self._trunks[-1]
        cache: list[Any] = []

        def upto(n: int) -> Any:
            return lambda a: a[..., :n, :]

        for index in range(trunk.kinds):
            if index in trunk.shared:
                keys, values = trunk.shared[index]
                if trunk.base == 0 and at == len(trunk.tokens):
                    # The turn writes only at positions >= at: the trunk's part stays intact.
                    pass
                elif trunk.base == 0 or at <= trunk.base:
                    keys, values = newest.shared[index] if trunk.base else (keys, values)
                    keys, values = _map(upto(at), keys), _map(upto(at), values)
                else:  # a branch: the newest trunk's prefix, then the branch's own part
                    head_k, head_v = newest.shared[index]
                    own = at - trunk.base
                    keys = _concat(_map(upto(trunk.base), head_k), _map(upto(own), keys))
                    values = _concat(_map(upto(trunk.base), head_v), _map(upto(own), values))
                template = trunk.templates.get(index)
                if template is not None:
                    cache.append(template.like(keys, values, at))
                    continue
                layer = KVCache()
                layer.keys, layer.values, layer.offset = keys, values, at
                cache.append(layer)
            else:
                assert checkpoint is not None
                snap = checkpoint.layers[index]
                cache.append(_restore_rotating(snap) if _is_rotating(snap)
                             else copy.deepcopy(snap))
        return cache

    def export(self, earlier: int) -> tuple[list[int], list[Any], dict[int, Snapshot]] | None:
        """The newest trunk's tokens up to its last checkpoint, the cache there, and the
        snapshots of up to ``earlier`` checkpoints before it (None: nothing is held)."""
        if not self._trunks:
            return None
        trunk = self._trunks[-1]
        if not trunk.anywhere and not trunk.checkpoints:
            return None
        end = len(trunk.tokens) if trunk.anywhere else max(trunk.checkpoints)
        cache = self._build(trunk, end, trunk.checkpoints.get(end))
        before = sorted(p for p in trunk.checkpoints if p < end)[-earlier:] if earlier else []
        return trunk.tokens[:end], cache, {p: trunk.checkpoints[p].layers for p in before}

    # -- storing --------------------------------------------------------------------------------

    def store(self, tokens: Sequence[int], cache: Sequence[Any],
              earlier: Mapping[int, Snapshot] | None = None) -> None:
        """Checkpoint ``cache``, which holds exactly ``tokens``; ``earlier`` adds snapshots
        taken at shorter prefixes of ``tokens`` while it was prefilled."""
        tokens = list(tokens)
        if not tokens or any(_is_shared(layer) and layer.keys is None for layer in cache):
            return
        tick = next(self._clock)
        snaps = dict(earlier or {})
        snaps[len(tokens)] = snapshot(cache)
        checkpoints = {position: _Checkpoint(snap, _snapshot_bytes(snap), tick)
                       for position, snap in snaps.items() if 0 < position <= len(tokens)}
        signature = _signature(cache)
        if signature != self._signature:
            self._trunks.clear()  # another model's caches, or another KV quantization
            self._signature = signature
        newest = self._trunks[-1] if self._trunks else None
        if newest is not None and len(newest.tokens) > len(tokens) \
                and _common_prefix(newest.tokens, tokens) == len(tokens):
            newest.checkpoints.update(checkpoints)  # its arrays already hold these tokens
            newest.used = tick
            self._evict()
            return
        import mlx.core as mx

        shared = {i: (layer.keys, layer.values) for i, layer in enumerate(cache)
                  if _is_shared(layer)}
        mx.eval(_arrays(shared.values()))
        templates = {i: layer.like((), (), 0) for i, layer in enumerate(cache)
                     if _is_shared(layer) and hasattr(layer, "like")}
        trunk = _Trunk(tokens, shared, len(cache), templates, checkpoints, used=tick)
        split = _common_prefix(newest.tokens, tokens) if newest is not None else 0
        # Branches lean on the newest trunk's prefix: give the ones past the split their part.
        for old in self._trunks[:-1]:
            if old.base > split and old.shared:
                def cut(a: Any, old: _Trunk = old) -> Any:
                    return mx.contiguous(a[..., split:old.base, :])

                head = {i: (_map(cut, k), _map(cut, v))
                        for i, (k, v) in newest.shared.items()}  # type: ignore[union-attr]
                old.shared = {i: (_concat(head[i][0], k), _concat(head[i][1], v))
                              for i, (k, v) in old.shared.items()}
                mx.eval(_arrays(old.shared.values()))
            old.base = min(old.base, split)
        kept: list[_Trunk] = []
        for old in self._trunks:
            common = _common_prefix(old.tokens, tokens)
            for position in [p for p in old.checkpoints if p <= common]:
                moved = old.checkpoints.pop(position)
                mine = trunk.checkpoints.get(position)
                if mine is None or moved.used > mine.used:
                    trunk.checkpoints[position] = moved
            if common >= len(old.tokens) or not (old.anywhere or old.checkpoints):
                continue  # the new trunk holds all of it, or nothing of it is reusable
            end = len(old.tokens) if old.anywhere else max(old.checkpoints)
            if old is newest:
                old.rebase(split, end)  # becomes a branch: keep its own part only
            elif end < len(old.tokens):
                old.rebase(old.base, end)
            kept.append(old)
        self._trunks = [*kept, trunk]
        self._evict()

    def _evict(self) -> None:
        """Drop least recently used snapshots and older trunks until within the budget."""
        newest = self._trunks[-1]
        end = newest.checkpoints.get(len(newest.tokens))
        free = newest.shared_bytes + (end.nbytes if end is not None else 0)
        budget = self.budget_bytes
        if budget is None:  # as much again as the newest cache (at least MIN_BUDGET_BYTES)
            budget = max(newest.shared_bytes, MIN_BUDGET_BYTES)
        while self.nbytes - free > budget:
            victims: list[tuple[int, int, _Trunk, int | None]] = []
            for order, trunk in enumerate(self._trunks):
                if trunk is not newest:
                    victims.append((trunk.used, order, trunk, None))
                victims.extend((c.used, order, trunk, p) for p, c in trunk.checkpoints.items()
                               if c is not end)
            if not victims:
                return
            _, _, trunk, position = min(victims, key=lambda v: (v[0], v[1]))
            if position is None:
                self._trunks.remove(trunk)
                continue
            del trunk.checkpoints[position]
            if trunk is not newest and not trunk.checkpoints and not trunk.anywhere:
                self._trunks.remove(trunk)
