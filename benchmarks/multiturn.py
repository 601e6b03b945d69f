"""A 10-turn chat with tool calls, through our server and ``mlx_lm.server`` (run by hand).

The script builds a realistic-shape random ``gpt_oss`` model (hidden 512, 8 layers alternating
sliding-window 128 / full attention, 8 experts top-4, the real 201,088-token vocabulary; float32:
MLX's CPU backend gathers experts in float32 only) with tokenizer files, starts both servers on
that folder as their own processes, and plays the same chat on each through
``/v1/chat/completions``: ~150-token user messages, a fixed ~100-token answer written into the
history after each turn (so both servers see identical histories), and a function call at turns
3 and 7 (the model's call and the tool's result sent back, then a second request: the
sub-turn). Each request generates ``--answer-tokens`` tokens (default 1, stop tokens
suppressed): time to first token is then the request's latency on both servers alike (with
longer answers, our Harmony parser holds a random model's text back until it knows the
channel, which would not measure the prompt).

Printed per turn and server: time to first token, prompt tokens and tokens re-processed
(prompt - cached, from ``usage``; "?" when the server does not report cached tokens); then
turn-10 / turn-1 time to first token for each (goal: <= 1.5 for us).

    PYTHONPATH=. python benchmarks/multiturn.py [--answer-tokens 1] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from server_throughput import STOPS, Server, start_mlx_lm, start_ours

CONFIG = {
    "model_type": "gpt_oss", "num_hidden_layers": 8, "num_local_experts": 8,
    "num_experts_per_tok": 4, "vocab_size": 201088, "hidden_size": 512,
    "intermediate_size": 512, "head_dim": 64, "num_attention_heads": 8,
    "num_key_value_heads": 2, "sliding_window": 128, "rope_theta": 150000,
    "rms_norm_eps": 1e-05, "layer_types": ["sliding_attention", "full_attention"] * 4,
    "max_position_embeddings": 8192, "eos_token_id": [200002, 200012, 199999],
}
TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look a fact up",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                   "required": ["query"]}}}]
TOOL_TURNS = (3, 7)


def build_model(folder: Path, config: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A random gpt_oss folder (weights, config, tokenizer files) of ``config`` (default:
    ``CONFIG``), built once."""
    config = config or CONFIG
    if (folder / "model.safetensors").is_file():
        return folder
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import gpt_oss

    from harmony_tui.demo.build import write_tokenizer_files

    folder.mkdir(parents=True, exist_ok=True)
    mx.random.seed(seed)
    model = gpt_oss.Model(gpt_oss.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    write_tokenizer_files(folder)
    return folder


def words(seed: int, n: int) -> str:
    vocab = ("alpha bravo cable delta engine falcon garden harbor island jungle kettle lemon "
             "marble nectar orbit pepper quartz ribbon saddle timber").split()
    return " ".join(vocab[(seed * 11 + i * (seed % 7 + 1)) % len(vocab)] for i in range(n))


def ask(server: Server, messages: list[dict], tokens: int) -> tuple[float, int, int | None]:
    """One streamed request: (time to first token, prompt tokens, cached tokens or None)."""
    body = {"model": server.model, "messages": messages, "tools": TOOLS, "stream": True,
            "max_tokens": tokens, "temperature": 0.0,
            "logit_bias": {str(t): -100.0 for t in STOPS},
            "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = None
    usage: dict = {}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                      timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if first is None and any(delta.get(k) for k in (
                        "content", "reasoning", "reasoning_content", "tool_calls")):
                    first = time.perf_counter() - started
            usage = chunk.get("usage") or usage
    if first is None:
        first = time.perf_counter() - started
    details = usage.get("prompt_tokens_details") or {}
    return first, usage.get("prompt_tokens", 0), details.get("cached_tokens")


def play(server: Server, answer_tokens: int) -> list[tuple[int, float, int, int | None]]:
    """The 10-turn chat; rows of (turn, ttft, prompt, re-processed or None) per request."""
    messages: list[dict] = [{"role": "system", "content": "You are a concise assistant."}]
    rows = []
    for turn in range(1, 11):
        messages.append({"role": "user", "content": f"Turn {turn}. " + words(turn, 150)})
        ttft, prompt, cached = ask(server, messages, answer_tokens)
        rows.append((turn, ttft, prompt, None if cached is None else prompt - cached))
        if turn in TOOL_TURNS:
            call_id = f"call_{turn}"
            messages.append({"role": "assistant", "content": None, "tool_calls": [{
                "id": call_id, "type": "function", "function": {
                    "name": "lookup", "arguments": json.dumps({"query": words(turn, 8)})}}]})
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": "Result: " + words(turn + 50, 40)})
            ttft, prompt, cached = ask(server, messages, answer_tokens)
            rows.append((turn, ttft, prompt, None if cached is None else prompt - cached))
        messages.append({"role": "assistant", "content": f"Answer {turn}. "
                         + words(turn + 100, 100)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answer-tokens", type=int, default=1)
    parser.add_argument("--folder", type=Path,
                        default=Path(tempfile.gettempdir()) / "harmony-tui-bench-gpt-oss-512")
    args = parser.parse_args()
    folder = build_model(args.folder)
    print(f"model {folder} (random gpt_oss, hidden 512, 8 layers, 8 experts top-4)", flush=True)
    results = {}
    for start in (start_ours, start_mlx_lm):
        server = start(str(folder)) if start is start_ours else start(folder)
        try:
            ask(server, [{"role": "user", "content": "warm up"}], 4)
            rows = play(server, args.answer_tokens)
        finally:
            server.stop()
        results[server.name] = rows
        print(f"\n{server.name}")
        for turn, ttft, prompt, fresh in rows:
            print(f"  turn {turn:>2}  ttft {ttft * 1000:8.1f} ms  prompt {prompt:>5}  "
                  f"re-processed {'?' if fresh is None else fresh:>5}", flush=True)
    print("\nturn-10 / turn-1 time to first token")
    for name, rows in results.items():
        firsts = {turn: ttft for turn, ttft, _, _ in reversed(rows)}  # each turn's first request
        print(f"  {name:<13} {firsts[10] / firsts[1]:.2f}  (goal for harmony-tui: <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
