"""Chat files against other processes and a hostile file system (issue 11, "Files and configs").

Two processes on one chat, read-only folders, a full disk, FIFOs, bad names and the leftovers of
killed saves: each is a one-line error (exit 2) from the command line, a calm note in the app that
keeps the conversation in memory and saves it later, and never a lost message. Real processes,
real mounts (tmpfs, read-only bind), the real app driven with Pilot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from test_app import WIDE, wait_for
from test_chat_kill import endless_config

from harmony_tui.app import HarmonyApp
from harmony_tui.cli import main
from harmony_tui.config.settings import Choices, resolve
from harmony_tui.config.user_config import UserConfig
from harmony_tui.engine.messages import Message
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ChatFileError
from harmony_tui.screens.sessions import RenameScreen, SessionsScreen
from harmony_tui.sessions import lock as lock_module
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.chat_log import ChatLog
from harmony_tui.sessions.lock import ChatLock, lock_path, sweep_stale_files
from harmony_tui.sessions.store import chat_name, list_chats, read_chat

PROG = [sys.executable, "-m", "harmony_tui"]


# -- helpers ----------------------------------------------------------------------------------


def saved_chat(path: Path, question: str = "an earlier question") -> list[tuple[str, str]]:
    """A chat with one finished exchange; returns its (role, content) pairs."""
    session = ChatSession(ChatLog(), path)
    session.add_user(question)
    session.add_assistant([Message("assistant", "an earlier answer", channel="final")],
                          model="m")
    return contents(path)


def contents(path: Path) -> list[tuple[str, str]]:
    return [(r.role, r.content) for r in read_chat(path).path()]


def generate(config: Path, model: Path | str, chat: str, prompt: str, *extra: str) -> list[str]:
    return [*PROG, "generate", "--chat", chat, "--model", str(model), "--prompt-config",
            str(config), "--prompt", prompt, *extra]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The process failed with exit status 2 and exactly one ``error:`` line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()
             and not line.startswith("Loading")]
    assert len(lines) == 1 and "error: " in lines[0], proc.stderr
    return lines[0]


def stray_files(folder: Path) -> list[str]:
    """Temp and lock files left in the chats folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".lock")))


@contextlib.contextmanager
def holding(config: Path, chat: str) -> Iterator[subprocess.Popen]:
    """A real ``harmony-tui generate --chat CHAT --prompt -`` waiting for its prompt on standard
    input: it has the chat open (its lock taken) and uses no CPU. Closing its input lets it go."""
    chats = config.parent / "chats"
    proc = subprocess.Popen([*PROG, "generate", "--chat", chat, "--prompt-config", str(config),
                             "--prompt", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lock = lock_path(chats / f"{chat}.json")
    try:
        wait_until(lambda: proc.poll() is not None or (
            lock.exists() and lock.read_text().strip() == str(proc.pid)), timeout=30,
            message=f"{chat} to be held by pid {proc.pid}")
        assert proc.poll() is None, proc.stderr.read()
        yield proc
    finally:
        release(proc)


def release(proc: subprocess.Popen) -> None:
    """Let a ``holding`` process go: empty input, it exits (status 2: no prompt)."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stderr):
        with contextlib.suppress(OSError):
            stream.close()


def folder_config(tmp_path: Path) -> tuple[Path, Path]:
    """A prompt config whose chats folder is ``tmp_path/chats``."""
    chats = tmp_path / "chats"
    chats.mkdir(exist_ok=True)
    config = tmp_path / "p.yaml"
    config.write_text(f"chats_dir: {chats}\n")
    return config, chats


def mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for everyone, root included, with a read-only bind mount (root
    ignores file modes, so ``chmod 555`` would not stop it). Other users: ``chmod 555``."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    if not mount("--bind", str(folder), str(folder)):
        pytest.skip("root without permission to mount: cannot make a read-only folder")
    try:
        assert mount("-o", "remount,bind,ro", str(folder), str(folder))
        yield
    finally:
        unmount(folder)


@contextlib.contextmanager
def small_disk(folder: Path) -> Iterator[bool]:
    """A real 64 KiB file system (tmpfs) at ``folder``; yields False if mounting is not allowed
    here (not root)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)):
        yield False
        return
    try:
        yield True
    finally:
        unmount(folder)


