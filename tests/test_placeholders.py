"""Placeholders: built-ins from the clock at every expansion, user ones, the fixed clock."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_tui.config.placeholders import (
    FIXED_TIME_ENV,
    Clock,
    builtin_values,
    expand,
    expander,
)
from harmony_tui.config.prompt_config import load_prompt_config
from harmony_tui.errors import ConfigError

PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
EVENING = dt.datetime(2026, 11, 25, 19, 20, 3, tzinfo=PLUS_ONE)


class ManualClock(Clock):
    """A clock the test moves by hand; counts how often it is read."""

    def __init__(self, start: dt.datetime) -> None:
        super().__init__(None)
        object.__setattr__(self, "current", start)
        object.__setattr__(self, "reads", 0)

    def advance(self, delta: dt.timedelta) -> None:
        object.__setattr__(self, "current", self.current + delta)

    def now(self) -> dt.datetime:
        object.__setattr__(self, "reads", self.reads + 1)
        return self.current


def test_every_builtin_with_a_fixed_clock():
    clock = Clock(EVENING)
    text = "<|DATE|> | <|DATETIME|> | <|TIME|> | <|TIMEZ|> | <|TIMEA|> | <|TIMEU|>"
    assert expand(text, clock=clock) == (
        "2026-11-25 | 2026-11-25T19:20:03+01:00 | 19:20:03 | 19:20:03 UTC+01:00 | "
        "07:20:03 PM | 18:20:03 UTC")


def test_timez_names_the_zone_and_follows_daylight_saving():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        paris = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database on this machine")
    winter = builtin_values(dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=paris))
    summer = builtin_values(dt.datetime(2026, 7, 5, 8, 0, 0, tzinfo=paris))
    assert (winter["TIMEZ"], winter["TIMEU"]) == ("08:00:00 CET", "07:00:00 UTC")
    assert (summer["TIMEZ"], summer["TIMEU"]) == ("08:00:00 CEST", "06:00:00 UTC")
    # Just after midnight local time it is still the previous day in UTC.
    late = builtin_values(dt.datetime(2026, 1, 1, 0, 30, tzinfo=paris))
    assert (late["DATE"], late["TIMEA"], late["TIMEU"]) == ("2026-01-01", "12:30:00 AM",
                                                            "23:30:00 UTC")


def test_builtins_are_evaluated_at_every_expansion_not_frozen():
    clock = ManualClock(EVENING)
    fill = expander({"who": "Ann"}, clock)  # bound once, as the app and generate do
    assert fill("<|DATE|> <|TIME|>") == "2026-11-25 19:20:03"
    clock.advance(dt.timedelta(hours=5))
    assert fill("<|DATE|> <|TIME|>") == "2026-11-26 00:20:03"
    assert clock.reads == 2
    assert fill("no placeholder here") == "no placeholder here"
    assert clock.reads == 2  # text without <|...|> never reads the clock


def test_prompt_setup_takes_the_date_at_each_turn(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("conversation_start_date: <|DATE|>\n"
                    "developer_instructions: Help {user}. Today is <|DATE|> (<|TIMEU|>).\n"
                    "placeholders: {user: Ann}\n"
                    "example_dialogues:\n  - - {role: user, content: 'I am {user}'}\n"
                    "    - {role: assistant, content: 'Hi <|USER|>'}\n")
    config, _, warnings = load_prompt_config(path)
    assert warnings == []
    clock = ManualClock(EVENING)
    fill = expander(config.placeholders, clock)
    first = config.setup(fill)
    clock.advance(dt.timedelta(days=1))
    second = config.setup(fill)
    assert first.conversation_start_date == "2026-11-25"
    assert second.conversation_start_date == "2026-11-26"
    assert first.developer_instructions.startswith("Help Ann. Today is 2026-11-25 (")
    assert second.developer_instructions.startswith("Help Ann. Today is 2026-11-26 (")
    assert [m.content for m in first.example_dialogues[0]] == ["I am Ann", "Hi Ann"]
    assert config.conversation_start_date == "<|DATE|>"  # the config itself keeps the text


def test_user_placeholders_both_forms_and_what_is_left_alone():
    values = {"name": "Ann", "team": "Ops", "count": "3"}
    clock = Clock(EVENING)
    assert expand("{name} <|NAME|> <|name|> <|Team|> {count}", values, clock) == \
        "Ann Ann Ann Ops 3"
    # Unknown names, other braces and JSON stay as written.
    kept = '{other} <|OTHER|> {"name": 1} { name } {{name}} <|end|>'
    assert expand(kept, values, clock) == '{other} <|OTHER|> {"name": 1} { name } {Ann} <|end|>'
    # Without user placeholders, {name} is plain text.
    assert expand("{name} <|DATE|>", None, clock) == "{name} 2026-11-25"
    # A user placeholder of the same name wins over the built-in.
    assert expand("<|DATE|>", {"date": "someday"}, clock) == "someday"


def test_placeholder_values_from_a_config_become_text(tmp_path: Path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"placeholders": {"year": 2026, "ratio": 0.5, "on": True}}))
    config, _, _ = load_prompt_config(path)
    assert config.placeholders == {"year": "2026", "ratio": "0.5", "on": "True"}
    assert expand("{year}/{ratio}/<|ON|>", config.placeholders) == "2026/0.5/True"


def test_fixed_clock_from_the_config_or_the_environment(monkeypatch):
    monkeypatch.setenv(FIXED_TIME_ENV, "2030-05-06T07:08:09Z")
    assert expand("<|DATETIME|>", clock=Clock.from_env()) == "2030-05-06T07:08:09+00:00"
    # The config's fixed_time wins over the environment.
    clock = Clock.from_env("2031-01-02T03:04:05+05:30")
    assert expand("<|DATE|> <|TIMEU|>", clock=clock) == "2031-01-02 21:34:05 UTC"
    assert clock.today() == dt.date(2031, 1, 2)
    # A date alone is midnight, local time.
    assert Clock.from_env("2031-01-02").now().replace(tzinfo=None) == dt.datetime(2031, 1, 2)
    monkeypatch.delenv(FIXED_TIME_ENV)
    assert Clock.from_env().fixed is None


def test_bad_fixed_time_is_a_one_line_config_error(monkeypatch, tmp_path: Path):
    expected = "expected an ISO 8601 date-time such as 2026-01-31T09:30:00+01:00"
    monkeypatch.setenv(FIXED_TIME_ENV, "next tuesday")
    assert error_of(Clock.from_env) == f"{FIXED_TIME_ENV}='next tuesday': {expected}"
    assert error_of(lambda: Clock.from_env("soon")) == f"fixed_time='soon': {expected}"
    path = tmp_path / "p.yaml"
    path.write_text("fixed_time: yesterday\n")
    assert error_of(lambda: load_prompt_config(path)) == \
        f"{path}: fixed_time='yesterday': {expected}"


def error_of(action) -> str:
    with pytest.raises(ConfigError) as info:
        action()
    return str(info.value)


def test_cli_expands_user_input_with_the_fixed_clock(tmp_path: Path, tiny_gpt_oss: Path):
    """A real ``generate`` run: the saved user message holds the expanded text."""
    config = tmp_path / "p.yaml"
    config.write_text(f"placeholders: {{who: Ann}}\nchats_dir: {tmp_path / 'chats'}\n")
    env = {**_env(), FIXED_TIME_ENV: "2026-03-04T05:06:07+00:00"}
    args = [sys.executable, "-m", "harmony_tui", "generate", "--model", str(tiny_gpt_oss),
            "--prompt-config", str(config), "--chat", "dated", "--max-tokens", "1",
            "--prompt", "{who} asks on <|DATE|> at <|TIMEU|>; {nobody} stays"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 3, done.stderr  # one random token is no answer (exit 3)
    saved = json.loads((tmp_path / "chats" / "dated.json").read_text())
    assert saved["messages"][0]["content"] == "Ann asks on 2026-03-04 at 05:06:07 UTC; " \
        "{nobody} stays"
    bad = subprocess.run(args, capture_output=True, text=True, timeout=120,
                         env={**env, FIXED_TIME_ENV: "noon"})
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"harmony-tui: error: {FIXED_TIME_ENV}='noon': expected an ISO 8601 date-time such as "
        "2026-01-31T09:30:00+01:00"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != FIXED_TIME_ENV}
