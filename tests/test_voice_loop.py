"""``harmony-tui voice`` in a plain terminal, as a person would use it: Enter to speak, the
answer printed and spoken, Ctrl+D to quit. The microphone is a WAV file of espeak-ng speech
(``--input-wav``) and the loudspeaker a WAV file (``--output-wav``), transcribed back."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from test_voice_app import spoken_question  # noqa: F401  (the fixture)

from harmony_tui.sessions.store import read_chat
from harmony_tui.voice.audio import SAMPLE_RATE, read_wav, resample


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def voice_command(tmp_path, *args: str, stdin: str = "\n", timeout: float = 240):
    return subprocess.run(
        [sys.executable, "-m", "harmony_tui", "voice", "--temperature", "0", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_a_spoken_session_in_a_plain_terminal(tmp_path, spoken_question):  # noqa: F811
    config = tmp_path / "chats.yaml"
    config.write_text(f"chats_dir: {tmp_path / 'chats'}\n")
    out = tmp_path / "spoken.wav"
    result = voice_command(tmp_path, "--input-wav", spoken_question, "--output-wav", str(out),
                           "--chat", "talk", "--prompt-config", str(config))
    assert result.returncode == 0, result.stderr
    heard = re.search(r"^you: (.*)$", result.stdout, re.M)
    assert heard and words(heard.group(1)) == ["hello"], result.stdout
    assert "I am the **harmony-tui demo model**" in result.stdout  # the answer, printed
    # the same chat log as the app: the question and the answer
    records = read_chat(tmp_path / "chats" / "talk.json").path()
    assert records[0].role == "user" and words(records[0].content) == ["hello"]
    assert records[-1].channel == "final" and "demo model" in records[-1].content
    # spoken: the loudspeaker's audio says the answer's first words
    from harmony_tui.voice.settings import VoiceSettings
    from harmony_tui.voice.stt import make_stt

    audio, rate = read_wav(out)
    assert audio.size > rate  # more than a second of speech
    stt = make_stt(VoiceSettings())
    stt.load()
    said = stt.transcribe(resample(audio, rate, SAMPLE_RATE), SAMPLE_RATE).text
    assert words(said)[:4] == ["hello", "i", "am", "the"], said


def test_silence_is_said_and_nothing_sent(tmp_path):
    from harmony_tui.voice.audio import write_wav

    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(SAMPLE_RATE * 2, np.int16), SAMPLE_RATE)
    config = tmp_path / "chats.yaml"
    config.write_text(f"chats_dir: {tmp_path / 'chats'}\n")
    result = voice_command(tmp_path, "--input-wav", str(quiet), "--prompt-config", str(config))
    assert result.returncode == 0, result.stderr
    assert "no speech heard: nothing was sent" in result.stderr
    assert "you:" not in result.stdout
    assert not list((tmp_path / "chats").glob("*.json"))  # no empty chat left behind


@pytest.mark.parametrize("content, expected", [
    (None, "--input-wav: {path}: no such file"),
    (b"not audio", "{path}: not a readable WAV file"),
])
def test_a_bad_input_wav_is_one_line_before_anything_loads(tmp_path, content, expected):
    path = tmp_path / "mic.wav"
    if content is not None:
        path.write_bytes(content)
    result = voice_command(tmp_path, "--input-wav", str(path), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"harmony-tui: error: {expected.format(path=path)}"] or \
        lines[-1].startswith(f"harmony-tui: error: {expected.format(path=path)}")
    assert "Traceback" not in result.stderr and "Loading" not in result.stderr


def test_a_bad_voice_flag_names_itself():
    result = subprocess.run([sys.executable, "-m", "harmony_tui", "voice", "--speech-rate", "9"],
                            capture_output=True, text=True, timeout=60, input="")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("harmony-tui: error: --speech-rate: 9.0")
