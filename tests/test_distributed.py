"""MLX distributed on one machine: two ranks on loopback (ring backend), the demo model.

Rank 0 must give what a single process gives, and the other rank must follow it without a UI,
HTTP, tools or chat files. ``generate`` runs under ``mlx.launch`` as a user runs it; the server
and the lost-rank test start the two ranks themselves with ``MLX_RANK``/``MLX_HOSTFILE`` (what
``mlx.launch`` sets), so that rank 0's own output and its reaction to a dead rank 1 can be seen
apart from the launcher (which would otherwise kill rank 0 itself).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
