"""Push-to-talk for a front end: listen, transcribe, and speak the answer as it streams.

``VoiceControl`` puts the voice components (``voice/``: recorder with end-pointing, speech to
text, text to speech, speaker) behind the few calls the app and ``harmony-tui voice`` make. A
spoken turn is a user message like any other: the front end sends the transcript through the
conversation loop and hands the turn's events to ``SpokenTurn``, which speaks the final answer
sentence by sentence (never thinking or tool calls) and stops at once on barge-in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from harmony_tui.conversation import TurnFinished
from harmony_tui.engine.events import Event, TextDelta
from harmony_tui.voice.audio_io import AudioSink, AudioSource
from harmony_tui.voice.settings import VoiceSettings

LevelCallback = Callable[[float, float], None]
ErrorCallback = Callable[[str], None]


class VoiceControl:
    """The voice engines of a session and the one listening session at a time.

    ``source_factory`` makes the microphone for each listening session and ``sink`` is the
    loudspeaker (defaults: the sound devices of the settings; tests pass a WAV file and a memory
    sink). ``load()`` is slow (the speech model): call it off the UI thread.
    """

    def __init__(self, settings: VoiceSettings, *,
                 source_factory: Callable[[], AudioSource] | None = None,
                 sink: AudioSink | None = None, on_error: ErrorCallback | None = None,
                 on_speaking: Callable[[bool], None] | None = None,
                 progress: Any = None) -> None:
        self.settings = settings
        self._source_factory = source_factory
        self._sink = sink
        self.on_error = on_error
        self.on_speaking = on_speaking
        self.progress = progress
        self.stt: Any = None
        self.guesser: Any = None  # SpeculativeTranscriber: transcribes at pauses in speech
        self.speaker: Any = None
        self.recorder: Any = None
        self._lock = threading.Lock()

    # -- setting up -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.stt is not None

    def load(self) -> None:
        """Load the speech model and open the voice (raises ``VoiceError`` with one line)."""
        from harmony_tui.voice.speaker import Speaker
        from harmony_tui.voice.speculative import SpeculativeTranscriber
        from harmony_tui.voice.stt import make_stt
        from harmony_tui.voice.tts import make_tts

        with self._lock:
            if self.stt is not None:
                return
            stt = make_stt(self.settings, progress=self.progress)
            stt.load()
            if self.settings.speak_answers and self.speaker is None:
                tts = make_tts(self.settings)
                sink = self._sink or self._device_sink()
                self.speaker = Speaker(tts, sink, on_error=self._spoken_error,
                                       on_speaking=self.on_speaking)
            self.guesser = SpeculativeTranscriber(stt)
            self.stt = stt

    def _device_sink(self) -> AudioSink:
        from harmony_tui.voice.devices import SoundDeviceSink

        return SoundDeviceSink(self.settings.output_device)

    def _source(self) -> AudioSource:
        if self._source_factory is not None:
            return self._source_factory()
        from harmony_tui.voice.devices import SoundDeviceSource

        return SoundDeviceSource(self.settings.input_device)

    def _spoken_error(self, message: str) -> None:
        if self.on_error is not None:
            self.on_error(f"speech stopped: {message} (the text answer is complete)")

    # -- listening ------------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self.recorder is not None and self.recorder.running

    def listen(self, on_done: Callable[[Any], None],
               on_level: LevelCallback | None = None) -> Any:
        """Start listening; ``on_done(recording)`` comes from the recorder's thread once the
        trailing silence, ``max_seconds``, ``send()`` or ``cancel()`` ends it."""
        from harmony_tui.voice.vad import EndpointConfig, Recorder

        self.stop_speaking()  # a new question interrupts the old answer
        self.guesser.reset()
        # transcription starts at each pause, while the trailing silence is still awaited
        self.recorder = Recorder(self._source(), EndpointConfig.from_settings(self.settings),
                                 on_level=on_level, on_done=on_done,
                                 on_pause=self.guesser.on_pause).start()
        return self.recorder

    def send(self) -> None:
        """End listening now and keep what was said."""
        if self.recorder is not None:
            self.recorder.stop()

    def cancel(self) -> bool:
        """End listening now and send nothing; False when not listening."""
        if not self.listening:
            return False
        self.recorder.cancel()
        return True

    def transcribe(self, recording: Any) -> str:
        """The text of a recording ("" when nothing intelligible was said). Blocking."""
        if not getattr(recording, "speech_detected", True):
            return ""
        return self.guesser.transcribe(recording).strip()

    # -- speaking -------------------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        return self.speaker is not None and self.speaker.speaking

    def spoken_turn(self) -> SpokenTurn | None:
        """Something to feed a turn's events to, or None when answers are not spoken."""
        if self.speaker is None or not self.settings.speak_answers:
            return None
        from harmony_tui.voice.speaker import SpokenAnswer

        return SpokenTurn(SpokenAnswer(self.speaker))

    def stop_speaking(self) -> bool:
        """Barge-in: stop playback at once; False when nothing was being said."""
        if self.speaker is None:
            return False
        was = self.speaker.speaking
        self.speaker.stop()
        return was

    def close(self) -> None:
        """Stop listening and speaking (quitting)."""
        self.cancel()
        if self.speaker is not None:
            self.speaker.close()


class SpokenTurn:
    """Feeds one turn's events to the speaker: the final answer only, sentence by sentence."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.done = False

    def feed(self, events: list[Event]) -> None:
        if self.done:
            return
        for event in events:
            if isinstance(event, TextDelta) and event.channel == "final" \
                    and event.recipient is None:
                self.answer.feed(event.text)
            elif isinstance(event, TurnFinished):
                self.done = True
                if event.reason in ("cancelled", "error"):
                    self.answer.cancel()  # a stopped answer stops speaking too
                else:
                    self.answer.finish()

    def cancel(self) -> None:
        self.done = True
        self.answer.cancel()
