"""Speculative transcription: start transcribing when speech pauses, while the trailing silence
that ends listening is still awaited.

Pass ``on_pause`` to the ``Recorder``; when the recording ends, ``transcribe`` returns the
guess made at the final pause if the utterance did end there (the same samples, or no speech
after it when listening was stopped by hand), else transcribes as usual. With the default 0.8 s
of trailing silence, the transcript is ready about as soon as listening ends instead of a
transcription later:

    guesser = SpeculativeTranscriber(stt)
    recorder = Recorder(source, config, on_pause=guesser.on_pause, on_done=...).start()
    ...
    text = guesser.transcribe(recording)     # blocking: call it from a worker
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from harmony_tui.voice.audio import SAMPLE_RATE
from harmony_tui.voice.stt import SpeechToText
from harmony_tui.voice.vad import Recording


class SpeculativeTranscriber:
    """Wraps a ``SpeechToText``: one transcription at a time, guesses at pauses."""

    def __init__(self, stt: SpeechToText) -> None:
        self.stt = stt
        self._lock = threading.Lock()
        self._guess: tuple[np.ndarray, int, Future[str]] | None = None
        self.guesses = 0  # speculative transcriptions started (one per pause)
        self.hits = 0  # transcripts taken from a guess

    def on_pause(self, audio: np.ndarray, speech_end: int) -> None:
        """The Recorder's ``on_pause``: transcribe ``audio`` on a thread of its own."""
        future: Future[str] = Future()
        self._guess = (audio, speech_end, future)
        self.guesses += 1

        def run() -> None:
            try:
                with self._lock:
                    current = self._guess
                    if current is None or current[2] is not future:  # speech went on
                        raise RuntimeError("superseded by a later pause")
                    future.set_result(self.stt.transcribe(audio, SAMPLE_RATE).text)
            except BaseException as err:  # transcribe() transcribes again and raises for real
                future.set_exception(err)

        threading.Thread(target=run, name="voice-stt-guess", daemon=True).start()

    def reset(self) -> None:
        """Forget the guess (a new listening session)."""
        self._guess = None

    @staticmethod
    def _fits(audio: np.ndarray, speech_end: int, recording: Recording) -> bool:
        """Whether the guess holds the same words as the recording: the same samples, or
        (listening stopped by hand during the pause) no speech after the guessed end."""
        if recording.cancelled or recording.reason == "error":
            return False
        return np.array_equal(audio, recording.audio) or (
            recording.speech_end_sample == speech_end and recording.reason != "silence")

    def transcribe(self, recording: Recording) -> str:
        """The text of ``recording`` ("" when nothing intelligible was said). Blocking;
        engine and model errors are raised (VoiceError)."""
        guess = self._guess
        text: str | None = None
        if guess is not None and self._fits(guess[0], guess[1], recording):
            try:
                text = guess[2].result()
                self.hits += 1
            except Exception:  # superseded or failed: transcribe below
                text = None
        self._guess = None
        if text is None:
            with self._lock:
                text = self.stt.transcribe(recording.audio, recording.sample_rate).text
        return text.strip()
