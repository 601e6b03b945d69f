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

from collections.abc import Callable

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
        self._source_factory = source_factory
        self._sink = sink
        self.progress = progress
        self.on_speech_error = on_speech_error
        self.on_speaking = on_speaking
        self._stt: SpeechToText | None = None
        self._tts: TextToSpeech | None = None
        self._speaker: Speaker | None = None

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
        if self._source_factory is not None:
            return self._source_factory()
        from harmony_tui.voice.devices import SoundDeviceSource

        return SoundDeviceSource(self.settings.input_device)

    def listen(self, on_level: LevelCallback | None = None,
               on_done: Callable[[Recording], None] | None = None) -> Recorder:
        """Start listening on a background thread; returns the running Recorder."""
        return Recorder(self.source(), EndpointConfig.from_settings(self.settings),
                        on_level=on_level, on_done=on_done).start()

    def transcribe(self, recording: Recording) -> tuple[str, str | None]:
        """(transcript, problem): the text to send, or "" and a one-line reason to show.
        Blocking: call it from a worker. Engine and model errors are raised (VoiceError)."""
        problem = recording_problem(recording)
        if problem is not None:
            return "", problem
        transcript = self.stt.transcribe(recording.audio, recording.sample_rate)
        if transcript.empty:
            return "", "heard nothing I could understand; nothing was sent"
        return transcript.text, None

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
