"""Ctrl+L: a typed folder path loads; a folder whose config.json cannot load is listed with why."""

from __future__ import annotations

import shutil

from test_app import WIDE, make_app, ready, wait_for
from textual.command import CommandPalette

from harmony_tui.engine.catalog import local_models


def palette_texts(app) -> list[str]:
    palette = app.screen
    assert isinstance(palette, CommandPalette)
    options = palette.query_one("CommandList")
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_a_typed_folder_path_loads_and_broken_folders_are_shown(tiny_llama, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken").mkdir()
    (models / "broken" / "config.json").write_text("{oops")
    elsewhere = shutil.copytree(tiny_llama, tmp_path / "elsewhere" / "llama")
    assert [c.problem for c in local_models(models, broken=True) if c.source == "folder"] == \
        [c.problem for c in local_models(models, broken=True) if "broken" in c.spec]
    assert not any("broken" in c.spec for c in local_models(models))  # /v1/models: loadable only
    app = make_app(models_dir=models)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+l")
        await pilot.press(*"broken")
        await pilot.pause(0.5)
        shown = "\n".join(palette_texts(app))
        assert "broken" in shown and "not valid JSON" in shown
        await pilot.press("escape")
        await pilot.press("ctrl+l")
        await pilot.press(*str(elsewhere))
        await pilot.pause(0.5)
        assert palette_texts(app)[0].startswith(f"Load {elsewhere}\n")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.model_name == "llama", what="the typed folder to load")
