"""Push-to-talk in the app, end to end with real parts and no sound card.

espeak-ng speaks a demo prompt into a WAV file, which is the microphone (``WavFileSource``);
the app's voice key starts listening, VAD ends it on the trailing silence, faster-whisper
(tiny.en) writes it down, the demo model answers through the conversation loop, piper speaks the
answer into a ``MemorySink``, and faster-whisper transcribes that audio back.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_app import WIDE, make_app, ready, wait_for
from voice_audio import IN_CI, espeak, silence

from harmony_tui.voice.audio import SAMPLE_RATE, resample, write_wav
from harmony_tui.voice.audio_io import MemorySink, WavFileSource
from harmony_tui.voice.settings import VoiceSettings
from harmony_tui.voice.weights import bundled_piper_voice, bundled_whisper_model

QUESTION = "Hello!"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@pytest.fixture(scope="module")
def spoken_question(tmp_path_factory) -> str:
    """The question as a WAV (half a second of silence before, two after)."""
    for what, found in (("faster-whisper", bundled_whisper_model()),
                        ("piper", bundled_piper_voice())):
        if found is None:
            message = f"the {what} weights are not installed (requirements/voice-weights.txt)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    folder = tmp_path_factory.mktemp("voice")
    speech = espeak(QUESTION, folder / "raw.wav")
    audio = np.concatenate([silence(0.5), speech, silence(2.0)])
    return str(write_wav(folder / "question.wav", audio, SAMPLE_RATE))


def voice_app(tmp_path, source, sink, **settings):
    app = make_app(chats_dir=tmp_path, voice_io=(source, sink))
    app.voice_settings = VoiceSettings(**settings)
    return app


async def wait_spoken(pilot, timeout: float = 120) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.turn is None and app.session.final_answers()
                   and app.voice is not None and not app.voice.speaking,
                   what="the answer to be spoken", timeout=timeout)


async def test_a_spoken_question_is_answered_aloud(tmp_path, spoken_question):
    sink = MemorySink()
    app = voice_app(tmp_path, lambda: WavFileSource(spoken_question), sink)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+@")  # what a legacy terminal sends for Ctrl+Space
        await wait_for(pilot, lambda: "listening" in app.status.voice or app.turn is not None,
                       what="listening", timeout=60)
        await wait_spoken(pilot)
        asked = app.session.messages[0].content
        answer = app.session.final_answers()[-1]
        heard = app.voice.stt.transcribe(resample(sink.audio, sink.sample_rate, SAMPLE_RATE),
                                         SAMPLE_RATE).text
        assert app.status.voice == "ready"
    assert app.session.messages[0].role == "user"
    assert words(asked) == ["hello"], asked  # what was said was sent
    # the answer was spoken: its first words come back from the loudspeaker's audio
    # ("hello i am the harmony tui ..."; whisper tiny may hear "tui" as "2": "harmony2")
    first, said = words(answer.split(":")[0])[:5], words(heard)
    assert len(first) == 5 and said[:4] == first[:4], (answer, heard)
    assert said[4].startswith(first[4]), (answer, heard)
    assert "```" not in heard and "**" not in heard


async def test_the_voice_key_stops_speaking_at_once(tmp_path, spoken_question):
    sink = MemorySink(realtime=True)  # plays as slowly as a loudspeaker
    app = voice_app(tmp_path, lambda: WavFileSource(spoken_question), sink)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+space")
        await wait_for(pilot, lambda: sink.seconds > 0.5, what="speech", timeout=120)
        await pilot.press("ctrl+space")  # barge-in
        await wait_for(pilot, lambda: not app.voice.speaking, what="silence", timeout=5)
        played = sink.seconds
        await wait_for(pilot, lambda: app.turn is None, what="the answer", timeout=60)
        # the rest of the answer is not queued either (it was, when the key forgot the turn)
        assert not app.voice.speaking
        assert sink.seconds - played < 0.2  # nothing more was played
        assert app.session.final_answers()  # the text answer is complete all the same
        assert app.status.voice == "ready"


async def test_silence_sends_nothing_and_says_so(tmp_path):
    quiet = write_wav(tmp_path / "quiet.wav", silence(1.5), SAMPLE_RATE)
    if bundled_whisper_model() is None:
        pytest.skip("faster-whisper weights are not installed")
    app = voice_app(tmp_path, lambda: WavFileSource(quiet), MemorySink())
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+space")
        await wait_for(pilot, lambda: any("nothing was sent" in e.text for e in
                                          app.conversation.entries if e.kind == "note"),
                       what="the note", timeout=60)
        assert not any(m.role == "user" for m in app.session.messages)
        assert app.turn is None


async def test_escape_cancels_listening(tmp_path, spoken_question):
    app = voice_app(tmp_path, lambda: WavFileSource(spoken_question, realtime=True),
                    MemorySink())
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+space")
        await wait_for(pilot, lambda: "listening" in app.status.voice, what="listening",
                       timeout=60)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.status.voice == "ready", what="cancelled")
        assert not any(m.role == "user" for m in app.session.messages)


async def test_a_missing_speech_model_is_one_clear_message_and_the_app_goes_on(tmp_path):
    app = voice_app(tmp_path, None, MemorySink(), stt_model=str(tmp_path / "no-such-model"))
    notes = []
    app.notify = lambda text, **kw: notes.append(text)  # records what the person is told
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+space")
        await wait_for(pilot, lambda: any("Voice is not available" in n for n in notes),
                       what="the message", timeout=60)
        message = next(n for n in notes if "Voice is not available" in n)
        assert "no-such-model" in message and "\n" not in message
        assert app.voice is None and app.status.voice == "off"
        app.prompt.set_text("Hello!")  # typing still works
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turn is None and app.session.final_answers(),
                       what="a typed answer", timeout=60)


async def test_voice_flag_loads_the_engines_at_start(tmp_path, spoken_question):
    app = make_app(chats_dir=tmp_path, voice=True,
                   voice_io=(lambda: WavFileSource(spoken_question), MemorySink()))
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: app.status.voice == "ready", what="voice ready",
                       timeout=60)
        assert app.voice.ready and not app.voice.listening  # ready, not yet listening
        assert "🎤 ready" in str(app.status.render())


async def test_quitting_while_the_answer_is_spoken_keeps_it_and_stops_the_voice(
        tmp_path, spoken_question):
    from harmony_tui.sessions.store import read_chat

    sink = MemorySink(realtime=True)
    app = voice_app(tmp_path, lambda: WavFileSource(spoken_question), sink)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+space")
        await wait_for(pilot, lambda: sink.seconds > 0.3, what="speech", timeout=120)
        speaker = app.voice.speaker
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None, what="the exit", timeout=30)
        path = app.session.path
    assert not any(thread.is_alive() for thread in speaker._threads)  # the voice is closed
    records = read_chat(path).path()
    assert records[0].role == "user" and records[-1].channel == "final"


async def test_with_confirm_the_transcript_waits_in_the_prompt(tmp_path, spoken_question):
    app = voice_app(tmp_path, lambda: WavFileSource(spoken_question), MemorySink(),
                    confirm=True)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+space")
        await wait_for(pilot, lambda: app.prompt.text, what="the transcript", timeout=60)
        assert words(app.prompt.text) == ["hello"]
        assert not any(m.role == "user" for m in app.session.messages)  # not sent yet
        await pilot.press("enter")  # the person sends it
        await wait_for(pilot, lambda: app.turn is None and app.session.final_answers(),
                       what="the answer", timeout=60)
        assert app.session.messages[0].content == app.session.messages[0].content.strip()


async def test_escape_while_speaking_stops_the_speech_and_the_answer(tmp_path,
                                                                    spoken_question):
    from test_app import endless

    sink = MemorySink(realtime=True)
    app = voice_app(tmp_path, lambda: WavFileSource(spoken_question), sink)
    app.params = endless(5)  # a long answer: still generating while the first words play
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+space")
        await wait_for(pilot, lambda: sink.seconds > 0.3, what="speech", timeout=120)
        generating = app.turn is not None
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.turn is None and not app.voice.speaking,
                       what="speech and answer stopped", timeout=30)
        played = sink.seconds
    assert generating  # a 4000-token answer was still being written when Esc came
    assert app.session.records()[-1].finish_reason == "cancelled"
    assert sink.seconds - played < 0.2


async def test_the_palette_has_one_voice_action(tmp_path):
    app = make_app(chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
    assert titles.count("Voice") == 1


def test_only_the_final_answer_is_spoken():
    """Thinking, tool-call arguments and tool steps never reach the speaker."""
    from harmony_tui.conversation import ToolFinished, TurnFinished
    from harmony_tui.engine.events import TextDelta, ToolCall, TurnEnd
    from harmony_tui.voice_control import SpokenTurn

    class Answer:
        def __init__(self):
            self.fed, self.finished, self.cancelled = [], False, False

        def feed(self, text):
            self.fed.append(text)

        def finish(self):
            self.finished = True

        def cancel(self):
            self.cancelled = True

    call = ToolCall("c1", "python", "analysis", None, "print(1)")
    answer = Answer()
    turn = SpokenTurn(answer)
    turn.feed([TextDelta("analysis", "Let me think."), TextDelta("analysis", "print(1)", "python"),
               call, ToolFinished(call, "done", "1"), TextDelta("commentary", "aside"),
               TextDelta("final", "The answer "), TextDelta("final", "is 1.")])
    turn.feed([TurnFinished(TurnEnd("return"))])
    assert answer.fed == ["The answer ", "is 1."] and answer.finished
    stopped = Answer()
    turn = SpokenTurn(stopped)
    turn.feed([TextDelta("final", "Half"), TurnFinished(TurnEnd("cancelled"))])
    assert stopped.cancelled and not stopped.finished
