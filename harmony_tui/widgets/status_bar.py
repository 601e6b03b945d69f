"""The status bar: model, state and the figures of the current or last turn."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

HELP = """\
Model · state (loading, idle, prefill, generating, tool) · time to first token · tokens per
second · speculative decoding's acceptance rate and speed-up over the last plain turn (`spec
70% ×1.40`, with a draft model or prompt lookup) · prompt and generated tokens · context used
of the limit · peak memory · the API server's address while it runs · the python tool's sandbox
while the tool is on · voice (🎤 ready, listening with the input level and time, transcribing,
speaking) once voice is used.
"""


class StatusBar(Static):
    """One line of live figures."""

    HELP = HELP

    model_name: reactive[str] = reactive("")
    state: reactive[str] = reactive("loading")
    ttft: reactive[float | None] = reactive(None)
    tps: reactive[float | None] = reactive(None)
    spec: reactive[str] = reactive("")  # speculative decoding: "spec 70% ×1.40"
    prompt_tokens: reactive[int] = reactive(0)
    cached_tokens: reactive[int] = reactive(0)
    generated: reactive[int] = reactive(0)
    context_limit: reactive[int | None] = reactive(None)
    peak_gb: reactive[float | None] = reactive(None)
    detail: reactive[str] = reactive("")
    server_url: reactive[str] = reactive("")
    isolation: reactive[str] = reactive("")  # the python tool's sandbox, e.g. "python: bubblewrap"
    voice: reactive[str] = reactive("")  # push to talk: ready, listening 1.2s ▃▅▇▁▁, speaking

    def segments(self) -> list[tuple[str, str, int]]:
        """(text, style, priority) in display order; when the line is too narrow the highest
        priority numbers go first (figures before the model, state, API address and voice)."""
        parts: list[tuple[str, str, int]] = [
            (self.model_name or "no model", "bold", 0),
            (self.state + (f" {self.detail}" if self.detail else ""), "italic", 0)]
        if self.voice:
            parts.append((f"🎤 {self.voice}", "bold", 1))
        if self.ttft is not None:
            parts.append((f"TTFT {self.ttft:.2f}s", "", 5))
        if self.tps is not None:
            parts.append((f"{self.tps:.1f} tok/s", "bold", 3))
        if self.spec:
            parts.append((self.spec, "", 5))
        if self.prompt_tokens:
            cached = f" ({self.cached_tokens} cached)" if self.cached_tokens else ""
            parts.append((f"prompt {self.prompt_tokens}{cached} · gen {self.generated}", "", 5))
            if self.context_limit:
                used = self.prompt_tokens + self.generated
                parts.append((f"ctx {used}/{self.context_limit}", "", 4))
        if self.peak_gb is not None:
            parts.append((f"peak {self.peak_gb:.2f} GB", "", 6))
        if self.server_url:
            parts.append((f"API {self.server_url}", "bold", 1))
        if self.isolation:
            sandboxed = self.isolation.endswith(("bubblewrap", "sandbox-exec"))
            parts.append((self.isolation, "" if sandboxed else "bold red", 4 if sandboxed else 2))
        return parts

    def render(self) -> Text:
        parts = self.segments()
        room = self.content_region.width or 10_000
        while len(parts) > 2 and sum(len(p[0]) for p in parts) + 3 * (len(parts) - 1) > room:
            parts.remove(max(parts, key=lambda p: p[2]))
        text = Text(no_wrap=True, overflow="ellipsis")
        for index, (part, style, _) in enumerate(parts):
            if index:
                text.append(" · ", style="dim")
            text.append(part, style=style)
        return text
