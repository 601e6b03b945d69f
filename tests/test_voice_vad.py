"""End-pointing on synthetic and spoken audio, and the threaded Recorder (start, level meter,
stop/cancel, faults)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import wait_until
from voice_audio import espeak, silence, tone

from harmony_tui.voice.audio import SAMPLE_RATE, level_dbfs
from harmony_tui.voice.audio_io import ArraySource
from harmony_tui.voice.errors import AudioDeviceError
from harmony_tui.voice.vad import EndpointConfig, Endpointer, Recorder, listen


def seconds(samples: int | None) -> float:
    assert samples is not None
    return samples / SAMPLE_RATE


def test_level_in_dbfs():
    assert level_dbfs(silence(0.1)) == -100.0
    full = tone(0.1, amplitude=1.0)
    assert level_dbfs(full) == pytest.approx(-3.0, abs=0.1)  # a full-scale sine's RMS
    assert level_dbfs(tone(0.1, amplitude=0.01)) == pytest.approx(-43.0, abs=0.2)


def test_a_tone_between_silences_starts_and_ends_the_utterance():
    endpointer = Endpointer(EndpointConfig(silence_seconds=0.8))
    ended = endpointer.feed(np.concatenate([silence(1.0), tone(1.5), silence(0.5)]))
    assert endpointer.started and not ended  # only 0.5 s of trailing silence so far
    assert seconds(endpointer.start) == pytest.approx(1.0, abs=0.06)
    assert endpointer.feed(silence(0.4))  # 0.9 s of silence now
    assert seconds(endpointer.end) == pytest.approx(2.5, abs=0.06)


@pytest.mark.parametrize("trailing", [0.3, 0.8, 1.5])
def test_the_trailing_silence_is_configurable(trailing):
    audio = np.concatenate([silence(0.5), tone(1.0), silence(3.0)])
    recording = listen(ArraySource(audio), EndpointConfig(silence_seconds=trailing))
    assert recording.reason == "silence" and recording.speech_detected
    # Listening stopped right after the trailing silence, not at the end of the input.
    assert recording.seconds == pytest.approx(1.5 + trailing, abs=0.07)
    # The utterance is the tone with a small margin, not the silences.
    assert 1.0 < recording.audio.size / SAMPLE_RATE < 1.0 + 0.3 + 0.25 + 0.07


def test_a_click_is_not_speech_and_a_quiet_hum_is_below_the_threshold():
    click = np.concatenate([silence(0.5), tone(0.03), silence(1.5)])
    recording = listen(ArraySource(click), EndpointConfig(max_seconds=10))
    assert not recording.speech_detected and recording.reason == "end_of_input"
    hum = tone(2.0, amplitude=0.003)  # about -53.5 dBFS, which webrtcvad alone takes as voice
    recording = listen(ArraySource(hum), EndpointConfig(threshold_db=-50))
    assert not recording.speech_detected
    recording = listen(ArraySource(hum), EndpointConfig(threshold_db=-60))
    assert recording.speech_detected


def test_max_seconds_ends_a_never_ending_utterance():
    recording = listen(ArraySource(tone(10.0)), EndpointConfig(max_seconds=2.0))
    assert recording.reason == "max_seconds" and recording.speech_detected
    assert recording.seconds == pytest.approx(2.0, abs=0.05)


def test_silence_only_gives_no_speech(tmp_path):
    recording = listen(ArraySource(silence(3.0)), EndpointConfig(max_seconds=2.0))
    assert recording.reason == "max_seconds" and not recording.speech_detected
    assert not recording.usable


def test_recorded_speech_is_found_between_silences(tmp_path):
    speech = espeak("Hello there. What is the capital of France?", tmp_path / "s.wav")
    audio = np.concatenate([silence(1.0), speech, silence(2.0)])
    endpointer = Endpointer()
    assert endpointer.feed(audio)
    voiced = np.flatnonzero(np.abs(speech) > 300)
    first, last = (1.0 + voiced[0] / SAMPLE_RATE, 1.0 + voiced[-1] / SAMPLE_RATE)
    assert seconds(endpointer.start) == pytest.approx(first, abs=0.15)
    assert seconds(endpointer.end) == pytest.approx(last, abs=0.15)
    # The pause between the two sentences (shorter than 0.8 s) did not end the utterance.
    assert seconds(endpointer.end) > 1.0 + speech.size / SAMPLE_RATE - 0.5


def test_the_recorder_runs_in_its_thread_and_reports_level_and_time():
    levels: list[tuple[float, float]] = []
    done = threading.Event()
    audio = np.concatenate([silence(0.5), tone(1.0), silence(1.5)])
    recorder = Recorder(ArraySource(audio, realtime=True), EndpointConfig(),
                        on_level=lambda db, t: levels.append((db, t)),
                        on_done=lambda r: done.set())
    started = time.monotonic()
    recorder.start()
    assert time.monotonic() - started < 0.1 and recorder.running  # start() did not block
    assert done.wait(10)
    recording = recorder.wait(0)
    assert recording is not None and recording.reason == "silence"
    assert time.monotonic() - started >= 2.2  # paced like a microphone
    quiet = [db for db, t in levels if t < 0.45]
    loud = [db for db, t in levels if 0.6 < t < 1.4]
    assert max(quiet) == -100.0 and min(loud) > -15.0  # the meter moved
    assert [t for _, t in levels] == sorted(t for _, t in levels)


def test_stop_sends_what_was_said_so_far():
    recorder = Recorder(ArraySource(np.concatenate([silence(0.3), tone(20.0)]), realtime=True))
    levels = []
    recorder.on_level = lambda db, t: levels.append(t)
    recorder.start()
    wait_until(lambda: levels and levels[-1] > 1.0, 10, message="1 s listened")
    recorder.stop()
    recording = recorder.wait(5)
    assert recording is not None and recording.reason == "stopped"
    assert recording.usable and 0.7 < recording.audio.size / SAMPLE_RATE < 2.0


def test_cancel_marks_the_recording_cancelled():
    recorder = Recorder(ArraySource(tone(20.0), realtime=True)).start()
    recorder.cancel()
    recording = recorder.wait(5)
    assert recording is not None and recording.cancelled and not recording.usable


class UnpluggedSource(ArraySource):
    """Fault injection: a device that fails after ``good`` blocks, as an unplugged USB
    microphone does (no hardware to unplug here; the sounddevice path is tested with a real
    aborted PortAudio stream in test_voice_devices.py)."""

    def __init__(self, samples: np.ndarray, good: int) -> None:
        super().__init__(samples)
        self.good = good
        self.closed = False

    def read(self, frames: int) -> np.ndarray | None:
        if self.good == 0:
            raise AudioDeviceError("input device 'USB mic' stopped delivering audio "
                                   "(unplugged or failed)")
        self.good -= 1
        return super().read(frames)

    def close(self) -> None:
        self.closed = True


def test_a_device_failing_mid_recording_ends_with_a_clear_error_and_keeps_the_audio():
    source = UnpluggedSource(np.concatenate([silence(0.3), tone(5.0)]), good=50)  # 1.5 s
    recording = listen(source)
    assert recording.reason == "error" and source.closed
    assert recording.error == ("input device 'USB mic' stopped delivering audio (unplugged or "
                               "failed)")
    assert recording.speech_detected and recording.seconds == pytest.approx(1.5, abs=0.05)
    assert recording.audio.size / SAMPLE_RATE > 1.1  # what was said is still there


def test_an_unexpected_failure_is_reported_not_raised():
    class Broken(ArraySource):
        def read(self, frames: int) -> np.ndarray | None:
            raise RuntimeError("driver exploded")

    recording = listen(Broken(silence(1.0)))
    assert recording.reason == "error" and "RuntimeError: driver exploded" in recording.error
