"""A process killed with SIGKILL at any moment leaves a valid chat file with every saved message.

Saving is atomic (temp file, fsync, rename), so whatever instant the kill lands on, the chat file
is either the previous complete version or the next one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import wait_until

from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.chat_log import FORMAT, SCHEMA_VERSION, ChatLog
from harmony_tui.sessions.store import list_chats, read_chat


def endless_config(path: Path, chats: Path) -> Path:
    """Sampling that keeps a random model talking: every Harmony special token is banned."""
    from harmony_tui.engine.formats.harmony import FIRST_SPECIAL, VOCAB_SIZE

    bias = {str(token): -100.0 for token in range(FIRST_SPECIAL, VOCAB_SIZE)}
    path.write_text(json.dumps({"logit_bias": bias, "chats_dir": str(chats)}))
    return path


def earlier_chat(path: Path) -> list[str]:
    """A chat with two finished exchanges; returns its messages' text."""
    from harmony_tui.engine.messages import Message

    session = ChatSession(ChatLog(), path)
    for question, answer in (("first question", "first answer"),
                             ("second question", "second answer")):
        session.add_user(question)
        session.add_assistant([Message("assistant", f"thinking about {question}",
                                       channel="analysis"),
                               Message("assistant", answer, channel="final")], model="m")
    return [r.content for r in session.records()]


def test_sigkill_mid_turn_leaves_every_completed_message(tmp_path: Path, tiny_gpt_oss: Path):
    chats = tmp_path / "chats"
    path = chats / "long.json"
    before = earlier_chat(path)
    config = endless_config(tmp_path / "endless.json", chats)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_tui", "generate", "--chat", "long", "--model",
         str(tiny_gpt_oss), "--prompt-config", str(config), "--max-tokens", "100000",
         "--prompt", "tell me everything"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout.read(64)  # the answer is streaming: the turn is under way
        wait_until(lambda: "tell me everything" in path.read_text(), timeout=30,
                   message="the user message in the chat file")
        assert proc.poll() is None, "the turn ended before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    data = json.loads(path.read_text(encoding="utf-8"))  # valid JSON
    assert (data["format"], data["schema_version"]) == (FORMAT, SCHEMA_VERSION)
    log = read_chat(path)  # valid in the current schema
    contents = [r.content for r in log.path()]
    assert contents[:len(before) + 1] == [*before, "tell me everything"]
    assert all(r.role == "assistant" for r in log.path()[len(before) + 1:])
    assert [row.name for row in list_chats(chats)] == ["long"]  # no stray chat files


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from harmony_tui.engine.messages import Message
    from harmony_tui.sessions.chat import ChatSession
    from harmony_tui.sessions.chat_log import ChatLog
    from harmony_tui.sessions.store import read_chat

    path = Path(sys.argv[1])
    session = ChatSession(read_chat(path) if path.exists() else ChatLog(), path)
    n = len(session.log.messages)
    while True:
        filler = (f"message {n} " * 2000)  # ~20 KB: each save takes a while
        if n % 2 == 0:
            session.add_user(filler)
        else:
            session.add_assistant([Message("assistant", filler, channel="final")], model="w")
        n += 1
        print(n, flush=True)  # n messages are saved
""")


def test_random_sigkills_while_appending_never_break_the_file(tmp_path: Path):
    path = tmp_path / "chats" / "stress.json"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    saved = 0
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for _ in range(rng.randint(1, 4)):  # wait for a random number of saves...
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                saved = int(line)
            # ...then kill at a random instant, most likely in the middle of a save. This
            # wait is the random moment itself, not a synchronisation.
            try:
                proc.wait(timeout=rng.uniform(0.0, 0.03))
            except subprocess.TimeoutExpired:
                pass
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        log = read_chat(path)  # always a complete, valid chat (seed {seed})
        count = len(log.messages)
        assert count >= saved, f"seed {seed}, round {round_}: lost saved messages"
        assert [r.content.split(" ", 2)[1] for r in log.messages] == \
            [str(i) for i in range(count)], f"seed {seed}"
        assert [r.parent_id for r in log.messages[1:]] == [r.id for r in log.messages[:-1]]
        assert log.active_leaf == log.messages[-1].id
        saved = count
    assert [row.name for row in list_chats(path.parent)] == ["stress"]
