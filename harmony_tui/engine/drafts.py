"""The draft model of speculative decoding: loaded on first use, kept with its own prompt cache
(generation thread only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from harmony_tui.engine.loader import LoadedModel, load_model
from harmony_tui.engine.prompt_cache import PromptCacheStore, Snapshot, checkpoint_stops
from harmony_tui.engine.speculative import DraftModelError, ModelDrafter, check_draft
from harmony_tui.errors import ModelLoadError


class DraftModels:
    """One draft model at a time (the last one asked for) and the checkpoints of its cache."""

    def __init__(self, models_dir: Path | None) -> None:
        self.models_dir = models_dir
        self.spec: str | None = None
        self.loaded: LoadedModel | None = None
        self.prompt_cache = PromptCacheStore()

    def get(self, spec: str, target: LoadedModel) -> LoadedModel:
        """The draft model ``spec``, checked against ``target``; one-line errors."""
        if self.spec != spec or self.loaded is None:
            self.release()
            try:
                loaded = load_model(spec, self.models_dir)
            except ModelLoadError as err:
                raise DraftModelError(f"draft model {spec}: {err}") from None
            self.spec, self.loaded = spec, loaded
        check_draft(target, self.loaded)
        return self.loaded

    def drafter(self, spec: str, target: LoadedModel, prompt: Sequence[int], most: int,
                prefill: Callable[..., int]) -> ModelDrafter | None:
        """A drafter whose cache holds ``prompt[:-1]``; None when ``prefill`` was cancelled.

        ``prefill(model, cache, prompt, start, stops, snapshots)`` runs the draft model over
        the prompt from ``start``, as the engine prefills the model."""
        from mlx_lm.models.cache import make_prompt_cache

        loaded = self.get(spec, target)
        cache, cached = self.prompt_cache.take(prompt)
        if cache is None:
            cache = make_prompt_cache(loaded.model)
        snapshots: dict[int, Snapshot] = {}
        stops = checkpoint_stops(loaded.format, cache, prompt, cached)
        done = prefill(loaded.model, cache, prompt, cached, stops, snapshots)
        if done < len(prompt) - 1:
            return None
        if len(prompt) > 1:
            self.prompt_cache.store(prompt[:-1], cache, snapshots)
        return ModelDrafter(loaded.model, cache, most, prompt[-1])

    def release(self) -> None:
        self.spec = self.loaded = None
        self.prompt_cache.clear()
