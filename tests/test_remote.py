"""The remote engine (``--backend openai``) against real servers on loopback.

Remotes: our own API server on the demo model (``EmbeddedServer``), ``mlx_lm.server`` on the
demo model folder (raw Harmony in ``content``), and small ``http.server`` servers written here
that answer 401, stall, or cut the stream mid-answer.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.engine import TurnRequest
from harmony_tui.engine.events import TextDelta, ToolCall, TurnEnd
from harmony_tui.engine.messages import FunctionTool, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.remote import RemoteEngine
from harmony_tui.remote.request import openai_messages, unsent_settings
from harmony_tui.remote.stream import ChunkReader
from harmony_tui.server.runner import EmbeddedServer

HELLO, PYTHON, WEATHER = SCRIPTS[0], SCRIPTS[4], SCRIPTS[6]
GREEDY = GenerationParams(temperature=0)
pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ours(demo_engine):
    with EmbeddedServer(demo_engine, port=0) as server:
        yield f"{server.url}/v1"


MLX_LM_LOG: list[Path] = []  # mlx_lm.server's stderr, shown when a test against it fails


def mlx_lm_log() -> str:
    """The end of mlx_lm.server's log (a crash in its generation thread is only said there)."""
    return MLX_LM_LOG[0].read_text(errors="replace")[-3000:] if MLX_LM_LOG else ""


@pytest.fixture(scope="module")
def mlx_lm_url(demo_engine, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("mlx_lm_server") / "stderr.log"
    MLX_LM_LOG[:] = [log]
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lm", "server", "--model",
                             str(demo_engine.model.path), "--port", str(port),
                             "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url + "/models", timeout=2)
            break
        except httpx.HTTPError:
            assert proc.poll() is None, "mlx_lm.server exited"
            assert time.monotonic() < deadline, "mlx_lm.server did not start"
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def generate(base_url: str, prompt: str, *extra: str, env: dict | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harmony_tui", "generate", "--backend",
                           "openai", "--base-url", base_url, "--prompt", prompt,
                           "--temperature", "0", *extra], capture_output=True, text=True,
                          timeout=timeout, env=env)


def local_reply(demo_engine, prompt: str):
    return demo_engine.chat([Message("user", prompt)], params=GREEDY)


# -- generate against real servers ----------------------------------------------------------


@pytest.mark.parametrize("remote", ["ours", "mlx_lm_url"])
def test_generate_gives_the_local_answer_with_reasoning_apart(remote, request, demo_engine):
    url = request.getfixturevalue(remote)
    local = local_reply(demo_engine, HELLO.prompt)
    done = generate(url, HELLO.prompt, "--json")
    assert done.returncode == 0, done.stderr + (mlx_lm_log() if remote == "mlx_lm_url" else "")
    reply = json.loads(done.stdout)
    assert reply["final"] == local.final == HELLO.final
    assert reply["analysis"] == HELLO.analysis  # reasoning kept apart, no markup anywhere
    assert "<|" not in done.stdout
    assert reply["stats"]["generation_tokens"] > 10 and reply["stats"]["generation_tps"] > 0
    assert reply["stats"]["ttft_s"] > 0


def test_mlx_lm_server_raw_harmony_tool_call_is_parsed(mlx_lm_url):
    engine = RemoteEngine.start(None, base_url=mlx_lm_url)
    try:
        events = list(engine.submit(TurnRequest([Message("user", PYTHON.prompt)],
                                                params=GREEDY)))
    finally:
        engine.close()
    calls = [e for e in events if isinstance(e, ToolCall)]
    end = events[-1]
    assert isinstance(end, TurnEnd) and end.reason == "call", (end, mlx_lm_log())
    assert [(c.recipient, c.arguments) for c in calls] == [("python",
                                                            PYTHON.tool.arguments)]
    final = "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == "final")
    assert final == ""  # the call's code never leaks into the answer


