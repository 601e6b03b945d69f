"""Fuzz the API server with schemathesis against its own ``/openapi.json`` (run by hand).

Starts ``harmony-tui --serve --model demo`` on a free loopback port (a real process, its
generation capped at ``--max-tokens`` so each case is quick), loads the server's
``/openapi.json`` with schemathesis and sends every operation bounded numbers of generated
requests: valid ones (positive mode) and ones that break the schema (negative mode), within the
schema's real limits. Each response is checked:

- ``not_a_server_error``: no 5xx, ever (the goal);
- ``response_schema_conformance``, ``status_code_conformance``,
  ``content_type_conformance``: the answer is what ``/openapi.json`` documents;
- ``negative_data_rejection``: a body that breaks the schema is refused with a 4xx.

First every documented limit of the generation endpoints is tried at its edge and just past it
(a valid body with one field changed): never a 5xx, and past the edge a 400 naming the field.
Valid bodies get ``"model": "demo"`` (else nearly all would stop at 404) and explicit token
limits are capped at ``--max-tokens`` (out-of-range values are left alone, so the limits are
still fuzzed). Afterwards ``/health`` must say ok with nothing running, a normal chat request
must get the demo's answer, and the server log must hold no traceback. Prints the cases run and
the failures by kind; exits 1 if any check failed.

    python benchmarks/fuzz_api.py [--cases 25] [--seconds 600] [--max-tokens 12] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
INT32_MAX = 2**31 - 1
TOKEN_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
HELLO_ANSWER = "Hello! I am the **harmony-tui demo model**"


class Server:
    """``harmony-tui --serve`` in a child process; its stderr is kept for the report."""

    def __init__(self, max_tokens: int) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harmony_tui", "--serve", "--model", "demo", "--host",
             "127.0.0.1", "--port", "0", "--max-tokens", str(max_tokens)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._wait_url()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _wait_url(self, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.search(r"serving \S+ at (http://127\.0\.0\.1:\d+)/v1", line)
                if found:
                    return found.group(1)
            if self.proc.poll() is not None:
                raise SystemExit("the server exited:\n" + "\n".join(self.lines))
            time.sleep(0.1)
        raise SystemExit(f"the server did not start in {timeout:.0f}s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5)
        return code


def adjust(case: Any, positive: bool, cap: int) -> None:
    """Make generation quick: cap in-range token limits; valid bodies name the served model."""
    body = case.body
    if not isinstance(body, dict):
        return
    for key in TOKEN_LIMITS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= INT32_MAX:
            body[key] = min(value, cap)
    if positive and "model" in body:
        body["model"] = "demo"


def fuzz(url: str, cases: int, seconds: float, cap: int, seed: int) -> dict[str, Any]:
    """Run every operation in both modes; the figures of the run."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, response_schema_conformance, status_code_conformance,
              content_type_conformance]
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    deadline = time.monotonic() + seconds
    stats: dict[str, Any] = {"cases": 0, "by_status": collections.Counter(),
                             "failures": collections.Counter(), "examples": {},
                             "operations": 0, "timed_out": False, "skipped": []}

    def record(kind: str, case: Any, detail: str) -> None:
        stats["failures"][kind] += 1
        stats["examples"].setdefault(kind, f"{case.method} {case.path}: {detail}"[:300])

    def run_mode(strategy: Any, positive: bool, label: str) -> None:
        mode_checks = checks if positive else [*checks, negative_data_rejection]

        @given(case=strategy)
        @settings(max_examples=cases, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @hypothesis.seed(seed)
        def run(case: Any) -> None:
            if time.monotonic() > deadline:
                stats["timed_out"] = True
                return
            adjust(case, positive, cap)
            stats["cases"] += 1
            try:
                response = case.call(base_url=url, timeout=120)
            except Exception as err:  # the connection failed: worse than a 5xx
                record(f"transport: {type(err).__name__}", case, str(err))
                return
            stats["by_status"][response.status_code] += 1
            try:
                case.validate_response(response, checks=mode_checks)
            except BaseException as err:  # schemathesis raises a (base) group of failures
                if isinstance(err, KeyboardInterrupt | SystemExit):
                    raise
                for failure in getattr(err, "exceptions", None) or [err]:
                    kind = getattr(failure, "title", None) or type(failure).__name__
                    text = str(failure).strip()
                    record(kind, case, f"{response.status_code} "
                           f"{text.splitlines()[0] if text else ''}")

        try:
            run()
        except hypothesis.errors.Unsatisfiable:  # nothing to break (no parameters, no body)
            stats["skipped"].append(label)

    for result in schema.get_all_operations():
        operation = result.ok()
        stats["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_mode(operation.as_strategy(generation_mode=mode), mode == GenerationMode.POSITIVE,
                     f"{operation.method.upper()} {operation.path} ({mode.value})")
    return stats


BASES = {  # a valid body per generation endpoint; temperature 0 ends the demo's answer by itself
    "/v1/chat/completions": {"model": "demo", "messages": [{"role": "user", "content": "Hello!"}],
                             "temperature": 0},
    "/v1/completions": {"model": "demo", "prompt": "Hello", "temperature": 0},
    "/v1/responses": {"model": "demo", "input": "Hello!", "temperature": 0},
}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _edges(node: dict[str, Any]) -> list[tuple[Any, bool]]:
    """(value, in range) pairs at the limits of a number, string or array schema."""
    out: list[tuple[Any, bool]] = []
    kind = node.get("type")
    if kind in ("integer", "number"):
        step = 1 if kind == "integer" else 1e-9
        if "minimum" in node:
            out += [(node["minimum"], True), (node["minimum"] - step, False)]
        if "exclusiveMinimum" in node:
            out += [(node["exclusiveMinimum"] + step, True), (node["exclusiveMinimum"], False)]
        if "maximum" in node:
            out += [(node["maximum"], True), (node["maximum"] + step, False)]
    elif kind == "string" and "maxLength" in node:
        out += [("x" * node["maxLength"], True), ("x" * (node["maxLength"] + 1), False)]
    elif kind == "array" and "maxItems" in node:
        item = "x" if node.get("items", {}).get("type") == "string" else 1
        out += [([item] * node["maxItems"], True), ([item] * (node["maxItems"] + 1), False)]
    return out


def boundaries(url: str, cap: int) -> dict[str, Any]:
    """Every documented limit of every generation endpoint, at and just past its edge: never a
    5xx; past the edge a 400 naming the field."""
    schema = httpx.get(url + "/openapi.json", timeout=30).json()
    stats: dict[str, Any] = {"cases": 0, "failures": collections.Counter(), "examples": {}}
    for path, base in BASES.items():
        body_schema = schema["paths"][path]["post"]["requestBody"]["content"][
            "application/json"]["schema"]
        props = _resolve(schema, body_schema)["properties"]
        for name, prop in props.items():
            options = [_resolve(schema, o) for o in prop.get("anyOf", [prop])]
            for option in options:
                for value, valid in _edges(option):
                    body = {**base, name: value}
                    if name not in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                        body.setdefault("max_tokens" if path != "/v1/responses"
                                        else "max_output_tokens", cap)
                    stats["cases"] += 1
                    reply = httpx.post(url + path, json=body, timeout=300)
                    param = None
                    if reply.status_code == 400:
                        param = (reply.json().get("error") or {}).get("param") or ""
                    shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:37]}..."
                    if reply.status_code >= 500:
                        kind = "5xx at a limit"
                    elif not valid and not (param or "").startswith(name):
                        kind = "value past a limit not refused naming the field"
                    else:
                        continue
                    stats["failures"][kind] += 1
                    stats["examples"].setdefault(
                        kind, f"POST {path} {name}={shown}: {reply.status_code} "
                        f"{reply.text[:150]}")
    return stats


