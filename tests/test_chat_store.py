"""Chat logs on disk: every field round-trips, save/resume/branch, corrupt files left untouched."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from conftest import wait_until

from harmony_tui.config.prompt_config import (
    GENERATION_KEYS,
    PROMPT_KEYS,
    PromptConfig,
    load_prompt_config,
)
from harmony_tui.config.settings import Choices, resolve
from harmony_tui.config.user_config import UserConfig
from harmony_tui.engine.messages import Message
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ChatFileError
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.chat_log import FORMAT, ChatLog, ChatRecord, json_schema
from harmony_tui.sessions.store import (
    chat_path,
    delete_chat,
    free_path,
    list_chats,
    read_chat,
    rename_chat,
    write_chat,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "docs" / "chat-log.schema.json"

# A value other than the default for every prompt-config and generation field.
PROMPT_SAMPLE = {
    "system_model_identity": "You are Pat, a terse assistant.",
    "conversation_start_date": "2026-02-03",
    "knowledge_cutoff": "2025-01",
    "developer_instructions": "Answer in one line. Greet {user}.",
    "assistant_greeting": "Hello <|USER|>!",
    "example_dialogues": [[{"role": "user", "content": "2+2?"},
                           {"role": "assistant", "content": "4"}]],
    "placeholders": {"user": "Ann", "team": "ops"},
    "fixed_time": "2026-02-03T04:05:06+00:00",
    "builtin_tools": ["browser"],
    "tools": {"python": {"timeout_s": 7.0}, "max_calls_per_turn": 3},
    "reseed_each_turn": False,
    "truncate_thinking": 300,
    "truncate_response": 2000,
    "mlock": True,
    "logs_dir": "logs",
    "chats_dir": "/srv/chats",
    "voice": {"stt_model": "base.en", "tts_engine": "espeak-ng", "rate": 1.2, "input_device": 2,
              "silence_seconds": 1.5, "confirm": True, "speak_answers": False},
}
GENERATION_SAMPLE = {
    "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "min_tokens_to_keep": 3,
    "xtc_probability": 0.5, "xtc_threshold": 0.2, "xtc_special_tokens": [200002, 10],
    "repetition_penalty": 1.1,
    "repetition_context_size": 64, "presence_penalty": 0.5, "frequency_penalty": -0.5,
    "logit_bias": {200002: -10.0, 5: 2.5}, "max_tokens": 333, "max_context_tokens": 8192,
    "seed": 1234, "reasoning_effort": "high", "kv_bits": 8, "kv_group_size": 32,
    "quantized_kv_start": 1024, "draft_model": "gpt-oss-draft", "draft_tokens": 5,
    "prompt_lookup": 6,
}


def test_the_samples_cover_every_field():
    """A new field must be added to the samples (and so to the round trip) to pass."""
    assert set(PROMPT_SAMPLE) == PROMPT_KEYS
    assert set(GENERATION_SAMPLE) == GENERATION_KEYS


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_every_config_field_round_trips(tmp_path: Path, suffix: str):
    path = tmp_path / f"p{suffix}"
    data = {**PROMPT_SAMPLE, **GENERATION_SAMPLE}
    path.write_text(yaml.safe_dump(data) if suffix == ".yaml" else json.dumps(data))
    config, overrides, warnings = load_prompt_config(path)
    assert warnings == []
    dumped = config.model_dump(mode="json")
    for key, value in PROMPT_SAMPLE.items():
        if key == "tools":
            assert dumped["tools"]["python"]["timeout_s"] == 7.0
            assert dumped["tools"]["max_calls_per_turn"] == 3
            assert dumped["tools"]["browser"] is not None  # from builtin_tools
        elif key == "logs_dir":
            assert config.logs_dir == tmp_path / "logs"  # relative to the config file
        elif key == "voice":  # the rest of the section holds its defaults
            assert {k: dumped["voice"][k] for k in value} == value
        else:
            assert dumped[key] == value, key
    params = GenerationParams().updated(**overrides)
    assert params == GenerationParams(**GENERATION_SAMPLE)
    defaults = GenerationParams()
    assert [k for k in GENERATION_SAMPLE if getattr(params, k) == getattr(defaults, k)] == []

    # Written back as a config file, it loads to the same values.
    again_path = tmp_path / "again.json"
    again_path.write_text(json.dumps({**dumped, **params.model_dump(mode="json")}))
    again, again_overrides, again_warnings = load_prompt_config(again_path)
    assert again_warnings == []
    assert again == config
    assert GenerationParams().updated(**again_overrides) == params

    # Stored in a chat log, both come back unchanged.
    log = ChatLog(prompt=dumped, params=params.model_dump(mode="json"))
    write_chat(tmp_path / "c.json", log)
    stored = read_chat(tmp_path / "c.json")
    assert PromptConfig.model_validate(stored.prompt) == config
    assert GenerationParams.model_validate(stored.params) == params


def full_log() -> ChatLog:
    """A chat with every ChatLog and ChatRecord field set (and unknown extra ones)."""
    user = ChatRecord(id="u1", role="user", content="Weather in Paris? <b>ünïcode</b>",
                      created_at="2026-01-02T03:04:05.678Z", future_field={"kept": [1, 2]})
    call = ChatRecord(
        id="a1", parent_id="u1", role="assistant", content='{"city": "Paris"}',
        created_at="2026-01-02T03:04:06.000Z", channel="commentary",
        recipient="functions.get_weather", content_type="<|constrain|>json",
        tool_call_id="call_1", model="gpt-oss-20b", params={"temperature": 0.5, "top_k": 4},
        stats={"prompt_tokens": 120, "generation_tps": 33.5}, finish_reason="call")
    result = ChatRecord(id="t1", parent_id="a1", role="tool", content='{"sunny": true}',
                        created_at="2026-01-02T03:04:07.000Z", channel="commentary",
                        name="functions.get_weather", tool_call_id="call_1", is_error=False)
    greeting = ChatRecord(id="g1", role="assistant", content="Hi!", channel="final",
                          greeting=True, created_at="2026-01-02T03:04:00.000Z")
    system = ChatRecord(id="s1", parent_id="g1", role="system", content="sys")
    developer = ChatRecord(id="d1", parent_id="s1", role="developer", content="dev")
    return ChatLog(
        chat_id="chat-1", title="Weather", created_at="2026-01-02T03:04:00.000Z",
        updated_at="2026-01-02T03:04:07.000Z", model="gpt-oss-20b", profile="work",
        prompt_config="/cfg/p.yaml", prompt={"developer_instructions": "be brief"},
        params={"temperature": 0.5}, active_leaf="t1",
        messages=[user, call, result, greeting, system, developer], client="test-suite")


def test_every_chat_log_field_round_trips(tmp_path: Path):
    log = full_log()
    assert set(ChatLog.model_fields) <= set(log.model_fields_set) | {"format",
                                                                     "schema_version"}
    record_fields: set[str] = set()
    for record in log.messages:
        record_fields |= record.model_fields_set
    assert set(ChatRecord.model_fields) <= record_fields
    path = tmp_path / "chat.json"
    write_chat(path, log)
    again = read_chat(path)
    assert again.model_dump() == log.model_dump()
    assert again.messages[0].future_field == {"kept": [1, 2]}  # unknown fields survive
    assert again.client == "test-suite"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["format"], data["schema_version"]) == (FORMAT, 1)
    assert "Weather in Paris? <b>ünïcode</b>" in path.read_text(encoding="utf-8")
    assert [m.content for m in again.path()] == ['Weather in Paris? <b>ünïcode</b>',
                                                 '{"city": "Paris"}', '{"sunny": true}']
    assert again.branch_count() == 2


def test_json_schema_file_matches_and_validates_saved_chats(tmp_path: Path):
    if not SCHEMA_FILE.exists():
        pytest.skip("docs/chat-log.schema.json is not written yet")
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == json_schema()
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(committed)
    write_chat(tmp_path / "full.json", full_log())
    session = ChatSession(path=tmp_path / "s.json")
    session.add_user("hi")
    session.add_assistant([Message("assistant", "t", channel="analysis"),
                           Message("assistant", "a", channel="final")], model="m",
                          params={"temperature": 1.0}, stats={"tps": 1}, finish_reason="return")
    for path in (tmp_path / "full.json", tmp_path / "s.json"):
        validator.validate(json.loads(path.read_text()))
    broken = json.loads((tmp_path / "s.json").read_text())
    broken["messages"][0]["role"] = "robot"
    assert not validator.is_valid(broken)


def records_by_id(path: Path) -> dict[str, dict]:
    return {m["id"]: m for m in json.loads(path.read_text())["messages"]}


def test_save_resume_and_branch(tmp_path: Path):
    path = tmp_path / "chats" / "trip.json"
    session = ChatSession(ChatLog(profile="travel"), path)
    session.save()
    assert not path.exists()  # nothing to save before the first message
    session.add_greeting("Where to?")
    assert not path.exists()  # a greeting alone leaves no chat file behind
    session.add_user("Plan a day in Lyon")
    assert [m["content"] for m in records_by_id(path).values()] == ["Where to?",
                                                                   "Plan a day in Lyon"]
    params = GenerationParams(temperature=0.4).model_dump(mode="json")
    turn = session.begin_turn("gpt-oss-20b", params)
    thinking = Message("assistant", "Look up the weather.", channel="analysis")
    call = Message("assistant", '{"city": "Lyon"}', channel="commentary",
                   recipient="functions.weather", content_type="<|constrain|>json")
    turn.add(thinking)
    assert len(records_by_id(path)) == 3  # saved as soon as the message completed
    turn.add(call)
    turn.finish([thinking, call], {"generation_tokens": 9}, "call")
    session.add_tool_result(Message("tool", '{"rain": 0}', channel="commentary",
                                    name="functions.weather"), "call_7")
    turn = session.begin_turn("gpt-oss-20b", params)  # the turn continues after the tool
    turn.finish([Message("assistant", "Walk the old town.", channel="final")],
                {"generation_tokens": 5}, "return")

    first = records_by_id(path)
    assert [(m["role"], m.get("channel")) for m in first.values()] == [
        ("assistant", "final"), ("user", None), ("assistant", "analysis"),
        ("assistant", "commentary"), ("tool", "commentary"), ("assistant", "final")]
    stored = list(first.values())
    assert stored[0]["greeting"] is True
    assert stored[2]["model"] == "gpt-oss-20b" and stored[2]["params"] == params
    assert "params" not in stored[5]  # unchanged settings are not repeated
    assert stored[3]["tool_call_id"] == stored[4]["tool_call_id"] == "call_7"
    assert (stored[3]["finish_reason"], stored[5]["finish_reason"]) == ("call", "return")
    assert stored[5]["stats"] == {"generation_tokens": 5}
    assert all(m["created_at"].endswith("Z") for m in stored)

    # Regenerate: a new branch after the same user message; nothing is overwritten.
    assert session.drop_last_reply()
    hotter = GenerationParams(temperature=1.2).model_dump(mode="json")
    session.begin_turn("other-model", hotter).finish(
        [Message("assistant", "Visit the museum.", channel="final")], None, "return")
    second = records_by_id(path)
    assert {k: second[k] for k in first} == first
    assert len(second) == 7
    new = second[session.log.active_leaf]
    assert new["parent_id"] == stored[1]["id"] and new["params"] == hotter
    assert new["model"] == "other-model"

    # Edit the question: a branch beside it, from the greeting.
    assert session.drop_last_exchange() == "Plan a day in Lyon"
    session.add_user("Plan a day in Nice")
    session.add_assistant([Message("assistant", "Swim.", channel="final")], model="m",
                          finish_reason="cancelled")  # a stopped turn is kept too
    third = records_by_id(path)
    assert {k: third[k] for k in second} == second
    log = read_chat(path)
    assert [r.content for r in log.path()] == ["Where to?", "Plan a day in Nice", "Swim."]
    assert log.branch_count() == 3 and log.title == "Plan a day in Lyon"

    # Resume: the same conversation, and it goes on in the same file.
    resumed = ChatSession(read_chat(path), path)
    assert resumed.messages == session.messages
    assert resumed.last_params() == hotter  # none on this branch: the latest turn's
    resumed.add_user("And in the evening?")
    assert len(read_chat(path).messages) == len(third) + 1
    assert resumed.final_answers() == ["Where to?", "Swim."]


def test_resume_through_settings_restores_model_and_settings(tmp_path: Path):
    session = ChatSession(ChatLog(), tmp_path / "c.json")
    session.add_user("hi")
    params = GenerationParams(temperature=0.25, max_tokens=77).model_dump(mode="json")
    session.add_assistant([Message("assistant", "yo", channel="final")], model="m1",
                          params=params)
    settings = resolve(Choices(chat="c"), UserConfig(chats_dir=str(tmp_path)))
    assert settings.model == "m1"
    assert (settings.params.temperature, settings.params.max_tokens) == (0.25, 77)
    other = resolve(Choices(chat="c", model="m2", params={"max_tokens": 5}),
                    UserConfig(chats_dir=str(tmp_path)))
    assert (other.model, other.params.temperature, other.params.max_tokens) == ("m2", 0.25, 5)


# -- corrupt files ------------------------------------------------------------------------------


def saved_chat(path: Path) -> bytes:
    session = ChatSession(ChatLog(), path)
    session.add_user("a question worth keeping")
    session.add_assistant([Message("assistant", "an answer", channel="final")], model="m")
    return path.read_bytes()


def read_error(path: Path) -> str:
    with pytest.raises(ChatFileError) as info:
        read_chat(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_truncated_chat_is_a_clear_error_and_is_never_written(tmp_path: Path):
    path = tmp_path / "notes.json"
    whole = saved_chat(path)
    path.write_bytes(whole[: len(whole) // 2])
    before = path.read_bytes()
    message = read_error(path)
    assert message.startswith(f"{path}:")  # path:line:column
    assert ": not a valid chat file (invalid JSON: " in message
    assert message.endswith("; truncated or corrupt?)")
    with pytest.raises(ChatFileError):
        resolve(Choices(chat="notes"), UserConfig(chats_dir=str(tmp_path)))
    [row] = list_chats(tmp_path)
    assert row.error and "truncated or corrupt" in row.error and row.messages == 0
    with pytest.raises(ChatFileError):
        rename_chat(path, "other")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]
    assert free_path(path) == tmp_path / "notes-2.json"  # where a new chat goes beside it


@pytest.mark.parametrize("content,expected", [
    (b"", "the file is empty, not a chat log"),
    (b"  \n", "the file is empty, not a chat log"),
    (b"\xff\xfe\x00garbage", "cannot read"),
    (b"[1, 2]", 'not a harmony-tui chat log (expected "format": "harmony-tui-chat")'),
    (b'{"metadata": {}, "messages": []}', "this is an mlx-harmony chat log; convert it with "
                                          "`harmony-tui migrate-chat"),
    (b'{"schema_version": 2, "chats": {}}', "this is an mlx-harmony chat log"),
    (b'{"format": "harmony-tui-chat", "schema_version": 7}',
     "schema_version 7 was written by a newer harmony-tui (this one reads 1)"),
    (b'{"format": "harmony-tui-chat", "schema_version": 1, "messages": [{"role": "robot"}]}',
     "messages.0.role: input should be 'user', 'assistant', 'tool', 'system' or 'developer'"),
    (b'{"format": "harmony-tui-chat", "schema_version": 1, "messages": '
     b'[{"id": "x", "role": "user"}, {"id": "x", "role": "user"}]}',
     "messages: duplicate message ids"),
    (b'{"format": "harmony-tui-chat", "schema_version": 1, "active_leaf": "nope"}',
     "active_leaf 'nope' is not a message id"),
    (b'{"format": "harmony-tui-chat", "schema_version": 1, "messages": "many"}',
     "messages: input should be a valid list"),
])
def test_every_kind_of_bad_chat_file(tmp_path: Path, content: bytes, expected: str):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    message = read_error(path)
    assert message.startswith(str(path)) and expected in message, message
    assert path.read_bytes() == content


def test_generate_refuses_a_corrupt_chat_and_leaves_it(tmp_path: Path):
    chats = tmp_path / "chats"
    path = chats / "broken.json"
    whole = saved_chat(path)
    path.write_bytes(whole[:-30])
    before = path.read_bytes()
    config = tmp_path / "p.yaml"
    config.write_text(f"chats_dir: {chats}\n")
    result = subprocess.run(
        [sys.executable, "-m", "harmony_tui", "generate", "-p", "hi", "--chat", "broken",
         "--prompt-config", str(config), "--model", str(tmp_path / "never-loaded")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"harmony-tui: error: {path}:") and "truncated or corrupt?" in line
    assert path.read_bytes() == before
    assert sorted(p.name for p in chats.iterdir()) == ["broken.json"]


class Terminal:
    """The app in a real pseudo-terminal; its output is drained on a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.output = bytearray()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if ready:
                    chunk = os.read(self.master, 65536)
                    if not chunk:
                        return
                    self.output += chunk
                elif self.proc.poll() is not None:
                    return
            except OSError:
                return

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send(b"\x11")  # Ctrl+Q
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        os.close(self.master)