def fill(folder: Path) -> Path:
    """Write to ``folder`` until the disk is full; returns the filler file."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    try:  # the last partial page too
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def app_on(chats: Path, model: str = "demo", chat: str | None = None) -> HarmonyApp:
    settings = resolve(Choices(model=model, chat=chat), UserConfig(chats_dir=str(chats)))
    app = HarmonyApp(settings.model, params=GenerationParams(temperature=0, max_tokens=4),
                     settings=settings, remember_theme=False)
    app.save_retry_seconds = 0.2
    return app


def notices(app: HarmonyApp) -> list[str]:
    return [n.message for n in app._notifications]


async def send(pilot, text: str) -> None:
    app = pilot.app
    turns = app.turns_started
    app.prompt.set_text(text)
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.turns_started > turns and app.turn is None,
                   what="the answer")


# -- two processes on one chat ----------------------------------------------------------------


def test_a_second_generate_on_an_open_chat_is_refused_and_nothing_is_lost(tmp_path: Path,
                                                                          tiny_gpt_oss: Path):
    chats = tmp_path / "chats"
    path = chats / "same.json"
    before = saved_chat(path)
    config = endless_config(tmp_path / "endless.json", chats)
    first = subprocess.Popen(generate(config, tiny_gpt_oss, "same", "first prompt",
                                      "--max-tokens", "100000"),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert first.stdout.read(32)  # the first answer is streaming
        wait_until(lambda: "first prompt" in path.read_text(), timeout=30,
                   message="the first prompt in the chat file")
        second = subprocess.run(generate(config, tiny_gpt_oss, "same", "second prompt",
                                         "--max-tokens", "3"),
                                capture_output=True, text=True, timeout=120)
        line = one_line_error(second)
        assert line == (f"harmony-tui: error: chat 'same' is open in another harmony-tui "
                        f"process (pid {first.pid})")
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)  # the first saves its partial answer and exits
        assert first.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stdout.close()
    after_first = contents(path)
    assert after_first[:len(before) + 1] == [*before, ("user", "first prompt")]
    assert len(after_first) > len(before) + 1  # its partial answer
    assert read_chat(path).path()[-1].finish_reason == "cancelled"

    again = subprocess.run(generate(config, tiny_gpt_oss, "same", "second prompt",
                                    "--max-tokens", "3"),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode in (0, 3), again.stderr  # 3: no answer within 3 tokens
    final = contents(path)
    assert final[:len(after_first) + 1] == [*after_first, ("user", "second prompt")]
    assert stray_files(chats) == []  # each process removed its lock file


async def test_the_app_and_generate_never_share_a_chat(tmp_path: Path):
    config, chats = folder_config(tmp_path)
    saved_chat(chats / "mine.json", "mine")
    saved_chat(chats / "theirs.json", "theirs")
    app = app_on(chats, model=str(tmp_path / "no-model"), chat="mine")  # no model needed
    async with app.run_test(size=WIDE) as pilot:
        # The app has "mine" open: generate is refused with the app's pid, the file untouched.
        before = (chats / "mine.json").read_bytes()
        refused = subprocess.run([*PROG, "generate", "--chat", "mine", "--prompt-config",
                                  str(config), "--prompt", "hello"],
                                 capture_output=True, text=True, timeout=60)
        assert one_line_error(refused) == ("harmony-tui: error: chat 'mine' is open in another "
                                           f"harmony-tui process (pid {os.getpid()})")
        assert (chats / "mine.json").read_bytes() == before

        # generate has "theirs" open: the app refuses to open, rename or delete it.
        with holding(config, "theirs") as holder:
            app_cli = subprocess.run([*PROG, "--chat", "theirs", "--prompt-config", str(config)],
                                     capture_output=True, text=True, timeout=60)
            assert one_line_error(app_cli).endswith(f"(pid {holder.pid})")

            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen),
                           what="the sessions screen")
            screen = app.screen
            row = next(r for r in screen.shown if r.path.name == "theirs.json")
            assert row.holder == holder.pid
            assert screen.table.get_row(str(row.path))[0].startswith("🔒")
            screen.table.focus()
            screen.table.move_cursor(row=screen.shown.index(row))
            for key in ("enter", "f2", "delete"):
                await pilot.press(key)
                assert app.screen is screen and not isinstance(app.screen, RenameScreen)
            refusals = [n for n in notices(app) if f"pid {holder.pid}" in n]
            assert len(refusals) == 3, notices(app)
            assert (chats / "theirs.json").exists() and app.session.path == chats / "mine.json"
        # Let go: it opens now.
        screen.reload()
        row = next(r for r in screen.shown if r.path.name == "theirs.json")
        assert row.holder is None
        screen.table.move_cursor(row=screen.shown.index(row))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.path == chats / "theirs.json",
                       what="the chat to open")
        assert lock_path(chats / "theirs.json").read_text().strip() == str(os.getpid())
        assert not lock_path(chats / "mine.json").exists()  # given back

        # Taken by another process after the list was shown: opening is still refused.
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen),
                       what="the sessions screen")
        screen = app.screen
        with holding(config, "mine") as holder:
            screen.table.focus()
            screen.table.move_cursor(row=[r.path.name for r in screen.shown].index("mine.json"))
            await pilot.press("enter")
            await wait_for(pilot, lambda: any(f"pid {holder.pid}" in n for n in notices(app)),
                           what="the refusal")
            assert app.session.path == chats / "theirs.json"


def test_without_fcntl_chats_are_saved_unlocked(tmp_path: Path, monkeypatch):
    # A mock, because every platform these tests run on has fcntl: this stands for Windows,
    # where locking is skipped instead of failing.
    monkeypatch.setattr(lock_module, "fcntl", None)
    session = ChatSession(ChatLog(), tmp_path / "plain.json")
    session.claim()
    session.add_user("saved anyway")
    assert not session.lock.held and not lock_path(session.path).exists()
    assert contents(session.path) == [("user", "saved anyway")]
    session.release()


# -- names and files that are not chats -------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("two\nlines", "control or invisible characters"),
    ("tab\there", "control or invisible characters"),
    ("bell\x07", "control or invisible characters"),
    ("rtl\u202eevil", "control or invisible characters"),
    ("a" * 300, "the name is too long (300 bytes in UTF-8); expected at most 200"),
    ("é" * 150, "the name is too long (300 bytes in UTF-8)"),
    ("..", "expected a name without folders"),
    ("../up", "expected a name without folders"),
    ("a/b", "expected a name without folders"),
    (".hidden", "expected a name that does not start with '.'"),
])
def test_bad_chat_names_are_one_line_errors(tmp_path: Path, capsys, monkeypatch, name: str,
                                            expected: str):
    monkeypatch.chdir(tmp_path)
    config, chats = folder_config(tmp_path)
    for command in (["generate", "--chat", name, "-p", "hi"], ["--chat", name]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--prompt-config", str(config)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "argument --chat: name " in err, err
        assert expected in err, err
    assert list(chats.iterdir()) == []


def test_nul_in_a_chat_name_is_refused():
    # A NUL cannot reach a real command line (execve refuses it): the name check itself.
    with pytest.raises(ChatFileError, match="control or invisible characters"):
        chat_name("a\x00b")


def test_a_bad_name_from_the_command_line_is_one_line_in_a_real_process(tmp_path: Path):
    config, chats = folder_config(tmp_path)
    proc = subprocess.run([*PROG, "--chat", "one\ntwo", "--prompt-config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert "control or invisible characters" in one_line_error(proc)
    assert list(chats.iterdir()) == []


def test_a_fifo_named_like_a_chat_is_refused_at_once(tmp_path: Path):
    config, chats = folder_config(tmp_path)
    fifo = chats / "pipe.json"
    os.mkfifo(fifo)
    proc = subprocess.run([*PROG, "generate", "--chat", "pipe", "--prompt-config", str(config),
                           "--prompt", "hi"], capture_output=True, text=True, timeout=60)
    assert "this is a FIFO, not a chat file" in one_line_error(proc)

    rows: list = []
    lister = threading.Thread(target=lambda: rows.extend(list_chats(chats)), daemon=True)
    lister.start()
    lister.join(timeout=10)
    if lister.is_alive():  # it waits for a writer: give it one so the thread can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("listing the chats hangs on a FIFO")
    assert [(r.name, r.error) for r in rows] == [
        ("pipe", "this is a FIFO, not a chat file (expected a JSON file)")]


# -- read-only folder and full disk -----------------------------------------------------------


def test_generate_in_a_read_only_chats_folder(tmp_path: Path):
    config, chats = folder_config(tmp_path)
    path = chats / "kept.json"
    saved_chat(path)
    before = path.read_bytes()
    with read_only(chats):
        for name in ("kept", "new"):
            proc = subprocess.run([*PROG, "generate", "--chat", name, "--prompt-config",
                                   str(config), "--prompt", "hi"],
                                  capture_output=True, text=True, timeout=60)
            line = one_line_error(proc)
            assert line.startswith(f"harmony-tui: error: cannot save chat '{name}' "
                                   f"({chats / name}.json): "), line
            assert "read-only file system" in line or "no permission to write" in line
    assert path.read_bytes() == before
    assert sorted(p.name for p in chats.iterdir()) == ["kept.json"]


def test_generate_on_a_full_disk(tmp_path: Path, tiny_gpt_oss: Path):
    config, chats = folder_config(tmp_path)
    with small_disk(chats) as mounted:
        if not mounted:
            pytest.skip("a small real file system needs root (mount -t tmpfs) here")
        path = chats / "kept.json"
        saved_chat(path)
        before = path.read_bytes()
        fill(chats)
        proc = subprocess.run(generate(config, tiny_gpt_oss, "kept", "hello", "--max-tokens",
                                       "2"), capture_output=True, text=True, timeout=120)
        line = one_line_error(proc)
        assert line == (f"harmony-tui: error: cannot save chat 'kept' ({path}): the disk is "
                        "full"), line
        assert path.read_bytes() == before
        assert [p for p in stray_files(chats) if p.endswith(".tmp")] == []


@pytest.mark.parametrize("problem", ["disk full", "read-only"])
async def test_the_app_keeps_the_chat_in_memory_and_saves_it_later(tmp_path: Path,
                                                                   tiny_gpt_oss: Path,
                                                                   monkeypatch, problem: str):
    chats = tmp_path / "chats"
    with contextlib.ExitStack() as stack:
        if problem == "disk full":
            real = stack.enter_context(small_disk(chats))
        saved_chat(chats / "notes.json")
        before = (chats / "notes.json").read_bytes()
        app = app_on(chats, model=str(tiny_gpt_oss), chat="notes")
        async with app.run_test(size=WIDE) as pilot:
            await wait_for(pilot, lambda: app.model_ready, what="the model")
            if problem == "read-only":
                stack.enter_context(read_only(chats))
            elif real:
                filler = fill(chats)
            else:
                # A mock, only where a real small file system cannot be mounted (not root):
                # the write call fails as on a full disk.
                from harmony_tui import paths

                def full(path: Path, data: bytes) -> None:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                monkeypatch.setattr(paths, "atomic_write_bytes", full)
            await send(pilot, "hello")
            await send(pilot, "hello")
            reason = "the disk is full" if problem == "disk full" else "read-only file system"
            warnings = [n for n in notices(app) if "kept in memory" in n]
            assert len(warnings) == 1, notices(app)  # said once, not at every message
            assert reason in warnings[0] or "no permission" in warnings[0], warnings
            assert any("kept in memory" in e.text for e in app.conversation.entries
                       if e.kind == "note")
            assert (chats / "notes.json").read_bytes() == before  # the file is intact
            assert app.session.unsaved and app.is_running
            in_memory = [(r.role, r.content) for r in app.session.records()]
            assert in_memory.count(("user", "hello")) == 2

            # The problem goes away: the next retry saves everything.
            if problem == "read-only":
                stack.close()
            elif real:
                filler.unlink()
            else:
                monkeypatch.undo()
            await wait_for(pilot, lambda: not app.session.unsaved, what="the retried save")
            assert contents(chats / "notes.json") == in_memory
            assert any("nothing was lost" in n for n in notices(app))
        assert stray_files(chats) == []
        assert contents(chats / "notes.json") == in_memory


# -- leftovers of killed processes ------------------------------------------------------------


async def test_stale_temp_and_lock_files_are_removed_unless_a_live_process_holds_them(
        tmp_path: Path):
    config, chats = folder_config(tmp_path)
    saved_chat(chats / "a.json")
    saved_chat(chats / "b.json")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = [".a.json.k3j4h5g6.tmp", ".gone.json.abcdefgh.tmp", ".a.json.lock"]
    for name in stale:
        (chats / name).write_text(dead if name.endswith(".lock") else '{"half": ')
    with holding(config, "b") as holder:
        (chats / ".b.json.zzzz9999.tmp").write_text('{"being written')
        app = app_on(chats, model=str(tmp_path / "no-model"))
        async with app.run_test(size=WIDE) as pilot:
            await wait_for(pilot, lambda: not (chats / stale[0]).exists(),
                           what="the stale files to go", timeout=10)
            mine = lock_path(app.session.path).name  # this app's new chat
            assert stray_files(chats) == sorted([".b.json.lock", ".b.json.zzzz9999.tmp", mine])
        release(holder)
    sweep_stale_files(chats)
    assert stray_files(chats) == []
    assert sorted(p.name for p in chats.iterdir()) == ["a.json", "b.json"]


def test_taking_a_chat_removes_its_stale_temp_files(tmp_path: Path):
    chats = tmp_path / "chats"
    saved_chat(chats / "c.json")
    (chats / ".c.json.q1w2e3r4.tmp").write_text("{")
    (chats / ".c.json.b.json.q1w2e3r4.tmp").write_text("{")  # another chat's ("c.json.b")
    with ChatLock.acquire(chats / "c.json"):
        assert stray_files(chats) == [".c.json.b.json.q1w2e3r4.tmp", ".c.json.lock"]
    assert stray_files(chats) == [".c.json.b.json.q1w2e3r4.tmp"]


def test_a_chat_that_cannot_be_saved_at_the_end_goes_to_the_temp_folder(tmp_path: Path,
                                                                          monkeypatch):
    chats = tmp_path / "chats"
    saved_chat(chats / "last.json")
    spare_dir = tmp_path / "spare"
    spare_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(spare_dir))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    session = ChatSession(read_chat(chats / "last.json"), chats / "last.json")
    errors: list[str] = []
    session.on_save_error = lambda err: errors.append(str(err))
    with read_only(chats):
        session.add_user("words that must not be lost")
        assert session.unsaved and len(errors) == 1
        line = session.rescue()
    assert line.startswith(f"cannot save chat 'last' ({chats / 'last.json'}): ")
    spare = next(spare_dir.glob("harmony-tui-unsaved-last-*.json"))
    assert line.endswith(f"; the whole chat was written to {spare} instead")
    assert contents(spare)[-1] == ("user", "words that must not be lost")
    assert session.on_save_error is not None  # kept for later saves
