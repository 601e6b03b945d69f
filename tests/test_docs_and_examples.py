"""The generated references are up to date and every example config loads without warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmony_tui.config.profiles import load_profiles
from harmony_tui.config.prompt_config import load_prompt_config
from harmony_tui.config.reference import render_reference
from harmony_tui.sessions.chat_log import json_schema

ROOT = Path(__file__).resolve().parent.parent


def test_config_reference_is_generated_from_the_schemas():
    committed = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(), (
        "docs/config-reference.md is stale: python -m harmony_tui.config.reference > "
        "docs/config-reference.md")


def test_chat_log_json_schema_file_matches_the_model():
    committed = json.loads((ROOT / "docs" / "chat-log.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema()


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "configs").iterdir()
                                        if p.name != "profiles.yaml"), ids=lambda p: p.name)
def test_example_prompt_configs_load_cleanly(path):
    config, _overrides, warnings = load_prompt_config(path)
    assert warnings == []
    config.setup(lambda text: text)


def test_example_profiles_resolve_their_prompt_configs():
    profiles, warnings = load_profiles(ROOT / "configs" / "profiles.yaml")
    assert warnings == [] and profiles
    for profile in profiles.values():
        assert profile.prompt_config is not None and profile.prompt_config.is_file()
