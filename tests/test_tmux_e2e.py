"""The installed ``harmony-tui`` in a real terminal (tmux), driven as a person would."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harmony_tui.demo.corpus import SCRIPTS

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (.ci/run installs it)")


SOCKET = f"harmony-e2e-{os.getpid()}"  # a private tmux server: never the user's own sessions


def tmux(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True,
                          timeout=30)


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


def wait_screen(session: str, needle: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(session)
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared; screen was:\n{text}")


def installed_command() -> str:
    exe = shutil.which("harmony-tui") or str(Path(sys.executable).parent / "harmony-tui")
    assert Path(exe).exists(), "harmony-tui is not installed (pip install -e .)"
    return exe


def test_chat_and_settings_in_a_real_terminal(tmp_path):
    session = f"harmony-e2e-{uuid.uuid4().hex[:8]}"
    env = {k: os.environ[k] for k in ("HARMONY_TUI_CACHE_DIR", "HARMONY_TUI_CONFIG_DIR",
                                      "HF_HOME", "HF_HUB_OFFLINE")}
    env["HARMONY_TUI_DATA_DIR"] = str(tmp_path / "data")
    env["TERM"] = "xterm-256color"
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # COLUMNS/LINES, when inherited, would pin the app's idea of the terminal size.
    command = f"cd {shlex.quote(str(tmp_path))} && env -u COLUMNS -u LINES {assignments} " \
              f"{shlex.quote(installed_command())} --temperature 0"
    # Size the window first (a running tmux server may ignore -x/-y, and fixing the size later
    # races with the app's start-up), then start the app in it.
    started = tmux("new-session", "-d", "-s", session, "-x", "110", "-y", "32", "sleep 600")
    assert started.returncode == 0, started.stderr
    tmux("set-option", "-t", session, "window-size", "manual")
    tmux("resize-window", "-t", session, "-x", "110", "-y", "32")
    size = tmux("display", "-p", "-t", session, "#{window_width}x#{window_height}").stdout
    assert size.strip() == "110x32", size
    assert tmux("respawn-pane", "-k", "-t", session, command).returncode == 0
    try:
        wait_screen(session, "demo · idle")
        tmux("send-keys", "-t", session, "-l", SCRIPTS[0].prompt)
        tmux("send-keys", "-t", session, "Enter")
        text = wait_screen(session, "harmony-tui demo model")
        assert "The user greets me" in text, text  # the thinking pane
        assert "tok/s" in text
        tmux("send-keys", "-t", session, "F5")
        wait_screen(session, "Increase")  # the sidebar has focus: its keys show in the footer
        tmux("send-keys", "-t", session, "Right")
        text = wait_screen(session, "temperature = 0.05 (next request)")
        row = next(line for line in text.splitlines() if "temperature" in line and "●" in line)
        assert "0.05" in row
        tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and tmux("has-session", "-t", session).returncode == 0:
            time.sleep(0.2)
        assert tmux("has-session", "-t", session).returncode != 0, screen(session)
    finally:
        tmux("kill-session", "-t", session)
        tmux("kill-server")
        # tmux leaves its socket file behind: it lives in $TMUX_TMPDIR (or /tmp)/tmux-UID/
        socket_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (socket_dir / SOCKET).unlink(missing_ok=True)
