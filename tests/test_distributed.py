"""MLX distributed on one machine: two ranks on loopback (ring backend), the demo model.

Rank 0 must give what a single process gives, and the other rank must follow it without a UI,
HTTP, tools or chat files. ``generate`` runs under ``mlx.launch`` as a user runs it; the server
and the lost-rank test start the two ranks themselves with ``MLX_RANK``/``MLX_HOSTFILE`` (what
``mlx.launch`` sets), so that rank 0's own output and its reaction to a dead rank 1 can be seen
apart from the launcher (which would otherwise kill rank 0 itself).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

CMD = [sys.executable, "-m", "harmony_tui"]
LAUNCH = [sys.executable, "-c", "import sys; from mlx._distributed_utils.launch import main; "
          "sys.exit(main())"]
ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Give me a packing list for a weekend trip."


def free_ports(count: int) -> int:
    """A first port such that ``count`` consecutive loopback ports are free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                held.append(s)
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free consecutive loopback ports")


def run_single(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=240,
                          cwd=ROOT)


def run_launched(*args: str) -> subprocess.CompletedProcess:
    """``mlx.launch -n 2 --backend ring -- python -m harmony_tui ARGS`` on private ports."""
    port = free_ports(2)
    return subprocess.run([*LAUNCH, "-n", "2", "--backend", "ring", "-p", str(port), "--",
                           *CMD, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def reply(result: subprocess.CompletedProcess) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # one JSON object: the follower printed nothing
    return {key: data[key] for key in ("final", "analysis", "tool_calls")}


@pytest.mark.parametrize("sampling", [("--temperature", "0"),
                                      ("--temperature", "1", "--seed", "5")],
                         ids=["greedy", "seeded"])
def test_generate_on_two_ranks_equals_one_process(sampling):
    args = ("generate", "--json", "--prompt", PROMPT, "--max-tokens", "80", *sampling)
    single = reply(run_single(*args))
    launched = run_launched(*args)
    assert reply(launched) == single
    assert single["final"]
    assert "Traceback" not in launched.stderr


# -- the server: two ranks started by hand, rank 0 serving ----------------------------------------

QUESTIONS = ["Give me a packing list for a weekend trip.", "Compare cats and dogs in a table."]


class Ranks:
    """Two ranks of ``harmony-tui ARGS`` with the variables ``mlx.launch`` would set."""

    def __init__(self, tmp: Path, *args: str) -> None:
        port = free_ports(2)
        hostfile = tmp / "ring.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"], [f"127.0.0.1:{port + 1}"]]))
        self.logs = [(tmp / f"rank{r}.out", tmp / f"rank{r}.err") for r in range(2)]
        self.procs = []
        for rank, (out, err) in enumerate(self.logs):
            env = dict(os.environ, MLX_RANK=str(rank), MLX_HOSTFILE=str(hostfile))
            with out.open("w") as stdout, err.open("w") as stderr:
                self.procs.append(subprocess.Popen([*CMD, *args], env=env, cwd=ROOT,
                                                   stdout=stdout, stderr=stderr,
                                                   stdin=subprocess.DEVNULL))

    def text(self, rank: int, which: int = 1) -> str:
        return self.logs[rank][which].read_text()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def health(port: int) -> dict[str, object] | None:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
    except httpx.HTTPError:
        return None


def wait_serving(port: int, procs: list[subprocess.Popen]) -> dict[str, object]:
    wait_until(lambda: health(port) is not None or any(p.poll() is not None for p in procs),
               timeout=240, interval=0.2, message="the server to answer /health")
    assert all(p.poll() is None for p in procs), "a rank ended before serving"
    answer = health(port)
    assert answer is not None
    return answer


def ask_concurrently(port: int) -> list[str]:
    """The two questions from two clients at once (the openai SDK), greedy."""
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)

    def ask(question: str) -> str:
        answer = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": question}], temperature=0,
            max_tokens=100)
        return answer.choices[0].message.content or ""

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(ask, QUESTIONS))


