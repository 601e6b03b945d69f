"""Speculative decoding against plain decoding, same engine, same prompts (run by hand).

Greedy decoding (temperature 0, so every mode writes the same tokens), serial turns, prompt
cache cleared before each turn; the modes are interleaved within each repeat (their order
rotating) and the median decode tokens/s of each compared with plain decoding measured in the
same run. Acceptance = accepted drafts / drafted tokens, summed over the run.

Scenarios:

- ``random``: the realistic-shape random gpt_oss of ``multiturn.py`` (hidden 512, 8 layers,
  8 experts top-4, sliding window 128, the real vocabulary) as the model, on three chat
  prompts: plain, prompt lookup, the demo model as draft, and a smaller random gpt_oss
  (hidden 128, 2 layers) as draft. A random model's text follows nothing a draft can guess, so
  this measures the cost of speculating when drafts fail.
- ``repeat``: the demo model asked again for something it already answered in the chat (its
  scripted hello-world program and table): the answer repeats the context, as in code editing,
  which is where prompt lookup pays.

Each scenario also prints how the time of one forward pass grows with the tokens it verifies:
speculation pays only where verifying ``k + 1`` tokens costs much less than ``k + 1`` single
steps (memory-bound decoding on a GPU), which ``tok/step`` (tokens per model step) then turns
into speed.

    PYTHONPATH=. python benchmarks/speculative.py [--repeats 3] [--tokens 128] [--folder DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from multiturn import CONFIG, build_model

DRAFT_CONFIG = {**CONFIG, "num_hidden_layers": 2, "hidden_size": 128, "intermediate_size": 128,
                "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32,
                "num_local_experts": 4, "num_experts_per_tok": 2,
                "layer_types": ["sliding_attention", "full_attention"]}
RANDOM_PROMPTS = ["Write hello world in Python.", "Give me a packing list for a weekend trip.",
                  "Explain how a hash map works, with an example in Python."]
REPEAT_PROMPTS = ["Write hello world in Python.", "Compare cats and dogs in a table."]


def build_draft(folder: Path) -> Path:
    """The small random draft model (same vocabulary and tokenizer files), built once."""
    return build_model(folder, DRAFT_CONFIG, seed=1)


def turn(engine: Any, messages: list[Any], params: Any) -> Any:
    engine.prompt_cache.clear()
    engine.drafts.prompt_cache.clear()
    reply = engine.chat(messages, params=params)
    if reply.error:
        raise SystemExit(f"turn failed: {reply.error}")
    return reply


def step_cost(loaded: Any, sizes: tuple[int, ...] = (1, 2, 4, 5, 9), runs: int = 10) -> str:
    """How a forward pass's time grows with the tokens it verifies (after a 300-token prompt),
    relative to one token: what decides whether speculation can pay on this machine."""
    import time

    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    from harmony_tui.engine.rewind_cache import rewind, rewindable

    model = loaded.model
    times = {}
    for n in sizes:
        cache = rewindable(make_prompt_cache(model), 8)
        model(mx.array([list(range(1000, 1300))]), cache=cache)
        mx.eval([c.state for c in cache])
        tokens = mx.array([[5] * n])
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            logits = model(tokens, cache=cache)
            mx.eval(mx.argmax(logits, axis=-1))
            best = min(best, time.perf_counter() - started)
            rewind(cache, n)
        times[n] = best
    return ", ".join(f"{n} tokens {times[n] / times[1]:.2f}x" for n in sizes) + \
        f" (1 token: {1000 * times[1]:.1f} ms)"


def scenario(name: str, model: str, conversations: list[list[Any]], modes: dict[str, dict],
             tokens: int, repeats: int) -> None:
    from harmony_tui.engine.engine import Engine
    from harmony_tui.engine.params import GenerationParams

    base = GenerationParams(temperature=0.0, max_tokens=tokens)
    tps: dict[str, list[float]] = {mode: [] for mode in modes}
    totals: dict[str, list[int]] = {mode: [0, 0, 0, 0] for mode in modes}  # drafted ...
    texts: dict[tuple[str, int], str] = {}
    with Engine.start(model) as engine:
        for extra in modes.values():  # warm up: load drafts, compile
            turn(engine, conversations[0], base.updated(max_tokens=8, **extra))
        names = list(modes)
        for repeat in range(repeats):
            order = names[repeat % len(names):] + names[:repeat % len(names)]
            for index, messages in enumerate(conversations):
                for mode in order:
                    reply = turn(engine, messages, base.updated(**modes[mode]))
                    stats = reply.stats
                    tps[mode].append(stats.generation_tps)
                    total = totals[mode]
                    total[0] += stats.draft_tokens
                    total[1] += stats.accepted_tokens
                    total[2] += stats.verify_steps
                    total[3] += stats.generation_tokens
                    text = reply.analysis + reply.final
                    if texts.setdefault((mode, index), text) != text:
                        print(f"  ! {mode} wrote different text on prompt {index}")
        same = all(texts[(mode, i)] == texts[("plain", i)]
                   for mode in modes for i in range(len(conversations)))
        cost = step_cost(engine.model)
    plain = statistics.median(tps["plain"])
    print(f"\n{name}: {model} ({len(conversations)} prompts x {repeats} repeats, "
          f"{tokens} tokens max, greedy; same text in every mode: {'yes' if same else 'NO'})")
    print(f"  {'mode':<22}{'tok/s':>9}{'÷ plain':>9}{'accepted':>11}{'tok/step':>10}")
    for mode in modes:
        drafted, accepted, steps, generated = totals[mode]
        median = statistics.median(tps[mode])
        rate = f"{100 * accepted / drafted:.0f}%" if drafted else "-"
        per_step = f"{generated / steps:.2f}" if steps else "1.00"
        print(f"  {mode:<22}{median:>9.1f}{median / plain:>9.2f}{rate:>11}{per_step:>10}")
    print(f"  one forward pass (best of 10): {cost}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--lookup", type=int, default=4, help="prompt_lookup N")
    parser.add_argument("--draft-tokens", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir())
                        / "harmony-tui-bench")
    parser.add_argument("--only", choices=["random", "repeat"])
    args = parser.parse_args()

    from harmony_tui.engine.engine import Engine
    from harmony_tui.engine.messages import Message
    from harmony_tui.engine.params import GenerationParams

    lookup = {"prompt_lookup": args.lookup}
    if args.only != "repeat":
        target = build_model(args.folder / "gpt-oss-random")
        small = build_draft(args.folder / "gpt-oss-random-draft")
        drafted = {"draft_tokens": args.draft_tokens}
        scenario("random", str(target),
                 [[Message("user", p)] for p in RANDOM_PROMPTS],
                 {"plain": {}, f"lookup {args.lookup}": lookup,
                  "draft demo": {"draft_model": "demo", **drafted},
                  "draft small random": {"draft_model": str(small), **drafted}},
                 args.tokens, args.repeats)
    if args.only != "random":
        conversations = []
        with Engine.start("demo") as engine:  # the chat so far: the demo's own first answers
            for prompt in REPEAT_PROMPTS:
                first = engine.chat([Message("user", prompt)],
                                    params=GenerationParams(temperature=0.0, max_tokens=400))
                conversations.append([Message("user", prompt),
                                      Message("assistant", first.final, channel="final"),
                                      Message("user", prompt)])
        scenario("repeat", "demo", conversations, {"plain": {}, f"lookup {args.lookup}": lookup,
                                                  "lookup 8": {"prompt_lookup": 8}},
                 args.tokens, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
