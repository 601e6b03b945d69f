"""MLX distributed: one process against two ranks on loopback (ring backend), run by hand.

Both sides load the same model (default: the demo model) and do identical work: ``--turns``
serial turns of exactly ``--tokens`` tokens (greedy, stop tokens suppressed with a logit bias;
a new prompt each turn so the prompt cache cannot help), then two turns batched together.
Figures are rank 0's own ``Stats``: time to first token and decode tokens/s.

It also measures what goes over the wire per generated token, by counting every
``mx.distributed.all_sum`` while one token runs through the sharded model (the model's own
collectives), plus our control traffic (``Lockstep``: the turn, the cancel flag, the sampled
token). From those sizes it predicts the communication time per token on two machines for a
link's latency and bandwidth (``--latency-us``, ``--gbps``): a ring all_sum of two ranks costs
about one round trip plus the payload each way.

    python benchmarks/distributed.py [--model demo] [--tokens 64] [--turns 3]

On one 2-core machine two ranks are not faster (both share the same cores and the sharded
matrices are tiny); the ratio is reported as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STOPS = (200002, 200012, 200007, 199999)  # <|return|> <|call|> <|end|> <|endoftext|>
GPT_OSS = [("gpt-oss-20b", 24, 2880), ("gpt-oss-120b", 36, 2880)]
PROMPTS = ["Hello!", "Give me a packing list for a weekend trip.",
           "Compare cats and dogs in a table.", "Write hello world in Python.",
           "What is 17 * 23? Use python.", "Search the web for MLX."]


class AllSumCounter:
    """Counts the calls and bytes of ``mx.distributed.all_sum`` while ``on``."""

    def __init__(self) -> None:
        import mlx.core as mx

        self.calls = 0
        self.bytes = 0
        self.on = False
        original = mx.distributed.all_sum

        def counted(x: Any, *args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.calls += 1
                self.bytes += x.nbytes
            return original(x, *args, **kwargs)

        mx.distributed.all_sum = counted


def one_token_traffic(engine: Any, counter: AllSumCounter) -> tuple[int, int]:
    """(all_sum calls, bytes) of one decode step through the loaded model (every rank runs it:
    its collectives need their partners)."""

    def probe() -> tuple[int, int]:
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache

        model = engine.model.model
        cache = make_prompt_cache(model)
        with mx.stream(engine.generation_stream()):
            mx.eval(model(mx.array([[1, 2]]), cache=cache))  # a first token to attend to
            counter.calls = counter.bytes = 0
            counter.on = True
            mx.eval(model(mx.array([[3]]), cache=cache))
            counter.on = False
        return counter.calls, counter.bytes

    return engine._job(probe).result()


def all_sum_latency(engine: Any, n: int = 40) -> float:
    """Seconds per small all_sum, waited for one by one (every rank runs it)."""

    def probe() -> float:
        import mlx.core as mx

        x = mx.zeros(16)
        with mx.stream(engine.generation_stream()):
            mx.eval(mx.distributed.all_sum(x))
            started = time.perf_counter()
            for _ in range(n):
                mx.eval(mx.distributed.all_sum(x))
        return (time.perf_counter() - started) / n

    return engine._job(probe).result()


def worker(model: str, tokens: int, turns: int) -> None:
    """One rank (or the single process): rank 0 prints one JSON line."""
    sys.path.insert(0, str(ROOT))
    from harmony_tui.engine import distributed

    info = distributed.init()
    counter = AllSumCounter()
    from harmony_tui.engine.engine import Engine, TurnRequest
    from harmony_tui.engine.events import Stats
    from harmony_tui.engine.messages import Message
    from harmony_tui.engine.params import GenerationParams

    engine = Engine.start(model)
    calls, nbytes = one_token_traffic(engine, counter) if info else (0, 0)
    latency = all_sum_latency(engine) if info else 0.0
    if info is not None and not info.leader:
        engine._job(lambda: distributed.follow(engine)).result()
        return
    params = GenerationParams(temperature=0.0, max_tokens=tokens,
                              logit_bias={t: -100.0 for t in STOPS})

    def request(n: int) -> TurnRequest:
        return TurnRequest([Message("user", PROMPTS[n % len(PROMPTS)] + f" ({n})")],
                           params=params)

    def stats_of(stream: Any) -> Stats:
        found = [e for e in stream if isinstance(e, Stats)]
        return found[-1]

    step = engine.lockstep
    serial = []
    control_before = step.bytes_shared if step else 0
    for n in range(turns + 1):  # the first turn warms up (compiles, allocates)
        s = stats_of(engine.submit(request(n)))
        if n:
            serial.append(s)
    control = ((step.bytes_shared - control_before) if step else 0) / max(
        1, sum(s.generation_tokens for s in serial) + len(serial))
    started = time.perf_counter()
    streams = [engine.submit_batched(request(100 + n)) for n in range(2)]
    batched = [stats_of(s) for s in streams]
    wall = time.perf_counter() - started
    print(json.dumps({
        "ranks": info.size if info else 1,
        "sharding": engine.model.sharding,
        "ttft_s": sum(s.ttft_s for s in serial) / len(serial),
        "tps": sum(s.generation_tps for s in serial) / len(serial),
        "batched_tps": sum(s.generation_tokens for s in batched) / wall,
        "layers": engine.model.config.get("num_hidden_layers"),
        "all_sum_latency_s": latency,
        "model_all_sums_per_token": calls,
        "model_bytes_per_token": nbytes,
        "control_bytes_per_token": control,
    }), flush=True)
    engine.close()


def free_ports(count: int) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise SystemExit("no free consecutive ports")


def run(ranks: int, args: argparse.Namespace) -> dict[str, Any]:
    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", args.model,
          "--tokens", str(args.tokens), "--turns", str(args.turns)]
    if ranks > 1:
        me = [sys.executable, "-c", "import sys; from mlx._distributed_utils.launch import "
              "main; sys.exit(main())", "-n", str(ranks), "--backend", "ring",
              "-p", str(free_ports(ranks)), "--", *me]
    out = subprocess.run(me, capture_output=True, text=True, cwd=ROOT, timeout=1800,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or len(lines) != 1:
        raise SystemExit(f"{ranks} rank(s) failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(lines[0])


def predict(result: dict[str, Any], latency_us: float, gbps: float) -> float:
    """Seconds of communication per token on two machines (ring of two: each all_sum sends
    its payload once each way and waits one round trip)."""
    calls = result["model_all_sums_per_token"] + 3  # + token, cancel flag (+ a batch step)
    payload = result["model_bytes_per_token"] + result["control_bytes_per_token"]
    return calls * 2 * latency_us * 1e-6 + payload / (gbps * 1e9 / 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--latency-us", type=float, default=30.0,
                        help="one-way latency of the link between the machines")
    parser.add_argument("--gbps", type=float, default=40.0, help="usable link bandwidth")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.model, args.tokens, args.turns)
        return
    one, two = run(1, args), run(2, args)
    print(f"model {args.model}, {args.tokens} tokens a turn, {args.turns} serial turns "
          "(+1 warm-up), then 2 batched")
    print(f"{'':24}{'1 rank':>12}{'2 ranks':>12}{'ratio':>8}")
    for key, label, fmt in (("ttft_s", "time to first token s", "{:.3f}"),
                            ("tps", "decode tok/s", "{:.1f}"),
                            ("batched_tps", "2 batched, tok/s", "{:.1f}")):
        print(f"{label:24}{fmt.format(one[key]):>12}{fmt.format(two[key]):>12}"
              f"{two[key] / one[key]:>8.2f}")
    print(f"sharding: {two['sharding']}; per generated token: "
          f"{two['model_all_sums_per_token']} model all_sums, "
          f"{two['model_bytes_per_token']} bytes; control {two['control_bytes_per_token']:.0f} "
          "bytes")
    print(f"a small all_sum on this loopback ring took {two['all_sum_latency_s'] * 1e3:.2f} ms "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); per token the "
          f"ranks wait for {two['model_all_sums_per_token'] + 1} of them (a batch step: 2 "
          "more)")
    comm = predict(two, args.latency_us, args.gbps)
    print(f"predicted communication per token on two machines ({args.latency_us:g} us, "
          f"{args.gbps:g} Gb/s): {comm * 1e3:.2f} ms for this model")
    per_layer = two["model_all_sums_per_token"] / max(1, two["layers"] or 1)
    for name, layers, hidden in GPT_OSS:  # bf16 activations: 2 bytes a value
        sized = dict(two, model_all_sums_per_token=per_layer * layers,
                     model_bytes_per_token=per_layer * layers * hidden * 2)
        comm = predict(sized, args.latency_us, args.gbps)
        print(f"  {name} ({layers} layers, hidden {hidden}): "
              f"{sized['model_bytes_per_token'] / 1e3:.0f} kB in "
              f"{sized['model_all_sums_per_token']:.0f} all_sums per token -> "
              f"{comm * 1e3:.2f} ms, a ceiling of {1 / comm:.0f} tok/s from the link alone")


if __name__ == "__main__":
    main()