def test_a_function_call_comes_back_and_runs_locally(ours, tmp_path):
    result = WEATHER.tool.result
    script = tmp_path / "weather.py"
    script.write_text(f"import sys; sys.stdin.read(); print({result!r}, end='')\n")
    config = tmp_path / "weather.yaml"
    config.write_text(json.dumps({"tools": {"functions": [{
        "name": "get_weather", "description": "Get the current weather for a location.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "required": ["location"]},
        "command": f"{sys.executable} {script}", "auto_approve": True}]}}))
    done = generate(ours, WEATHER.prompt, "--json", "--prompt-config", str(config),
                    "--chat", "weather")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert [(c["recipient"], c["result"]) for c in reply["tool_calls"]] == [
        ("functions.get_weather", result)]
    assert reply["final"] == WEATHER.final  # the remote read the local result


# -- the app ---------------------------------------------------------------------------------


async def test_the_app_streams_a_remote_answer(ours):
    from test_app import WIDE, make_app, ready, send, sidebar_text

    from harmony_tui.config.settings import Choices, resolve

    settings = resolve(Choices(backend="openai", base_url=ours, params={"temperature": 0}))
    app = make_app(settings.model, settings=settings, params=settings.params)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        assert app.model_name == "demo"  # the model the server serves
        await send(pilot, HELLO.prompt)
        widget = app.conversation.last_assistant()
        assert widget.answer == HELLO.final
        assert app.thinking.text == HELLO.analysis
        status = app.status.render().plain
        assert ours in status and "tok/s" in status
        assert app.session.final_answers() == [HELLO.final]
        assert "✗" in sidebar_text(app)  # the context limit cannot be sent


# -- failures --------------------------------------------------------------------------------


class Scripted(BaseHTTPRequestHandler):
    """A remote that answers /models, then plays ``mode`` on chat completions."""

    mode = "drop"
    release = threading.Event()
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.mode == "401":
            return self._json(401, {"error": {"message": "Incorrect API key provided"}})
        self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "401":
            return self._json(401, {"error": {"message": "Incorrect API key provided"}})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for piece in ("The answer ", "is partly "):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        if self.mode == "slow":
            self.release.wait(30)
        # "drop": the connection closes here, with no finish_reason and no [DONE]

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted():
    def start(mode: str) -> str:
        handler = type("Handler", (Scripted,), {"mode": mode, "release": threading.Event()})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, handler))
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    servers: list = []
    yield start
    for server, handler in servers:
        handler.release.set()
        server.shutdown()
        server.server_close()


def test_a_remote_that_is_down_is_one_line():
    done = generate(f"http://127.0.0.1:{free_port()}/v1", "Hi", timeout=60)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "cannot reach http://127.0.0.1:" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_401_says_to_check_the_key(scripted, demo_engine):
    done = generate(scripted("401"), "Hi", timeout=60)
    assert done.returncode == 2
    assert "HTTP 401: Incorrect API key provided (check --api-key" in done.stderr
    with EmbeddedServer(demo_engine, port=0, api_key="s3cret") as server:
        url = f"{server.url}/v1"
        assert generate(url, HELLO.prompt, timeout=60).returncode == 2
        done = generate(url, HELLO.prompt, "--api-key", "s3cret")
        assert done.returncode == 0 and done.stdout.strip() == HELLO.final, done.stderr


def test_a_stream_dropped_mid_answer_keeps_the_partial_answer(scripted):
    done = generate(scripted("drop"), "Hi", "--chat", "dropped")
    assert done.returncode == 1
    assert done.stdout.startswith("The answer is partly")
    error = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and "the stream ended before the answer was complete" in error[0]
    from harmony_tui.sessions.store import default_chats_dir

    chat = json.loads((default_chats_dir() / "dropped.json").read_text())
    texts = [m.get("content") for m in chat["messages"]]
    assert "The answer is partly " in texts  # recorded like a local turn that failed


