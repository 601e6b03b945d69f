"""Undo a response's ``Content-Encoding`` incrementally, never producing more than a budget.

httpx decodes each received chunk in one call, so 1.8 KB of ``gzip, gzip`` expands to 1 GiB
before any size cap can look at it. Here every layer is a ``zlib`` decompressor asked for at most
``STEP`` bytes at a time (``max_length``), and decoding stops as soon as the page budget is full,
so memory and work stay proportional to the budget whatever the compression ratio.
"""

from __future__ import annotations

import zlib
from typing import Any

STEP = 64 * 1024
INTERMEDIATE_FACTOR = 16  # an inner (still encoded) layer may pass at most this many budgets


class UnsupportedEncoding(ValueError):
    """A ``Content-Encoding`` this decoder does not undo."""


class DecodeError(ValueError):
    """The body is not valid data for its declared encoding."""


class _Layer:
    """One ``gzip`` or ``deflate`` layer (deflate: zlib-wrapped, or raw as some servers send)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.passed = 0
        self._raw_fallback = name == "deflate"
        wbits = zlib.MAX_WBITS | 16 if name == "gzip" else zlib.MAX_WBITS
        self._inflater: Any = zlib.decompressobj(wbits)
        self._started = False

    def decompress(self, data: bytes, limit: int) -> bytes:
        try:
            out = self._inflater.decompress(data, limit)
        except zlib.error as err:
            if self._raw_fallback and not self._started:
                self._raw_fallback = False
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decompress(data, limit)
            raise DecodeError(f"the body is not valid {self.name} data ({err})") from err
        self._started = True
        if self.name == "gzip" and self._inflater.eof and self._inflater.unused_data:
            # a gzip body may hold several members one after the other
            rest = self._inflater.unused_data
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
            if out:
                return out + self.decompress(rest, max(limit - len(out), 1))
            return self.decompress(rest, limit)
        return out

    @property
    def tail(self) -> bytes:
        return bytes(self._inflater.unconsumed_tail)


def parse_encodings(header: str | None) -> list[str]:
    """The layers to undo, outermost first; UnsupportedEncoding for anything not gzip/deflate."""
    names = [part.strip().lower() for part in (header or "").split(",")]
    layers = []
    for name in names:
        if name in ("", "identity"):
            continue
        if name == "x-gzip":
            name = "gzip"
        if name not in ("gzip", "deflate"):
            raise UnsupportedEncoding(f"the page uses the content encoding {name!r}; the "
                                      "browser reads gzip, deflate or uncompressed pages")
        layers.append(name)
    return layers[::-1]  # the header lists them in the order they were applied


class BoundedDecoder:
    """Feed raw body chunks; ``body`` collects at most ``limit`` decoded bytes."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        self.limit = limit
        self.body = bytearray()
        self.truncated = False
        self._layers = [_Layer(name) for name in parse_encodings(content_encoding)]

    def feed(self, data: bytes) -> None:
        """Decode ``data``; sets ``truncated`` (and ignores the rest) once the budget is full."""
        if not self.truncated and data:
            self._push(0, data)

    def _push(self, index: int, data: bytes) -> None:
        if index == len(self._layers):
            room = self.limit - len(self.body)
            self.body += data[:room]
            if len(data) > room:
                self.truncated = True
            return
        layer = self._layers[index]
        while data and not self.truncated:
            out = layer.decompress(data, STEP)
            if not out:  # all input consumed (zlib keeps a tail only when max_length is hit)
                break
            data = layer.tail
            layer.passed += len(out)
            if index + 1 < len(self._layers) and layer.passed > INTERMEDIATE_FACTOR * self.limit:
                self.truncated = True
                return
            self._push(index + 1, out)
