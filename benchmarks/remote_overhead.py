"""The remote engine's client path against the openai SDK straight to the same server (by hand).

A remote server runs as its own process on the demo model: our ``--serve`` (default) or
``mlx_lm.server`` (``--remote mlx_lm``). The same streamed chat request (greedy, exactly
``--tokens`` tokens: stop tokens suppressed with ``logit_bias``) is sent alternately by the
openai SDK and by ``RemoteEngine`` (read from its ``TurnStream`` as the front ends do), so
server-side variation hits both alike. Measured at the reader for both: time to first token
(request sent -> first text; for raw Harmony, the first text after the message header, as
the person sees it) and tokens per second (the server's ``usage`` completion tokens
over first -> last text). Prints the medians and the ratio; the target is overhead <= 5 %.

    python benchmarks/remote_overhead.py [--remote ours|mlx_lm] [--tokens 256] [--rounds 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from server_throughput import STOPS, start_mlx_lm, start_ours

PROMPT = "Hello!"


def sdk_once(client, model: str, tokens: int) -> tuple[float, float]:
    """(ttft_s, tokens/s) of one request through the openai SDK."""
    started = time.perf_counter()
    first = last = None
    generated = 0
    seen = ""  # raw Harmony (mlx_lm.server): the first text is the one after the header
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], stream=True,
        max_tokens=tokens, temperature=0, logit_bias={str(t): -100 for t in STOPS},
        stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            generated = chunk.usage.completion_tokens
        for choice in chunk.choices:
            delta = choice.delta
            text = (delta.content or getattr(delta, "reasoning_content", None)
                    or getattr(delta, "reasoning", None))
            if text:
                seen += text
                last = time.perf_counter()
                if first is None and (not seen.startswith("<|") or (
                        "<|message|>" in seen and not seen.endswith("<|message|>"))):
                    first = last
    return first - started, (generated - 1) / (last - first)


def engine_once(engine, tokens: int) -> tuple[float, float]:
    """(ttft_s, tokens/s) of one turn through ``RemoteEngine``, read as the front ends read."""
    from harmony_tui.engine.engine import TurnRequest
    from harmony_tui.engine.events import Stats, TextDelta
    from harmony_tui.engine.messages import Message
    from harmony_tui.engine.params import GenerationParams

    params = GenerationParams(temperature=0, max_tokens=tokens,
                              logit_bias={t: -100.0 for t in STOPS})
    started = time.perf_counter()
    first = last = None
    generated = 0
    for event in engine.submit(TurnRequest([Message("user", PROMPT)], params=params)):
        if isinstance(event, TextDelta):
            last = time.perf_counter()
            first = first or last
        elif isinstance(event, Stats):
            generated = event.generation_tokens
    return first - started, (generated - 1) / (last - first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", choices=("ours", "mlx_lm"), default="ours")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    from openai import OpenAI

    from harmony_tui.engine.model_source import resolve_model_path
    from harmony_tui.remote import RemoteEngine

    if args.remote == "ours":
        server = start_ours(args.model)
    else:
        server = start_mlx_lm(resolve_model_path(args.model, None, lambda *a: None))
    try:
        url = server.url + "/v1"
        client = OpenAI(base_url=url, api_key="unused")
        engine = RemoteEngine.start(server.model, base_url=url)
        try:
            sdk_once(client, server.model, 16)  # warm up both paths and the server
            engine_once(engine, 16)
            sdk: list[tuple[float, float]] = []
            ours: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                sdk.append(sdk_once(client, server.model, args.tokens))
                ours.append(engine_once(engine, args.tokens))
        finally:
            engine.close()
    finally:
        server.stop()

    def med(rows: list[tuple[float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    print(f"remote: {server.name} on {args.model}, {args.tokens} tokens, {args.rounds} rounds "
          "each (medians)")
    print(f"  openai SDK      TTFT {med(sdk, 0) * 1000:7.1f} ms   {med(sdk, 1):7.1f} tok/s")
    print(f"  RemoteEngine    TTFT {med(ours, 0) * 1000:7.1f} ms   {med(ours, 1):7.1f} tok/s")
    ratio = med(ours, 1) / med(sdk, 1)
    print(f"  tok/s ratio RemoteEngine / SDK = {ratio:.3f} (overhead {100 * (1 - ratio):+.1f} %)"
          f"; TTFT difference {(med(ours, 0) - med(sdk, 0)) * 1000:+.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