def test_a_silent_remote_times_out_and_cancel_closes_at_once(scripted):
    url = scripted("slow")
    engine = RemoteEngine.start(None, base_url=url, timeout=1.0)
    try:
        started = time.monotonic()
        events = list(engine.submit(TurnRequest([Message("user", "Hi")])))
        end = events[-1]
        assert isinstance(end, TurnEnd) and end.reason == "error"
        assert "timed out (waiting for data)" in end.error
        assert [m.content for m in end.messages] == ["The answer is partly "]
        assert time.monotonic() - started < 10
        patient = RemoteEngine.start(None, base_url=url, timeout=60)
        try:
            stream = patient.submit(TurnRequest([Message("user", "Hi")]))
            first = stream.get(timeout=10)
            while not isinstance(first, TextDelta):
                first = stream.get(timeout=10)
            started = time.monotonic()
            stream.cancel()
            rest = list(stream)
            assert rest[-1].reason == "cancelled" and time.monotonic() - started < 2
        finally:
            patient.close()
    finally:
        engine.close()


# -- the pieces --------------------------------------------------------------------------------


def test_raw_harmony_split_anywhere_decodes_the_same(harmony_format):
    text = ("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final"
            "<|message|>Done **now**.")
    for size in (1, 2, 3, 5, 7, 11):
        reader = ChunkReader()
        events = []
        for start in range(0, len(text), size):
            events += reader.feed({"choices": [{"delta": {"content": text[start:start + size]}}]})
        more, reason = reader.finish()
        events += more
        by_channel: dict[str, str] = {}
        for e in events:
            if isinstance(e, TextDelta):
                by_channel[e.channel] = by_channel.get(e.channel, "") + e.text
        assert by_channel == {"analysis": "Think.", "final": "Done **now**."}, size
        assert reason == "return"


def test_history_maps_to_openai_messages():
    setup = PromptSetup(developer_instructions="Be brief.",
                        function_tools=(FunctionTool("get_weather"),))
    history = [Message("user", "Weather?"),
               Message("assistant", "Need the tool.", channel="analysis"),
               Message("assistant", '{"location": "Paris"}', channel="commentary",
                       recipient="functions.get_weather", content_type="<|constrain|>json"),
               Message("tool", '{"t": 18}', channel="commentary", name="functions.get_weather"),
               Message("assistant", "Run it.", channel="analysis"),
               Message("assistant", "print(1)", channel="analysis", recipient="python"),
               Message("tool", "1", channel="analysis", name="python")]
    assert openai_messages(history, setup) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "reasoning_content": "Need the tool.",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {
             "name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "content": '{"t": 18}', "tool_call_id": "call_1",
         "name": "get_weather"},
        {"role": "assistant", "content": None, "reasoning_content": "Run it.",
         "tool_calls": [{"id": "call_2", "type": "function", "function": {
             "name": "python", "arguments": '"print(1)"'}}]},
        {"role": "tool", "content": "1", "tool_call_id": "call_2", "name": "python"},
    ]


def test_settings_a_remote_cannot_take_are_listed():
    params = GenerationParams(max_context_tokens=2048)
    assert set(unsent_settings(params, PromptSetup(builtin_tools=("python",)))) == {
        "max_context_tokens", "builtin_tools"}
    assert set(unsent_settings(GenerationParams(prompt_lookup=4, draft_model="demo"))) == {
        "prompt_lookup", "draft_model"}
    assert unsent_settings(GenerationParams(), PromptSetup()) == {}


def test_backend_openai_needs_a_url():
    done = subprocess.run([sys.executable, "-m", "harmony_tui", "generate", "--backend",
                           "openai", "--prompt", "Hi"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "harmony-tui: error: backend openai needs a server: --base-url URL (or base_url in "
        "the config or the profile), e.g. http://127.0.0.1:8000/v1"]


def test_backend_and_url_come_from_a_profile(tmp_path):
    from harmony_tui.config.settings import Choices, resolve

    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("gpu:\n  backend: openai\n  base_url: http://gpu-box:8000/v1\n"
                        "  model: openai/gpt-oss-120b\n")
    settings = resolve(Choices(profile="gpu", profiles_file=profiles))
    assert (settings.remote.backend, settings.remote.base_url) == (
        "openai", "http://gpu-box:8000/v1")
    assert settings.model_for_engine() == "openai/gpt-oss-120b"
    settings = resolve(Choices(profile="gpu", profiles_file=profiles, backend="mlx"))
    assert not settings.remote.is_remote  # the command line wins
