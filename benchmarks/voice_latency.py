"""Voice latency, stage by stage (run by hand; not a timed test).

A recorded WAV (piper speaking a demo prompt, or --wav FILE) is the microphone, paced in real
time; the Recorder end-points it, faster-whisper writes it down, the demo model answers, and
piper speaks the first complete sentence of the final answer into a memory sink. Printed per
stage (median over the repeats) and overall, with the ratio of the total to the sum of the stage
minimums (1.0 = stages run back to back; below 1.0 they overlap):

  speech end -> end-pointed   the trailing silence VAD waits for (voice.silence_seconds)
  end-pointed -> transcript   faster-whisper, started when speech paused (so it overlaps
                              the trailing silence: voice/speculative.py)
  transcript -> first final token   the model (prompt + analysis channel + first answer token)
  first sentence -> first audio     piper synthesising the first sentence
  speech end -> first audio   overall, as the user hears it (also from the end-point, which is
                              what a push-to-talk "send" press gives)

    python benchmarks/voice_latency.py [--repeats 3] [--model demo] [--tts piper|espeak-ng]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's harmony_tui

PROMPT = "Give me a packing list for a weekend trip."


def speech_wav(folder: Path, tts) -> Path:
    """The prompt spoken by ``tts`` with silence around it (espeak-ng's pronunciation trips
    tiny.en up: "packing" becomes "parking")."""
    from harmony_tui.voice.audio import SAMPLE_RATE, resample, write_wav

    speech = resample(tts.synthesize(PROMPT), tts.sample_rate, SAMPLE_RATE)
    pad = np.zeros(SAMPLE_RATE // 2, np.int16)
    tail = np.zeros(SAMPLE_RATE * 2, np.int16)
    return write_wav(folder / "mic.wav", np.concatenate([pad, speech, tail]), SAMPLE_RATE)


def one_turn(wav: Path, engine, guesser, tts, settings) -> dict[str, float]:
    from harmony_tui.engine.engine import TurnRequest
    from harmony_tui.engine.events import TextDelta, TurnEnd
    from harmony_tui.engine.messages import Message, PromptSetup
    from harmony_tui.engine.params import GenerationParams
    from harmony_tui.voice.audio_io import MemorySink, WavFileSource
    from harmony_tui.voice.speaker import Speaker, SpokenAnswer
    from harmony_tui.voice.vad import EndpointConfig, Recorder

    guesser.reset()
    recording = Recorder(WavFileSource(wav, realtime=True), EndpointConfig.from_settings(settings),
                         on_pause=guesser.on_pause).start().wait()
    end_pointed = time.monotonic()
    assert recording is not None and recording.usable, recording
    speech_end = recording.speech_end_time or end_pointed
    text = guesser.transcribe(recording)
    transcribed = time.monotonic()
    sink = MemorySink()
    speaker = Speaker(tts, sink)
    answer = SpokenAnswer(speaker)
    marks: dict[str, float] = {}
    done = threading.Event()
    original_say = speaker.say

    def say(text: str) -> None:
        marks.setdefault("first_sentence", time.monotonic())
        original_say(text)

    speaker.say = say  # type: ignore[method-assign]

    def notify(event) -> None:
        if isinstance(event, TextDelta) and event.channel == "final" and not event.recipient:
            marks.setdefault("first_final", time.monotonic())
            answer.feed(event.text)
        elif isinstance(event, TurnEnd):
            answer.finish()
            done.set()

    engine.submit(TurnRequest([Message("user", text)], PromptSetup(),
                              GenerationParams(temperature=0)), notify=notify)
    done.wait(120)
    speaker.wait_idle(120)
    speaker.close()
    first_audio = sink.first_sample_time or float("nan")
    if not getattr(one_turn, "shown", False):
        one_turn.shown = True  # type: ignore[attr-defined]
        print(f"heard {text!r}; first sentence spoken: "
              f"{answer.sentences[0] if answer.sentences else None!r}")
    return {
        "transcript_ok": float(text.strip().rstrip(".").lower()
                               == PROMPT.rstrip(".").lower()),
        "speech end -> end-pointed": end_pointed - speech_end,
        "end-pointed -> transcript": transcribed - end_pointed,
        "transcript -> first final token": marks.get("first_final", float("nan")) - transcribed,
        "first sentence -> first audio": first_audio - marks.get("first_sentence", float("nan")),
        "end-pointed -> first audio": first_audio - end_pointed,
        "speech end -> first audio": first_audio - speech_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--tts", default="piper", choices=["piper", "espeak-ng"])
    parser.add_argument("--silence", type=float, default=0.8, help="voice.silence_seconds")
    parser.add_argument("--wav", type=Path, default=None,
                        help="a recording to use as the microphone (default: piper speaks "
                        f"{PROMPT!r})")
    args = parser.parse_args()

    from harmony_tui.engine.engine import Engine
    from harmony_tui.voice.settings import VoiceSettings
    from harmony_tui.voice.speculative import SpeculativeTranscriber
    from harmony_tui.voice.stt import make_stt
    from harmony_tui.voice.tts import make_tts

    settings = VoiceSettings(tts_engine=args.tts, silence_seconds=args.silence)
    started = time.monotonic()
    stt, tts = make_stt(settings), make_tts(settings)
    stt.load()
    tts.load()
    guesser = SpeculativeTranscriber(stt)
    stt.transcribe(np.full(16000, 1000, np.int16))  # warm up
    tts.synthesize("Warm up.")
    engine = Engine.start(args.model)
    print(f"loaded {stt.name}, {tts.name} and {args.model} in {time.monotonic() - started:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        wav = args.wav or speech_wav(Path(tmp), tts)
        one_turn(wav, engine, guesser, tts, settings)  # warm up the model's prompt path
        runs = [one_turn(wav, engine, guesser, tts, settings) for _ in range(args.repeats)]
    engine.close()
    print(f"transcripts taken from the transcription started at the pause: "
          f"{guesser.hits}/{args.repeats + 1}")
    print(f"transcript matched the prompt in {sum(r['transcript_ok'] for r in runs):.0f}/"
          f"{len(runs)} runs")
    stages = ["speech end -> end-pointed", "end-pointed -> transcript",
              "transcript -> first final token", "first sentence -> first audio"]
    for name in [*stages, "end-pointed -> first audio", "speech end -> first audio"]:
        values = [r[name] for r in runs]
        print(f"  {name:<34} median {statistics.median(values):6.3f} s   "
              f"min {min(values):6.3f} s   max {max(values):6.3f} s")
    total = statistics.median(r["speech end -> first audio"] for r in runs)
    floor = sum(min(r[name] for r in runs) for name in stages)
    print(f"  overlap: total / sum of stage minimums = {total:.3f} / {floor:.3f} = "
          f"{total / floor:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
