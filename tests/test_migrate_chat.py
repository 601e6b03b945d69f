"""``harmony-tui migrate-chat``: mlx-harmony v1 and v2 chat logs to the current schema.

The samples are written by hand in the layouts mlx-harmony saved: ``{metadata, messages}``
(v1) and ``{schema_version: 2, chat_order, active_chat_id, chats}`` (v2), with ``{unix, iso}``
timestamps, ``analysis`` on assistant messages and tool results carrying ``name``,
``recipient`` and ``channel``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_tui.cli import main
from harmony_tui.config.settings import Choices, resolve
from harmony_tui.config.user_config import UserConfig
from harmony_tui.sessions.chat_log import FORMAT, SCHEMA_VERSION, ChatLog
from harmony_tui.sessions.store import read_chat


def stamp(iso: str, unix: float = 0.0) -> dict:
    """mlx-harmony's timestamp; its ``unix`` came from a naive utcnow() and may be off."""
    return {"unix": unix, "iso": iso}


V1 = {
    "metadata": {
        "chat_id": "v1-chat",
        "model_path": "models/gpt-oss-20b",
        "prompt_config_path": "configs/prompt.json",
        "created_at": stamp("2025-01-10T12:00:00Z", 1736535600.0),  # unix 7 h off
        "hyperparameters": {"temperature": 0.7, "top_p": 0.0, "seed": -1, "max_tokens": 512,
                            "repetition_penalty": 1.1},
    },
    "messages": [
        {"id": "u1", "parent_id": None, "cache_key": "u1", "role": "user",
         "content": "What is 6*7?", "timestamp": stamp("2025-01-10T12:00:01.500000Z")},
        {"id": "a1", "parent_id": "u1", "role": "assistant", "content": "42.",
         "analysis": "Multiply six by seven.", "timestamp": "2025-01-10T12:00:05",
         "hyperparameters": {"temperature": 0.7, "top_p": 0.0, "top_k": 40,
                             "reasoning_effort": "High", "reseed_each_turn": False}},
        {"id": "u2", "parent_id": "a1", "role": "user", "content": "Search for it",
         "timestamp": stamp("2025-01-10T12:01:00Z")},
        {"id": "t1", "parent_id": "u2", "role": "tool", "name": "browser",
         "recipient": "assistant", "channel": "commentary", "content": "42 is the answer.",
         "timestamp": stamp("2025-01-10T12:01:02Z"),
         "hyperparameters": {"temperature": 0.7}},
        {"id": "a2", "parent_id": "t1", "role": "assistant",
         "content": "[Analysis only - no final response]", "analysis": "It is 42 again.",
         "timestamp": stamp("2025-01-10T12:01:05Z"),
         "hyperparameters": {"temperature": 0.7, "top_k": 40, "reasoning_effort": "high"}},
    ],
}