def test_the_app_starts_a_new_chat_beside_a_corrupt_one(tmp_path: Path, tiny_gpt_oss: Path):
    chats = tmp_path / "chats"
    path = chats / "broken.json"
    whole = saved_chat(path)
    path.write_bytes(whole[:-30])
    before = path.read_bytes()
    config = tmp_path / "p.yaml"
    config.write_text(f"chats_dir: {chats}\n")
    term = Terminal([sys.executable, "-m", "harmony_tui", "--chat", "broken", "--prompt-config",
                     str(config), "--model", str(tiny_gpt_oss), "--max-tokens", "2"], tmp_path)
    beside = chats / "broken-2.json"
    try:
        wait_until(lambda: b"is ready" in term.output or term.proc.poll() is not None,
                   timeout=60, message="the model to load")  # the welcome note
        assert term.proc.poll() is None, term.output.decode(errors="replace")
        term.send(b"hello beside")
        wait_until(lambda: b"hello beside" in term.output, message="the typed text")
        term.send(b"\r")
        wait_until(beside.exists, message="the new chat beside the corrupt one")
    finally:
        term.close()
    assert path.read_bytes() == before
    log = read_chat(beside)
    assert log.messages[0].content == "hello beside"
    text = term.output.decode(errors="replace")
    assert f"{path}:" in text and "it was left untouched; this chat is saved as " \
        "broken-2.json" in text


