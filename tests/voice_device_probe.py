"""Run in a subprocess by test_voice_devices.py: PortAudio reads the ALSA configuration once,
when sounddevice is imported, so each check gets a fresh process whose XDG_CONFIG_HOME holds
the fake devices. Prints one JSON object."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from harmony_tui.voice.audio import write_wav
from harmony_tui.voice.devices import SoundDeviceSink, SoundDeviceSource, list_devices
from harmony_tui.voice.errors import VoiceError
from harmony_tui.voice.vad import EndpointConfig, Recorder


def record(out_wav: str) -> dict:
    levels: list[float] = []
    recorder = Recorder(SoundDeviceSource("fakemic"), EndpointConfig(max_seconds=20),
                        on_level=lambda db, t: levels.append(db))
    recording = recorder.start().wait(60)
    assert recording is not None
    write_wav(out_wav, recording.audio, 16000)
    return {"reason": recording.reason, "speech": recording.speech_detected,
            "seconds": recording.seconds, "error": recording.error,
            "max_level": max(levels), "min_level": min(levels)}


def unplug() -> dict:
    """A real PortAudio stream aborted under the recorder, as a vanished device ends it."""
    source = SoundDeviceSource("fakemic", stall_seconds=1.0)
    state = {"aborted": False}

    def on_level(db: float, elapsed: float) -> None:
        if elapsed >= 0.5 and not state["aborted"]:
            state["aborted"] = True
            source.abort()

    recording = Recorder(source, EndpointConfig(silence_seconds=5, max_seconds=20),
                         on_level=on_level).start().wait(60)
    assert recording is not None
    return {"reason": recording.reason, "error": recording.error,
            "seconds": recording.seconds, "audio_seconds": recording.audio.size / 16000}


def play(rate: int) -> dict:
    t = np.arange(rate) / rate
    samples = (0.25 * np.sin(2 * np.pi * 330 * t) * 32767).astype(np.int16)
    sink = SoundDeviceSink("fakespk")
    started = time.monotonic()
    finished = sink.play(samples, rate)
    sink.close()
    return {"finished": finished, "seconds": time.monotonic() - started, "name": sink.name,
            "samples": samples.tolist()[:200]}


def main() -> None:
    action = sys.argv[1]
    try:
        if action == "record":
            result = record(sys.argv[2])
        elif action == "unplug":
            result = unplug()
        elif action == "play":
            result = play(int(sys.argv[2]))
        else:
            result = {"devices": [d.name for d in list_devices()]}
    except VoiceError as err:
        result = {"voice_error": str(err)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
