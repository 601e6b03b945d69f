"""A 100-turn chat on the demo model at its context limit (run by hand).

Every turn sends the whole history (as the app and API clients do) to one in-process engine;
the assistant replies written into the history are fixed texts, so runs are comparable. Once the
chat outgrows the limit, old turns are dropped. Printed per turn: prompt tokens, tokens
re-processed (prompt - cached), time to first token; then the median and worst of those, the
ratio re-processed / new tokens (goal: median <= 2), and the prompt cache's memory.

    PYTHONPATH=. python benchmarks/long_chat.py [--turns 100] [--limit 8192] [--batched]
"""

from __future__ import annotations

import argparse
import statistics
import time


def words(seed: int, n: int) -> str:
    vocab = ("system memory window token river cache engine answer question harmony layer "
             "prompt budget stable prefix sliding rotate trunk branch snapshot").split()
    return " ".join(vocab[(seed * 7 + i * (seed % 5 + 1)) % len(vocab)] for i in range(n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--limit", type=int, default=8192, help="max_context_tokens")
    parser.add_argument("--user-words", type=int, default=150)
    parser.add_argument("--answer-words", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--batched", action="store_true", help="use submit_batched (server)")
    args = parser.parse_args()

    from harmony_tui.engine.engine import Engine, TurnRequest
    from harmony_tui.engine.events import ContextTrimmed, Stats
    from harmony_tui.engine.messages import Message, PromptSetup
    from harmony_tui.engine.params import GenerationParams

    params = GenerationParams(temperature=0, max_tokens=args.max_tokens,
                              max_context_tokens=args.limit)
    setup = PromptSetup(developer_instructions="Answer in one short paragraph.")
    history: list[Message] = []
    rows = []
    previous_full = 0
    with Engine.start("demo") as engine:
        for turn in range(1, args.turns + 1):
            history.append(Message("user", f"Question {turn}: " + words(turn, args.user_words)))
            request = TurnRequest(list(history), setup, params)
            full = len(engine.render(request))
            stream = engine.submit_batched(request) if args.batched else engine.submit(request)
            events = list(stream)
            stats = next(e for e in events if isinstance(e, Stats))
            trim = next((e for e in events if isinstance(e, ContextTrimmed)), None)
            reprocessed = stats.prompt_tokens - stats.cached_tokens
            new = full - previous_full
            previous_full = full
            rows.append((turn, stats.prompt_tokens, reprocessed, new, stats.ttft_s, trim))
            note = ""
            if trim is not None and getattr(trim, "new", True):
                note = f"  trimmed: {trim.dropped_messages} messages, {trim.dropped_tokens} tok"
            print(f"turn {turn:>3}  prompt {stats.prompt_tokens:>5}  re-processed "
                  f"{reprocessed:>5}  new {new:>4}  ttft {stats.ttft_s * 1000:7.1f} ms{note}",
                  flush=True)
            history.append(Message("assistant", f"Answer {turn}: "
                                   + words(turn + 1000, args.answer_words), channel="final"))
            time.sleep(0)
        store = engine.prompt_cache
        memory = store.stats() if hasattr(store, "stats") else {"entries": len(store)}
    later = rows[1:]
    reprocessed = [r[2] for r in later]
    ratios = [r[2] / max(r[3], 1) for r in later]
    ttfts = [r[4] * 1000 for r in later]
    at_limit = [r for r in later if r[5] is not None]
    print(f"\nturns 2-{args.turns}: re-processed median {statistics.median(reprocessed):.0f} "
          f"worst {max(reprocessed)} tokens; re-processed / new median "
          f"{statistics.median(ratios):.2f} worst {max(ratios):.2f} (goal: median <= 2)")
    print(f"time to first token median {statistics.median(ttfts):.1f} ms, worst "
          f"{max(ttfts):.1f} ms")
    if at_limit:
        limit_ratios = [r[2] / max(r[3], 1) for r in at_limit]
        print(f"turns at the limit ({len(at_limit)}): re-processed / new median "
              f"{statistics.median(limit_ratios):.2f}; ttft median "
              f"{statistics.median(r[4] * 1000 for r in at_limit):.1f} ms")
    print("prompt cache memory: " + ", ".join(f"{k} {v:,}" for k, v in memory.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
