"""Decode speed of our engine against mlx-lm's raw ``generate_step`` (run by hand).

Same model, same prompt tokens, same greedy sampler; the two are interleaved over several
repeats and the medians compared. Tiny models are used on purpose: there the per-token overhead
of our event pipeline (Harmony parser, events, thread hand-off) shows most. Target: ratio >= 0.97.

    python benchmarks/engine_overhead.py [--tokens 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def raw_tps(model, prompt: list[int], tokens: int, processors: list) -> float:
    """Tokens/s of mlx-lm's generate_step, timed from the first token like our Stats."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    sampler = make_sampler(temp=0.0)
    first = None
    count = 0
    for _token, _ in generate_step(mx.array(prompt), model, max_tokens=tokens, sampler=sampler,
                                   logits_processors=processors):
        count += 1
        if first is None:
            first = time.perf_counter()
    return (count - 1) / (time.perf_counter() - first)


def engine_tps(engine, messages, setup, params) -> tuple[float, int]:
    reply = engine.chat(messages, setup, params)
    return reply.stats.generation_tps, reply.stats.generation_tokens


def bench(label: str, path: Path, tokens: int, repeats: int) -> float:
    from harmony_tui.engine.engine import Engine
    from harmony_tui.engine.messages import Message, PromptSetup
    from harmony_tui.engine.params import GenerationParams
    from harmony_tui.engine.sampling import build_logits_processors

    engine = Engine.start(str(path))
    setup = PromptSetup()
    messages = [Message("user", "Tell me a long story about benchmarks.")]
    fmt = engine.model.format
    # Nothing may end either run early: push stop and structural tokens out of reach. Both
    # sides get the same sampler and the same logits processors.
    banned = set(fmt.stop_tokens) | set(fmt.keep_tokens)
    if fmt.name == "harmony":  # every Harmony special token, reserved ones included
        from harmony_tui.engine.formats.harmony import FIRST_SPECIAL, VOCAB_SIZE

        banned |= set(range(FIRST_SPECIAL, VOCAB_SIZE))
    params = GenerationParams(temperature=0, max_tokens=tokens,
                              logit_bias={t: -100.0 for t in banned})
    processors = build_logits_processors(params, fmt.vocab_size)
    prompt = fmt.render(messages, setup, params)
    ours, theirs = [], []
    engine_tps(engine, messages, setup, params)  # warm up both paths
    raw_tps(engine.model.model, prompt, 16, processors)
    for _ in range(repeats):
        tps, generated = engine_tps(engine, messages, setup, params)
        if generated != tokens:
            print(f"  warning: engine generated {generated} of {tokens} tokens")
        ours.append(tps)
        theirs.append(raw_tps(engine.model.model, prompt, tokens, processors))
    engine.close()
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"{label:<22} engine {statistics.median(ours):8.1f} tok/s   "
          f"generate_step {statistics.median(theirs):8.1f} tok/s   ratio {ratio:.3f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="also benchmark this model")
    args = parser.parse_args()

    from tiny_models import build_tiny_gpt_oss, build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        llama = build_tiny_llama(Path(tmp) / "llama")
        oss = build_tiny_gpt_oss(Path(tmp) / "gpt-oss")
        print(f"decode {args.tokens} tokens, {args.repeats} interleaved repeats, medians")
        bench("tiny llama (template)", llama, args.tokens, args.repeats)
        bench("tiny gpt_oss (harmony)", oss, args.tokens, args.repeats)
        if args.model:
            bench(args.model, Path(args.model), args.tokens, args.repeats)


if __name__ == "__main__":
    main()