def cancel_a_stream(port: int, **extra: object) -> None:
    """Start a long streamed answer and hang up after a few chunks."""
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": QUESTIONS[0]}], temperature=0,
        max_tokens=400, stream=True, **extra)
    for n, _ in enumerate(stream):
        if n >= 4:
            break
    stream.close()


@pytest.fixture(scope="module")
def single_server_answers(tmp_path_factory):
    port = free_ports(1)
    log = tmp_path_factory.mktemp("single") / "server.err"
    with log.open("w") as err:
        proc = subprocess.Popen([*CMD, "--serve", "--port", str(port)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    try:
        wait_serving(port, [proc])
        return ask_concurrently(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_server_on_two_ranks_answers_like_one_process_and_survives_a_cancel(
        tmp_path, single_server_answers):
    port = free_ports(1)
    ranks = Ranks(tmp_path, "--serve", "--port", str(port))
    try:
        answer = wait_serving(port, ranks.procs)
        assert answer["group"] == {"size": 2, "rank": 0, "backend": "ring",
                                   "sharding": "tensor"}
        assert ask_concurrently(port) == single_server_answers
        cancel_a_stream(port)  # a batched turn
        cancel_a_stream(port, seed=3)  # a seeded turn runs alone: the serial path
        assert ask_concurrently(port) == single_server_answers  # both ranks still in step
        assert all(p.poll() is None for p in ranks.procs)
        assert ranks.text(0).count("disconnected") == 2  # the cancels did reach the engine
    finally:
        ranks.close()
    assert ranks.text(1, 0) == ""  # the follower serves nothing and prints nothing
    assert "Traceback" not in ranks.text(0) + ranks.text(1)


def cpu_seconds(pid: int, over: float) -> float:
    """CPU time ``pid`` used during the next ``over`` seconds (a measurement, not a wait)."""
    import time

    def used() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = used()
    time.sleep(over)
    return used() - before


def test_killing_rank_1_ends_rank_0_with_one_line(tmp_path):
    import time

    port = free_ports(1)
    ranks = Ranks(tmp_path, "--serve", "--port", str(port))
    try:
        wait_serving(port, ranks.procs)
        leader, follower = ranks.procs
        # Idle, the follower sleeps on rank 0's doorbell instead of polling in a collective.
        assert cpu_seconds(follower.pid, over=2.0) < 0.5
        follower.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.wait(timeout=30)
        took = time.monotonic() - killed
    finally:
        ranks.close()
    assert took < 10, f"rank 0 took {took:.1f}s to notice"
    assert leader.returncode == 1
    stderr = ranks.text(0)
    ours = [line for line in stderr.splitlines() if line.startswith("harmony-tui:")]
    assert ours[-1:] == ["harmony-tui: error: distributed: a rank left the group ([ring] "
                         "connection to a peer was lost); the session ends on every rank"], stderr
    assert "Traceback" not in stderr


def test_a_model_the_ranks_cannot_split_is_refused_in_one_line(tiny_llama):
    result = run_launched("generate", "--model", str(tiny_llama), "--prompt", "hi")
    assert result.stdout == ""  # (mlx.launch itself exits 0 whatever its ranks do)
    ours = {line for line in result.stderr.splitlines() if line.startswith("harmony-tui:")}
    assert ours == {f"harmony-tui: error: distributed: {tiny_llama.name} has "
                    "num_key_value_heads 1, which 2 ranks cannot split (tensor parallelism "
                    "needs a multiple of 2)"}, result.stderr
    assert "Traceback" not in result.stderr


def test_speculative_decoding_is_refused_in_one_line():
    result = run_launched("generate", "--prompt", PROMPT, "--prompt-lookup", "4")
    ours = {line for line in result.stderr.splitlines() if line.startswith("harmony-tui:")}
    assert ours == {"harmony-tui: error: generation failed: speculative decoding (draft_model, "
                    "prompt_lookup) is not available in a distributed session"}, result.stderr
    assert "Traceback" not in result.stderr
