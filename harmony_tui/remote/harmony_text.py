"""Raw Harmony arriving as text (``mlx_lm.server`` with gpt-oss) through our Harmony decoder.

Servers that do not parse Harmony send the model's output as ``content``, special tokens
written out: ``<|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>final...``.
``HarmonyText`` encodes each piece with the Harmony vocabulary (special tokens allowed) and
feeds the tokens to ``HarmonyDecoder``, so the analysis, the answer and the tool calls come out
exactly as from a local model. A special token cut between two pieces (``<|chan`` + ``nel|>``)
is held back until it is complete.
"""

from __future__ import annotations

import re
from typing import Any

from harmony_tui.engine.events import EndReason, Event

# The start of a special token at the end of a piece: held until the next piece completes it.
PARTIAL_SPECIAL = re.compile(r"<(\|[a-z_]{0,16}\|?)?$")
MARKERS = ("<|channel|>", "<|start|>", "<|message|>", "<|constrain|>")


def looks_like_harmony(text: str) -> bool | None:
    """True when ``text`` (the answer's start) is raw Harmony, False when it is not, None
    when too little has arrived to tell."""
    stripped = text.lstrip()
    if not stripped:
        return None
    if any(stripped.startswith(m) for m in MARKERS):
        return True
    if any(m.startswith(stripped) for m in MARKERS):
        return None
    return False


class HarmonyText:
    """Feeds text pieces to a ``HarmonyDecoder``; ``finish`` ends the turn."""

    def __init__(self, known: frozenset[str] = frozenset()) -> None:
        from harmony_tui.engine.formats.harmony_decoder import END, HarmonyDecoder
        from harmony_tui.engine.vocab import harmony_encoding

        self._encoding = harmony_encoding()
        self._end_token = END
        self.decoder: Any = HarmonyDecoder(self._encoding, known)
        self._held = ""
        self._last_special: int | None = None

    def feed(self, text: str) -> list[Event]:
        text = self._held + text
        partial = PARTIAL_SPECIAL.search(text)
        if partial is not None:
            text, self._held = text[:partial.start()], partial.group()
        else:
            self._held = ""
        return self._tokens(text)

    def _tokens(self, text: str) -> list[Event]:
        out: list[Event] = []
        if not text:
            return out
        for token in self._encoding.encode(text, allowed_special="all"):
            out += self.decoder.feed(token)
            if token >= 199998:
                self._last_special = token
        return out

    def finish(self, natural: bool) -> tuple[list[Event], EndReason | None]:
        """The stream ended (``natural``: the model stopped, not the length limit). Returns the
        last events and the decoder's verdict (``return``, ``call``, or None)."""
        from harmony_tui.engine.formats.harmony_decoder import RETURN

        out = self._tokens(self._held)
        self._held = ""
        decoder = self.decoder
        if decoder.finished is None:
            if natural and self._last_special != self._end_token:
                # the server dropped the stop token (<|return|> / <|call|>): put it back
                out += decoder.feed(RETURN)
            else:
                out += decoder.finish()
        return out, decoder.finished
