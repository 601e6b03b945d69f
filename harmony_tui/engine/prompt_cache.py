"""KV-cache checkpoints taken at the end of each prompt, reused by the next turn.

GPT-OSS's sliding-window layers use ``RotatingKVCache``, which cannot be trimmed once full, so
"generate, then trim back" does not work across turns. Instead the engine checkpoints the cache
right after prefill (before any generated token) and the next prompt, which extends the previous
one, continues from that checkpoint. Trimmable caches (plain ``KVCache``) are also reused for a
shorter common prefix, e.g. after an edit.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class _Entry:
    tokens: tuple[int, ...]
    cache: list[Any]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PromptCacheStore:
    """A few checkpoints, most recent last. Only the generation thread touches it."""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._entries: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def take(self, tokens: Sequence[int]) -> tuple[list[Any] | None, int]:
        """A cache holding a prefix of ``tokens`` (at most ``len(tokens) - 1``) and its length.

        An exact prefix entry is handed over without copying (the turn will store a newer one);
        a longer, trimmable entry is copied and trimmed to the common prefix.
        """
        best, best_len = None, 0
        for entry in self._entries:
            n = len(entry.tokens)
            if n <= len(tokens) - 1 and n > best_len and tuple(tokens[:n]) == entry.tokens:
                best, best_len = entry, n
        if best is not None:
            self._entries.remove(best)
            return best.cache, best_len
        for entry in reversed(self._entries):
            common = min(_common_prefix(entry.tokens, tokens), len(tokens) - 1)
            if common > 0 and all(c.is_trimmable() for c in entry.cache):
                cache = copy.deepcopy(entry.cache)
                for c in cache:
                    c.trim(len(entry.tokens) - common)
                return cache, common
        return None, 0

    def store(self, tokens: Sequence[int], cache: list[Any]) -> None:
        """Keep a private copy of ``cache``, which holds exactly ``tokens``."""
        key = tuple(tokens)
        self._entries = [e for e in self._entries if e.tokens != key]
        self._entries.append(_Entry(key, copy.deepcopy(cache)))
        del self._entries[: -self.max_entries]