def after_checks(url: str, server: Server) -> list[str]:
    """Problems left behind: not healthy, a slot still taken, a normal request failing, a
    traceback or a forged line in the server's log."""
    problems = []
    deadline = time.monotonic() + 30
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            health = httpx.get(url + "/health", timeout=10).json()
        except httpx.HTTPError as err:
            health = {"error": repr(err)}
        if health.get("running") == 0:
            break
        time.sleep(0.2)
    if health != {"status": "ok", "model": "demo", "running": 0}:
        problems.append(f"/health after the run: {health}")
    try:
        reply = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "model": "demo", "messages": [{"role": "user", "content": "Hello!"}],
            "temperature": 0, "max_tokens": 200})
    except httpx.HTTPError as err:
        problems.append(f"a normal chat request after the run failed: {err!r}")
    else:
        message = (reply.json().get("choices") or [{}])[0].get("message") or {}
        if reply.status_code != 200 or not (message.get("content") or "").startswith(
                HELLO_ANSWER):
            problems.append(f"a normal chat request after the run: {reply.status_code} "
                            f"{reply.text[:200]}")
    if any(line.startswith("Traceback (most recent call last)") for line in server.lines):
        problems.append("the server log holds a traceback")
    start = next((i for i, x in enumerate(server.lines) if "serving" in x), 0)
    broken = [x for x in server.lines[start:]
              if not re.match(r"\d{4}-\d\d-\d\d |harmony-tui", x)]
    if broken:  # a client's text split a log line in two
        problems.append(f"a server log line is not a request line: {broken[0][:80]!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=25,
                        help="generated requests per operation and mode (default 25)")
    parser.add_argument("--seconds", type=float, default=600,
                        help="stop generating new cases after this long (default 600)")
    parser.add_argument("--max-tokens", type=int, default=12,
                        help="cap on generated tokens per request (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed (default 1)")
    parser.add_argument("--server-log", type=Path, default=None,
                        help="write the server's stderr (one line per request) to this file")
    args = parser.parse_args()

    started = time.monotonic()
    server = Server(args.max_tokens)
    try:
        edges = boundaries(server.url, args.max_tokens)
        stats = fuzz(server.url, args.cases, args.seconds, args.max_tokens, args.seed)
        problems = after_checks(server.url, server)
    finally:
        code = server.stop()
        if args.server_log is not None:
            args.server_log.write_text("\n".join(server.lines) + "\n", encoding="utf-8")
    elapsed = time.monotonic() - started
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(stats["by_status"].items()))
    print(f"limits: {edges['cases']} cases at and past every documented limit, "
          f"{sum(edges['failures'].values())} failures")
    for kind, count in edges["failures"].most_common():
        print(f"  {count:5d}  {kind}\n         e.g. {edges['examples'][kind]}")
    print(f"schemathesis: {stats['operations']} operations, {stats['cases']} cases "
          f"(positive and negative){' (time budget reached)' if stats['timed_out'] else ''}; "
          f"{elapsed:.0f}s in all")
    print(f"responses by status: {statuses}")
    if stats["skipped"]:
        print(f"nothing to generate for: {', '.join(stats['skipped'])}")
    server_errors = sum(n for status, n in stats["by_status"].items() if status >= 500)
    print(f"5xx responses: {server_errors}")
    if stats["failures"]:
        print("failures by kind:")
        for kind, count in stats["failures"].most_common():
            print(f"  {count:5d}  {kind}\n         e.g. {stats['examples'][kind]}")
    else:
        print("failures by kind: none")
    for problem in problems:
        print(f"after the run: {problem}")
    if not problems:
        print("after the run: /health ok with nothing running; a normal chat request answers")
    if code != 0:
        print(f"the server exited with status {code}")
    return 1 if stats["failures"] or edges["failures"] or problems or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
