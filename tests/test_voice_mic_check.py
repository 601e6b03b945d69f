"""``harmony-tui mic-check``: a moving level in a real terminal (tmux, private socket) from a
fake ALSA microphone, and clear messages without a device or without PortAudio."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from voice_audio import IN_CI, FifoMicrophone, fake_alsa, require_portaudio, require_tool, tone

ROOT = Path(__file__).resolve().parent.parent
SOCKET = f"harmony-mic-{os.getpid()}"  # a private tmux server: never the user's own sessions


def tmux(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True,
                          timeout=30)


def test_mic_check_shows_a_moving_level_in_a_terminal(tmp_path):
    require_portaudio()
    require_tool("tmux")
    loud, quiet = tone(0.3, amplitude=0.5), tone(0.3, amplitude=0.003)
    env = fake_alsa(tmp_path, tmp_path / "mic.fifo")
    session = f"mic-{uuid.uuid4().hex[:8]}"
    exports = {k: env[k] for k in ("XDG_CONFIG_HOME", "HARMONY_TUI_CONFIG_DIR",
                                   "HARMONY_TUI_DATA_DIR", "HARMONY_TUI_CACHE_DIR")}
    exports["PYTHONPATH"] = str(ROOT)
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items())
    command = (f"cd {shlex.quote(str(ROOT))} && env {assignments} "
               f"{shlex.quote(sys.executable)} -m harmony_tui mic-check --device fakemic "
               f"--seconds 5; echo EXIT=$?; sleep 30")
    with FifoMicrophone(tmp_path / "mic.fifo", [loud, quiet], 0.3):
        assert tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "20",
                    command).returncode == 0
        try:
            levels: set[float] = set()
            screen = ""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                screen = tmux("capture-pane", "-p", "-t", session).stdout
                levels |= {float(v) for v in re.findall(r"level\s+(-?\d+\.\d) dBFS", screen)}
                if "EXIT=" in screen:
                    break
                time.sleep(0.05)
        finally:
            tmux("kill-session", "-t", session)
    assert "EXIT=0" in screen, screen
    assert "fakemic" in screen and "Listening to" in screen
    assert "Peak level" in screen
    # The meter line was rewritten in place with different levels: loud and quiet seen.
    assert max(levels) > -20 and min(levels) < -40, (levels, screen)
    assert len([line for line in screen.splitlines() if line.startswith("level")]) <= 1


def test_mic_check_without_portaudio_says_what_to_install(tmp_path):
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if IN_CI:
            pytest.fail("bwrap is missing in CI (.ci/run installs bubblewrap)")
        pytest.skip("bubblewrap is not installed")
    library = None
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
                   "/lib/x86_64-linux-gnu"):
        candidate = Path(folder) / "libportaudio.so.2"
        if candidate.exists():
            library = candidate.resolve()
            break
    if library is None:  # PortAudio really is missing: the plain run shows the message
        sandbox: list[str] = []
    else:  # hide the library: the file is there but unreadable as a library (OSError)
        sandbox = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                   "--tmpfs", "/tmp", "--bind", str(tmp_path), str(tmp_path),
                   "--ro-bind", str(ROOT), str(ROOT),  # a checkout under /tmp stays visible
                   "--ro-bind", "/dev/null", str(library)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*sandbox, sys.executable, "-m", "harmony_tui", "mic-check",
                           "--seconds", "1"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("harmony-tui: error: PortAudio library not found (")
    assert line.endswith("install the PortAudio library: Debian/Ubuntu `sudo apt install "
                         "libportaudio2`, macOS `brew install portaudio`")


def test_mic_check_rejects_a_bad_seconds_value():
    done = subprocess.run([sys.executable, "-m", "harmony_tui", "mic-check", "--seconds", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert done.stderr.strip() == ("harmony-tui: error: --seconds 0: expected a number of "
                                   "seconds > 0")


def test_mic_check_meter_line():
    from harmony_tui.voice import audio, mic_check
    from harmony_tui.voice.mic_check import meter

    assert mic_check.SILENCE_DBFS == audio.SILENCE_DBFS

    line = meter(-35.0, 1.25, -12.0, -50.0)
    assert line.startswith("level  -35.0 dBFS |") and "peak  -12.0" in line
    assert "sound" in line and line.endswith("1.2 s")
    assert "-inf" in meter(-100.0, 0.0, -100.0, -50.0) and "quiet" in meter(-60, 0, -60, -50)
