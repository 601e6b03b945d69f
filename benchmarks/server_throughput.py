"""Aggregate streaming throughput of our API server against ``mlx_lm.server`` (run by hand).

Both servers run as their own processes on the same model (default: the demo model, whose
folder carries the tokenizer files mlx-lm needs) and get the same workload: N concurrent
streaming clients, each sending ``--rounds`` requests one after another. Every request asks for
exactly ``--tokens`` tokens (greedy, stop tokens suppressed with ``logit_bias``), so both sides do
identical work; tokens are counted from each stream's ``usage``. Two endpoints are measured:

- ``completions``: the same raw Harmony prompt text on both servers (like for like);
- ``chat``: ``/v1/chat/completions`` (ours parses Harmony into reasoning/content; mlx-lm's
  renders the demo folder's chat template and returns raw markup).

The measurements are interleaved: each of ``--repeats`` rounds measures every (endpoint,
clients) cell on both servers back to back, the server that goes first alternating between
rounds, so load from other processes on the machine hits both alike. Medians are reported with
every repeat's figure and the load average before and after.

Targets: ours >= 1.0x mlx_lm.server at 1 and 8 clients; our 8 clients / 1 client ratio >= the
same ratio of mlx_lm.server in the same run.

    python benchmarks/server_throughput.py [--clients 1 8] [--tokens 128] [--rounds 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
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


def start_ours(model: str, label: str = "harmony-tui", checkout: Path | None = None) -> Server:
    """Our server; from ``checkout`` (another harmony-tui source tree) instead of this one."""
    port = free_port()
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(checkout), env.get("PYTHONPATH", "")])
    # ``-m`` puts the working directory first on sys.path: run from the checkout itself
    proc = subprocess.Popen([sys.executable, "-m", "harmony_tui.server", "--model", model,
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, cwd=checkout)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    name = httpx.get(url + "/v1/models").json()["data"][0]["id"]
    return Server(label, url, name, proc)


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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used so far; 0 where ``/proc`` is
    missing (the CPU figures then read 0)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(server: Server, endpoint: str, clients: int, rounds: int, tokens: int,
        raw_prompt: str, cpu: list[float] | None = None) -> float:
    """Aggregate generated tokens per second of ``clients`` concurrent streaming clients;
    ``cpu`` gets the server's CPU milliseconds per generated token (a machine shared with other
    work slows both servers' wall clock, much less their CPU time per token)."""
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
    started, used = time.perf_counter(), cpu_seconds(server.proc.pid)
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if cpu is not None and sum(counts):
        cpu.append((cpu_seconds(server.proc.pid) - used) * 1000 / sum(counts))
    if errors:
        raise SystemExit(f"{server.name} {endpoint}: {errors[0]!r}")
    expected = clients * rounds * tokens
    if sum(counts) != expected:
        print(f"  note: {server.name} {endpoint} generated {sum(counts)} of {expected} tokens",
              file=sys.stderr)
    return sum(counts) / elapsed


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo",
                        help="'demo' or a gpt_oss model folder with tokenizer files")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="requests per client")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved measurements of every cell (medians reported)")
    parser.add_argument("--endpoints", nargs="+", default=["completions", "chat"],
                        choices=["completions", "chat"])
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also measure our server from another source tree (e.g. a "
                        "worktree of main), as 'before', in the same interleaved runs")
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
          f"rounds per client | {args.repeats} interleaved repeats | load average "
          f"{load_average()}", flush=True)
    servers = [start_ours(args.model)]
    try:
        if args.before is not None:
            servers.append(start_ours(args.model, "before", args.before.resolve()))
        servers.append(start_mlx_lm(path))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    names = [server.name for server in servers]
    results: dict[tuple[str, str, int], list[float]] = {}
    cpu: dict[tuple[str, str, int], list[float]] = {}
    try:
        for server in servers:  # warm up compile caches and prompt caches
            for endpoint in args.endpoints:
                for clients in args.clients:
                    run(server, endpoint, clients, 1, 8, raw_prompt)
        for repeat in range(args.repeats):
            shift = repeat % len(servers)  # who goes first rotates
            order = servers[shift:] + servers[:shift]
            for endpoint in args.endpoints:
                for clients in args.clients:
                    for server in order:
                        key = (server.name, endpoint, clients)
                        tps = run(server, endpoint, clients, args.rounds, args.tokens,
                                  raw_prompt, cpu.setdefault(key, []))
                        results.setdefault(key, []).append(tps)
                        print(f"  repeat {repeat + 1}  {endpoint:<11} {clients:>2} clients  "
                              f"{server.name:<13} {tps:8.1f} tok/s  {cpu[key][-1]:6.2f} CPU "
                              f"ms/token", flush=True)
    finally:
        for server in servers:
            server.stop()

    def median(name: str, endpoint: str, clients: int) -> float:
        return statistics.median(results[(name, endpoint, clients)])

    def cpu_median(name: str, endpoint: str, clients: int) -> float:
        return statistics.median(cpu[(name, endpoint, clients)])

    print(f"\nmedians (tok/s, all clients together) | load average {load_average()}")
    for endpoint in args.endpoints:
        for clients in args.clients:
            for name in names:
                runs = " ".join(f"{v:.1f}" for v in results[(name, endpoint, clients)])
                print(f"  {endpoint:<11} {clients:>2} clients  {name:<13} "
                      f"{median(name, endpoint, clients):8.1f}   ({runs})   "
                      f"{cpu_median(name, endpoint, clients):6.2f} CPU ms/token")
    print("\nratios (of medians)")
    for endpoint in args.endpoints:
        for clients in args.clients:
            for name in names[:-1]:
                ratio = median(name, endpoint, clients) / median("mlx_lm.server", endpoint,
                                                                 clients)
                print(f"  {endpoint:<11} {clients:>2} clients  {name} / mlx_lm.server = "
                      f"{ratio:.2f}x")
        if len(args.clients) > 1:
            low, high = min(args.clients), max(args.clients)
            for name in names:
                scale = median(name, endpoint, high) / median(name, endpoint, low)
                per_repeat = " ".join(
                    f"{h / lo:.2f}" for h, lo in zip(results[(name, endpoint, high)],
                                                    results[(name, endpoint, low)], strict=True))
                cpu_scale = cpu_median(name, endpoint, low) / cpu_median(name, endpoint, high)
                print(f"  {endpoint:<11} {name:<13} {high} clients / {low} client = "
                      f"{scale:.2f}x   (per repeat {per_repeat}); CPU per token "
                      f"{low} client / {high} clients = {cpu_scale:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