# -- names, listing, rename, delete -----------------------------------------------------------


def test_names_listing_rename_and_delete(tmp_path: Path):
    assert chat_path("ideas.json", tmp_path) == tmp_path / "ideas.json"
    for bad in ("", "  ", "..", "a/b", "../up", "x\\y"):
        with pytest.raises(ChatFileError, match="expected a name without folders"):
            chat_path(bad, tmp_path)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    saved_chat(first)
    saved_chat(second)
    log = read_chat(second)
    log.updated_at = "2999-01-01T00:00:00.000Z"
    write_chat(second, log)
    (tmp_path / "notes.txt").write_text("not a chat")
    rows = list_chats(tmp_path)
    assert [r.name for r in rows] == ["second", "first"]
    assert rows[0].title == "a question worth keeping" and rows[0].model == "m"
    assert "an answer" in rows[0].text and rows[0].messages == 2
    assert list_chats(tmp_path / "missing") == []

    with pytest.raises(ChatFileError, match="a chat with that name already exists"):
        rename_chat(first, "second")
    target = rename_chat(first, "renamed.json")
    assert target == tmp_path / "renamed.json" and not first.exists()
    assert read_chat(target).title == "renamed"
    assert rename_chat(target, "renamed") == target  # same name: only the title
    delete_chat(target)
    delete_chat(target)  # already gone: no error
    assert [r.name for r in list_chats(tmp_path)] == ["second"]
    assert free_path(tmp_path / "fresh.json") == tmp_path / "fresh.json"
