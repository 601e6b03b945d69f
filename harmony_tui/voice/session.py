"""``VoiceSession``: everything a UI needs for push-to-talk, built from ``VoiceSettings``, so the
app and the plain-terminal loop wire voice in with a few calls:

    voice = VoiceSession(settings.voice)
    voice.load()                                   # in a worker: loads the STT and TTS models
    recorder = voice.listen(on_level=..., on_done=...)   # returns at once; press again: stop()
    text, problem = voice.transcribe(recording)    # problem: a one-line status message
    answer = voice.answer()                        # per turn: feed(final delta) ... finish()
    voice.stop_speaking()                          # barge-in
    voice.close()                                  # on quit

Heavy engines are imported and loaded only when first needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from harmony_tui.voice.audio_io import AudioSink, AudioSource
from harmony_tui.voice.settings import VoiceSettings
from harmony_tui.voice.speaker import Speaker, SpokenAnswer
from harmony_tui.voice.stt import Progress, SpeechToText, make_stt
from harmony_tui.voice.tts import TextToSpeech, make_tts
from harmony_tui.voice.vad import EndpointConfig, LevelCallback, Recorder, Recording


def recording_problem(recording: Recording) -> str | None:
    """What to tell the user about a recording that gives nothing to send (None if usable)."""
    if recording.reason == "error":
        return f"recording failed: {recording.error}"
    if recording.cancelled:
        return "listening cancelled"
    if not recording.speech_detected:
        return "heard nothing (no speech; check the microphone with harmony-tui mic-check)"
    return None


class VoiceSession:
    """The voice parts of one app run: devices, engines and the speaker."""

    def __init__(self, settings: VoiceSettings | None = None, *,
                 source_factory: Callable[[], AudioSource] | None = None,
                 sink: AudioSink | None = None, progress: Progress | None = None,
                 on_speech_error: Callable[[str], None] | None = None,
                 on_speaking: Callable[[bool], None] | None = None) -> None:
        self.settings = settings or VoiceSettings()
        self.source_factory = source_factory
        self._sink = sink
        self.progress = progress
        self.on_speech_error = on_speech_error
        self.on_speaking = on_speaking
        self._stt: SpeechToText | None = None
        self._tts: TextToSpeech | None = None
        self._speaker: Speaker | None = None
        self._stt_lock = threading.Lock()  # one transcription at a time
        self._guess: tuple[np.ndarray, Future[str]] | None = None  # speculative transcript
        self.speculations = 0  # speculative transcriptions started (one per pause)
        self.speculative_hits = 0  # transcripts taken from a speculative transcription

    def _transcribe_audio(self, audio: np.ndarray, sample_rate: int) -> str:
        with self._stt_lock:
            return self.stt.transcribe(audio, sample_rate).text

    @property
    def stt(self) -> SpeechToText:
        if self._stt is None:
            self._stt = make_stt(self.settings, self.progress)
        return self._stt

    @property
    def tts(self) -> TextToSpeech:
        if self._tts is None:
            self._tts = make_tts(self.settings)
        return self._tts

    def load(self) -> None:
        """Load the speech models now (blocking: call it from a worker). Raises VoiceError."""
        self.stt.load()
        if self.settings.speak_answers:
            self.tts.load()

    def source(self) -> AudioSource:
        if self.source_factory is not None:
            return self.source_factory()
        from harmony_tui.voice.devices import SoundDeviceSource

        return SoundDeviceSource(self.settings.input_device)

    def listen(self, on_level: LevelCallback | None = None,
               on_done: Callable[[Recording], None] | None = None) -> Recorder:
        """Start listening on a background thread; returns the running Recorder.

        When speech pauses, the utterance so far is transcribed at once on another thread; if
        the pause turns out to be the end, ``transcribe`` uses that result instead of starting
        only after the trailing silence (the silence wait and the transcription overlap).
        """
        self._guess = None
        return Recorder(self.source(), EndpointConfig.from_settings(self.settings),
                        on_level=on_level, on_done=on_done, on_pause=self._on_pause).start()

    def _on_pause(self, audio: np.ndarray, speech_end: int) -> None:
        future: Future[str] = Future()
        self._guess = (audio, future)
        self.speculations += 1

        def run() -> None:
            try:
                with self._stt_lock:
                    current = self._guess
                    if current is None or current[1] is not future:  # speech went on
                        raise RuntimeError("superseded by a later pause")
                    future.set_result(self.stt.transcribe(audio, 16000).text)
            except BaseException as err:  # the real transcription reports it again
                future.set_exception(err)

        threading.Thread(target=run, name="voice-stt-guess", daemon=True).start()

    def transcribe(self, recording: Recording) -> tuple[str, str | None]:
        """(transcript, problem): the text to send, or "" and a one-line reason to show.
        Blocking: call it from a worker. Engine and model errors are raised (VoiceError)."""
        problem = recording_problem(recording)
        if problem is not None:
            return "", problem
        guess = self._guess
        text: str | None = None
        if guess is not None and np.array_equal(guess[0], recording.audio):
            try:
                text = guess[1].result()
                self.speculative_hits += 1
            except Exception:  # transcribe again below, where the error is raised for real
                text = None
        self._guess = None
        if text is None:
            text = self._transcribe_audio(recording.audio, recording.sample_rate)
        if not text.strip():
            return "", "heard nothing I could understand; nothing was sent"
        return text, None

    @property
    def speaker(self) -> Speaker:
        if self._speaker is None:
            if self._sink is None:
                from harmony_tui.voice.devices import SoundDeviceSink

                self._sink = SoundDeviceSink(self.settings.output_device)
            self._speaker = Speaker(self.tts, self._sink, on_error=self.on_speech_error,
                                    on_speaking=self.on_speaking)
        return self._speaker

    def answer(self) -> SpokenAnswer | None:
        """A spoken answer for one turn, or None when answers are not spoken."""
        return SpokenAnswer(self.speaker) if self.settings.speak_answers else None

    def stop_speaking(self) -> None:
        if self._speaker is not None:
            self._speaker.stop()

    @property
    def speaking(self) -> bool:
        return self._speaker is not None and self._speaker.speaking

    def close(self) -> None:
        if self._speaker is not None:
            self._speaker.close()
            self._speaker = None
