"""Ctrl+L: pick a model to load: the demo, folders under the models dir (a folder that cannot
load is listed with the reason), the Hugging Face cache, or a folder path typed in."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from harmony_tui.engine.catalog import ModelChoice


def looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~", ".")) or "/" in text


def choice_label(choice: ModelChoice) -> str:
    if choice.problem:
        return f"{choice.spec}  ⚠ {choice.problem}"
    return f"{choice.spec}  ({choice.source}, {choice.model_type or 'unknown type'})"


class ModelProvider(Provider):
    """The choices of ``choices`` (set before the palette opens), and the typed path."""

    choices: list[ModelChoice] = []
    load: Callable[[str], None] = staticmethod(lambda spec: None)

    async def discover(self) -> Hits:
        for choice in self.choices:
            yield DiscoveryHit(Content(choice_label(choice)), partial(self.load, choice.spec),
                               help=self._help(choice))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        typed = query.strip()
        if looks_like_path(typed):
            folder = Path(typed).expanduser()
            what = "a folder" if folder.is_dir() else "no such folder yet: the load says why"
            yield Hit(1.0, Content(f"Load {typed}"), partial(self.load, str(folder)),
                      help=f"The model in the folder typed ({what})")
        for choice in self.choices:
            label = choice_label(choice)
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), partial(self.load, choice.spec),
                          help=self._help(choice))

    @staticmethod
    def _help(choice: ModelChoice) -> str:
        if choice.problem:
            return f"Cannot load as it is: {choice.problem}"
        return f"Load {choice.spec}"


def model_provider(choices: list[ModelChoice], load: Callable[[str], None]) -> type[Provider]:
    """A provider class over ``choices`` (the palette makes the instance)."""
    return type("Models", (ModelProvider,), {"choices": choices,
                                             "load": staticmethod(load)})
