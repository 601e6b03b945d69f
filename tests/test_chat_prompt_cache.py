"""A chat's prompt cache is saved beside it and reused after a restart (issue 16 item 4).

Real subprocesses (``generate --chat``) and real engines on the demo model; the cache files are
real mlx-lm prompt-cache safetensors.
"""

from __future__ import annotations

import json
import subprocess
import sys

from harmony_tui import paths
from harmony_tui.engine.engine import Engine
from harmony_tui.engine.events import TextDelta, TurnStart
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.sessions.chat_log import ChatLog
from harmony_tui.sessions.store import (
    delete_chat,
    prompt_cache_path,
    rename_chat,
    write_chat,
)

GREEDY = GenerationParams(temperature=0, max_tokens=48)
QUESTIONS = ["Hello!", "Give me a packing list for a weekend trip.",
             "Write hello world in Python.", "Compare cats and dogs in a table."]


def generate(chat: str, prompt: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "harmony_tui", "generate", "--chat", chat,
                          "--json", "--temperature", "0", "-p", prompt],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["stats"]


def test_generate_chat_resumes_with_the_whole_previous_prompt_cached(tmp_path):
    chat = f"resume-{tmp_path.name}"
    cache = prompt_cache_path(paths.data_dir() / "chats" / f"{chat}.json")
    previous = generate(chat, QUESTIONS[0])
    assert previous["cached_tokens"] == 0 and cache.is_file()
    for question in QUESTIONS[1:]:
        stats = generate(chat, question)  # a new process: only the file can help
        # Everything the previous turn prefilled is reused; what is left is the previous
        # answer and the new question, whatever the chat's length.
        assert stats["cached_tokens"] == previous["prompt_tokens"] - 1
        assert stats["prompt_tokens"] - stats["cached_tokens"] < 100
        previous = stats


def turns(engine: Engine, history: list[Message]) -> list[Message]:
    for question in QUESTIONS[:3]:
        history.append(Message("user", question))
        reply = engine.chat(history, PromptSetup(), GREEDY)
        history.append(Message("assistant", reply.final, channel="final"))
    return history


def answer(engine: Engine, history: list[Message]) -> tuple[int, str]:
    events = list(engine.stream(history, PromptSetup(), GREEDY))
    start = next(e for e in events if isinstance(e, TurnStart))
    return start.cached_tokens, "".join(e.text for e in events if isinstance(e, TextDelta))


def test_a_loaded_cache_gives_the_cold_answer_and_other_models_ignore_it(tmp_path,
                                                                         tiny_gpt_oss):
    path = tmp_path / "chat.cache.safetensors"
    with Engine.start("demo") as engine:
        history = turns(engine, [])
        written = engine.save_prompt_cache(path, 2**30).result()
    assert written == path.stat().st_size > 0
    history.append(Message("user", QUESTIONS[3]))
    with Engine.start("demo") as engine:
        covered = engine.load_prompt_cache(path).result()
        warm_cached, warm = answer(engine, history)
    assert warm_cached == covered > 100
    with Engine.start("demo") as engine:
        cold_cached, cold = answer(engine, history)
    assert cold_cached == 0 and warm == cold
    with Engine.start(str(tiny_gpt_oss)) as other:  # another model: not used
        assert other.load_prompt_cache(path).result() == 0
        assert len(other.prompt_cache) == 0
    damaged = tmp_path / "damaged.cache.safetensors"
    damaged.write_bytes(path.read_bytes()[:1000])
    with Engine.start("demo") as engine:
        assert engine.load_prompt_cache(damaged).result() == 0
        assert engine.load_prompt_cache(tmp_path / "missing.safetensors").result() == 0


def test_a_cache_over_the_size_cap_is_not_kept(tmp_path):
    path = tmp_path / "chat.cache.safetensors"
    with Engine.start("demo") as engine:
        assert engine.save_prompt_cache(path, 2**30).result() == 0  # nothing cached yet
        assert not path.exists()
        turns(engine, [])
        size = engine.save_prompt_cache(path, 2**30).result()
        assert size > 0
        assert engine.save_prompt_cache(path, size // 2).result() == 0
    assert not path.exists()  # the stale, smaller cache is gone too


def test_renaming_and_deleting_a_chat_take_its_prompt_cache_along(tmp_path):
    chat = tmp_path / "trip.json"
    write_chat(chat, ChatLog())
    prompt_cache_path(chat).write_bytes(b"cache")
    renamed = rename_chat(chat, "holiday")
    assert not prompt_cache_path(chat).exists()
    assert prompt_cache_path(renamed).read_bytes() == b"cache"
    assert prompt_cache_path(renamed).name == "holiday.cache.safetensors"
    delete_chat(renamed)
    assert not renamed.exists() and not prompt_cache_path(renamed).exists()