V2 = {
    "schema_version": 2,
    "chat_order": ["c-old", "c-new"],
    "active_chat_id": "c-new",
    "chats": {
        "c-old": {"chat_id": "c-old", "metadata": {"chat_id": "c-old", "model_path": "old",
                                                   "created_at": stamp("2025-02-01T08:00:00Z")},
                  "messages": [
                      {"id": "m1", "role": "user", "content": "First chat",
                       "timestamp": stamp("2025-02-01T08:00:01Z")},
                      {"id": "m2", "parent_id": "m1", "role": "assistant",
                       "content": "First answer", "timestamp": stamp("2025-02-01T08:00:02Z")},
                  ]},
        "c-new": {"chat_id": "c-new",
                  "metadata": {"chat_id": "c-new", "model_path": "mlx-community/gpt-oss-20b",
                               "last_prompt_config_path": "cfg.json",
                               "last_hyperparameters": {"temperature": 0.4, "top_p": 0.95},
                               "created_at": stamp("2025-03-01T08:00:00+00:00"),
                               "title": "Python help"},
                  "messages": [
                      {"id": "m1", "role": "user", "content": "Run 2**10",
                       "timestamp": stamp("2025-03-01T09:00:00+01:00")},
                      {"id": "m3", "parent_id": "m1", "role": "tool", "name": "python",
                       "recipient": "assistant", "channel": "analysis", "content": "1024",
                       "timestamp": stamp("bad", 1740816002.0)},
                      {"id": "m4", "parent_id": "m3", "role": "assistant",
                       "content": "2**10 is 1024.", "analysis": "The tool said 1024.",
                       "timestamp": stamp("2025-03-01T08:00:03Z"),
                       "hyperparameters": {"temperature": 0.4, "top_p": 0.95}},
                  ]},
    },
}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def migrate_cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main(["migrate-chat", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_v1_becomes_the_current_schema(tmp_path: Path, capsys):
    source = write(tmp_path / "v1.json", V1)
    code, out, err = migrate_cli(str(source), "--output", str(tmp_path / "out.json"),
                                 capsys=capsys)
    assert (code, out) == (0, "")
    assert err == f"{tmp_path / 'out.json'}: written (6 messages)\n"
    data = json.loads((tmp_path / "out.json").read_text())
    assert (data["format"], data["schema_version"]) == (FORMAT, SCHEMA_VERSION)
    log = read_chat(tmp_path / "out.json")
    rows = [(r.role, r.channel, r.content, r.name) for r in log.path()]
    assert rows == [
        ("user", None, "What is 6*7?", None),
        ("assistant", "analysis", "Multiply six by seven.", None),  # analysis kept apart
        ("assistant", "final", "42.", None),
        ("user", None, "Search for it", None),
        ("tool", "commentary", "42 is the answer.", "browser"),
        ("assistant", "analysis", "It is 42 again.", None),  # no placeholder final
    ]
    records = log.path()
    assert [r.id for r in records if r.id in ("u1", "a1", "u2", "t1")] == ["u1", "a1", "u2",
                                                                          "t1"]
    assert [r.parent_id for r in records[1:]] == [r.id for r in records[:-1]]
    # Timestamps: UTC, ISO 8601 with milliseconds; the iso text wins over a skewed unix.
    assert [r.created_at for r in records] == [
        "2025-01-10T12:00:01.500Z", "2025-01-10T12:00:05.000Z", "2025-01-10T12:00:05.000Z",
        "2025-01-10T12:01:00.000Z", "2025-01-10T12:01:02.000Z", "2025-01-10T12:01:05.000Z"]
    assert (log.created_at, log.updated_at) == ("2025-01-10T12:00:00.000Z",
                                                "2025-01-10T12:01:05.000Z")
    # Hyperparameters: only the settings harmony-tui knows and accepts, only when they change.
    assert records[1].params == {"temperature": 0.7, "top_k": 40, "reasoning_effort": "high"}
    assert records[2].params is None and records[4].params is None
    assert records[5].params is None  # the same settings as before
    assert log.params == {"temperature": 0.7, "max_tokens": 512, "repetition_penalty": 1.1}
    assert (log.model, log.prompt_config, log.title) == ("models/gpt-oss-20b",
                                                         "configs/prompt.json", "What is 6*7?")
    assert log.active_leaf == records[-1].id
    assert data["migrated_from"] == "mlx-harmony v1"


def test_v2_keeps_every_chat_as_a_branch_and_the_active_one_active(tmp_path: Path, capsys):
    source = write(tmp_path / "v2.json", V2)
    code, out, _ = migrate_cli(str(source), capsys=capsys)  # to standard output
    assert code == 0
    log = ChatLog.model_validate_json(out)
    assert [r.content for r in log.path()] == ["Run 2**10", "1024", "The tool said 1024.",
                                               "2**10 is 1024."]
    roots = [r for r in log.messages if r.parent_id is None]
    assert [r.content for r in roots] == ["First chat", "Run 2**10"]
    assert [r.content for r in log.path(log.messages[1].id)] == ["First chat", "First answer"]
    ids = [r.id for r in log.messages]
    assert len(set(ids)) == len(ids)  # "m1" was in both chats
    tool = log.path()[1]
    assert (tool.role, tool.name, tool.channel) == ("tool", "python", "analysis")
    assert tool.created_at == "2025-03-01T08:00:02.000Z"  # bad iso: the unix time is used
    assert log.path()[0].created_at == "2025-03-01T08:00:00.000Z"  # +01:00 made UTC
    assert log.path()[2].params == {"temperature": 0.4, "top_p": 0.95}
    assert (log.model, log.prompt_config, log.title) == ("mlx-community/gpt-oss-20b",
                                                         "cfg.json", "Python help")
    assert log.params == {"temperature": 0.4, "top_p": 0.95}
    assert log.chat_id == "c-new"

    # Resuming it restores the model and settings it was last used with.
    chats = tmp_path / "chats"
    chats.mkdir()
    (chats / "py.json").write_text(out)
    settings = resolve(Choices(chat="py"), UserConfig(chats_dir=str(chats)))
    assert settings.model == "mlx-community/gpt-oss-20b"
    assert (settings.params.temperature, settings.params.top_p) == (0.4, 0.95)


def test_in_place_keeps_a_backup_and_a_second_run_changes_nothing(tmp_path: Path, capsys):
    source = write(tmp_path / "chat.json", V2)
    original = source.read_bytes()
    code, _, err = migrate_cli(str(source), "--in-place", capsys=capsys)
    assert code == 0
    backup = tmp_path / "chat.json.bak"
    assert err == f"{source}: converted (6 messages); original kept as {backup}\n"
    assert backup.read_bytes() == original
    migrated = source.read_bytes()
    assert read_chat(source).path()[-1].content == "2**10 is 1024."

    code, _, err = migrate_cli(str(source), "--in-place", capsys=capsys)
    assert code == 0 and err == f"{source}: already in the current schema; nothing changed\n"
    assert source.read_bytes() == migrated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json", "chat.json.bak"]

    # Converting the converted file again gives the same document.
    code, out, _ = migrate_cli(str(source), capsys=capsys)
    assert code == 0 and json.loads(out) == json.loads(migrated)


def test_output_refuses_an_existing_file(tmp_path: Path, capsys):
    source = write(tmp_path / "v1.json", V1)
    taken = tmp_path / "taken.json"
    taken.write_text("precious")
    code, _, err = migrate_cli(str(source), "--output", str(taken), capsys=capsys)
    assert code == 2
    assert err == f"harmony-tui: error: --output {taken}: the file exists; choose a new name\n"
    assert taken.read_text() == "precious"


@pytest.mark.parametrize("content,expected", [
    (None, "file not found"),
    ('{"metadata": {}, "messages": [', "not a valid chat file (invalid JSON"),
    ('{"hello": "world"}', "not a chat log harmony-tui knows"),
    ('{"messages": [{"role": "robot", "content": "x"}]}',
     "messages[0].role='robot': expected user, assistant, tool, system or developer"),
    ('{"messages": ["just text"]}', "messages[0]: expected an object"),
    ('{"schema_version": 2, "chats": {"a": {"messages": {"x": 1}}}}',
     "chats.a.messages: expected a list"),
    ('{"format": "harmony-tui-chat", "schema_version": 9}', "schema_version 9 is newer"),
])
def test_bad_inputs_are_one_line_errors_and_leave_the_file(tmp_path: Path, capsys, content,
                                                           expected):
    source = tmp_path / "in.json"
    if content is not None:
        source.write_text(content)
    code, out, err = migrate_cli(str(source), "--in-place", capsys=capsys)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith(f"harmony-tui: error: {source}") and expected in line, line
    if content is not None:
        assert source.read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.json"] if content else [])


def test_the_real_command_line(tmp_path: Path):
    source = write(tmp_path / "v1.json", V1)
    run = [sys.executable, "-m", "harmony_tui", "migrate-chat", str(source)]
    done = subprocess.run([*run, "--in-place"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "v1.json.bak").exists()
    both = subprocess.run([*run, "--in-place", "--output", "x.json"], capture_output=True,
                          text=True, timeout=60)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
