"""Aggregate streaming throughput of our API server against ``mlx_lm.server`` (run by hand).

Both servers run as their own processes on the same model (default: the demo model, whose
folder carries the tokenizer files mlx-lm needs) and get the same workload: N concurrent
streaming clients, each sending ``--rounds`` requests one after another. Every request asks for
exactly ``--tokens`` tokens (greedy, stop tokens suppressed with ``logit_bias``), so both sides do
identical work; tokens are counted from each stream's ``usage``. Two endpoints are measured:

- ``completions``: the same raw Harmony prompt text on both servers (like for like);
- ``chat``: ``/v1/chat/completions`` (ours parses Harmony into reasoning/content; mlx-lm's
  renders the demo folder's chat template and returns raw markup).

Targets: ours >= 1.0x mlx_lm.server at 1 and 8 clients; 8 clients >= 3x one client.

    python benchmarks/server_throughput.py [--clients 1 8] [--tokens 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

STOPS = (200002, 200012, 200007, 199999)  # <|return|> <|call|> <|end|> <|endoftext|>
PROMPT = "Hello!"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode}: {url}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not start in {timeout:.0f}s")


@dataclass
class Server:
    name: str
    url: str
    model: str
    proc: subprocess.Popen

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_ours(model: str) -> Server:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harmony_tui.server", "--model", model,
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    name = httpx.get(url + "/v1/models").json()["data"][0]["id"]
    return Server("harmony-tui", url, name, proc)


def start_mlx_lm(path: Path) -> Server:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lm", "server", "--model", str(path),
                             "--port", str(port), "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return Server("mlx_lm.server", url, str(path), proc)


def request_body(server: Server, endpoint: str, raw_prompt: str, tokens: int) -> dict:
    body = {"model": server.model, "stream": True, "max_tokens": tokens, "temperature": 0.0,
            "logit_bias": {str(t): -100.0 for t in STOPS},
            "stream_options": {"include_usage": True}}
    if endpoint == "completions":
        body["prompt"] = raw_prompt
    else:
        body["messages"] = [{"role": "user", "content": PROMPT}]
    return body


def one_stream(client: httpx.Client, url: str, body: dict) -> int:
    """Run one streaming request; the completion tokens its usage reports."""
    generated = 0
    with client.stream("POST", url, json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            usage = json.loads(line[6:]).get("usage")
            if usage:
                generated = usage["completion_tokens"]
    return generated


def run(server: Server, endpoint: str, clients: int, rounds: int, tokens: int,
        raw_prompt: str) -> float:
    """Aggregate generated tokens per second of ``clients`` concurrent streaming clients."""
    path = "/v1/completions" if endpoint == "completions" else "/v1/chat/completions"
    body = request_body(server, endpoint, raw_prompt, tokens)
    barrier = threading.Barrier(clients + 1)
    counts: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        with httpx.Client() as client:
            barrier.wait()
            try:
                for _ in range(rounds):
                    counts.append(one_stream(client, server.url + path, body))
            except BaseException as err:  # reported below
                errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{server.name} {endpoint}: {errors[0]!r}")
    expected = clients * rounds * tokens
    if sum(counts) != expected:
        print(f"  note: {server.name} {endpoint} generated {sum(counts)} of {expected} tokens",
              file=sys.stderr)
    return sum(counts) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo",
                        help="'demo' or a gpt_oss model folder with tokenizer files")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="requests per client")
    parser.add_argument("--endpoints", nargs="+", default=["completions", "chat"],
                        choices=["completions", "chat"])
    args = parser.parse_args()

    from harmony_tui.engine.formats.harmony import HarmonyFormat
    from harmony_tui.engine.messages import Message, PromptSetup
    from harmony_tui.engine.params import GenerationParams

    if args.model == "demo":
        from harmony_tui.demo.build import ensure_demo_model

        path = ensure_demo_model()
    else:
        path = Path(args.model)
    fmt = HarmonyFormat()
    raw_prompt = fmt.decode(fmt.render([Message("user", PROMPT)], PromptSetup(),
                                       GenerationParams()))
    print(f"model {path} | {os.cpu_count()} CPUs | {args.tokens} tokens x {args.rounds} "
          f"rounds per client", flush=True)
    ours, theirs = start_ours(args.model), start_mlx_lm(path)
    results: dict[tuple[str, str, int], float] = {}
    try:
        for server in (ours, theirs):  # warm up compile caches and prompt caches
            for endpoint in args.endpoints:
                run(server, endpoint, 1, 1, 8, raw_prompt)
        for endpoint in args.endpoints:
            for clients in args.clients:
                for server in (ours, theirs):
                    tps = run(server, endpoint, clients, args.rounds, args.tokens, raw_prompt)
                    results[(server.name, endpoint, clients)] = tps
                    print(f"  {endpoint:<11} {clients:>2} clients  {server.name:<13} "
                          f"{tps:8.1f} tok/s", flush=True)
    finally:
        ours.stop()
        theirs.stop()

    print("\nratios")
    for endpoint in args.endpoints:
        for clients in args.clients:
            ratio = results[("harmony-tui", endpoint, clients)] / \
                results[("mlx_lm.server", endpoint, clients)]
            print(f"  {endpoint:<11} {clients:>2} clients  harmony-tui / mlx_lm.server = "
                  f"{ratio:.2f}x")
        if len(args.clients) > 1:
            low, high = min(args.clients), max(args.clients)
            for name in ("harmony-tui", "mlx_lm.server"):
                scale = results[(name, endpoint, high)] / results[(name, endpoint, low)]
                print(f"  {endpoint:<11} {name:<13} {high} clients / {low} client = "
                      f"{scale:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
