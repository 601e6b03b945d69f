"""Figures of a turn made of several engine sub-turns."""

from __future__ import annotations

from collections.abc import Sequence

from harmony_tui.engine.events import Stats


def merge_stats(parts: Sequence[Stats]) -> Stats | None:
    """One ``Stats`` for several sub-turns: token counts summed, speeds over the summed times."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    prompt_time = sum((s.prompt_tokens - s.cached_tokens) / s.prompt_tps
                      for s in parts if s.prompt_tps > 0)
    generation_time = sum(s.generation_tokens / s.generation_tps
                          for s in parts if s.generation_tps > 0)
    processed = sum(s.prompt_tokens - s.cached_tokens for s in parts)
    generated = sum(s.generation_tokens for s in parts)
    return Stats(
        prompt_tokens=sum(s.prompt_tokens for s in parts),
        cached_tokens=sum(s.cached_tokens for s in parts),
        generation_tokens=generated,
        ttft_s=parts[0].ttft_s,
        prompt_tps=processed / prompt_time if prompt_time > 0 else 0.0,
        generation_tps=generated / generation_time if generation_time > 0 else 0.0,
        peak_memory_gb=max(s.peak_memory_gb for s in parts),
        kv_cache_bytes=parts[-1].kv_cache_bytes,
        kv_saved_bytes=parts[-1].kv_saved_bytes,
        draft_tokens=sum(s.draft_tokens for s in parts),
        accepted_tokens=sum(s.accepted_tokens for s in parts),
        verify_steps=sum(s.verify_steps for s in parts),
        speedup=parts[-1].speedup,
    )


def speculation_summary(stats: Stats, short: bool = False) -> str | None:
    """Speculative decoding's figures in words (None for a turn that did not speculate):
    ``short`` for the status bar (acceptance and speed-up), else a sentence."""
    if not stats.verify_steps:
        return None
    rate = stats.acceptance or 0.0
    if short:
        text = f"spec {100 * rate:.0f}%"
        return text + (f" ×{stats.speedup:.2f}" if stats.speedup is not None else "")
    per_step = stats.generation_tokens / stats.verify_steps
    text = (f"speculative decoding: {stats.accepted_tokens} of {stats.draft_tokens} drafted "
            f"tokens accepted ({100 * rate:.0f}%), {per_step:.2f} tokens per model step")
    if stats.speedup is not None:
        text += f", {stats.speedup:.2f}× the last plain turn's tokens/s"
    return text
