"""The headless server run as a user runs it: a real subprocess, a real port, the SDK."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading

import openai
import pytest
from conftest import wait_until

from harmony_tui.demo.corpus import SCRIPTS

CMD = [sys.executable, "-m", "harmony_tui.server"]
USER_CMD = [sys.executable, "-m", "harmony_tui", "--serve"]  # what a person types


class Served:
    """A server subprocess whose stderr lines are collected as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 cmd: list[str] = CMD) -> None:
        self.proc = subprocess.Popen([*cmd, *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def url(self) -> str:
        wait_until(lambda: "serving demo at" in self.text() or self.proc.poll() is not None,
                   timeout=120, message="the server to listen")
        match = re.search(r"serving demo at (http://127\.0\.0\.1:\d+/v1)", self.text())
        assert match, self.text()
        return match.group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return code


def test_serve_headless_with_an_api_key_logs_each_request():
    served = Served("--model", "demo", "--port", "0", "--temperature", "0",
                    env={"HARMONY_TUI_API_KEY": "from-env"}, cmd=USER_CMD)
    try:
        url = served.url()
        assert "(API key required)" in served.text()
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=url, api_key="from-env", max_retries=0, timeout=60)
        hello = next(s for s in SCRIPTS if s.prompt == "Hello!")
        reply = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hello!"}])
        assert reply.choices[0].message.content == hello.final  # --temperature 0 applies
        wait_until(lambda: "POST /v1/chat/completions 200 done" in served.text(), timeout=10)
        line = next(x for x in served.lines if "POST /v1/chat/completions" in x)
        assert f"generated={reply.usage.completion_tokens}" in line and "tok/s=" in line
        assert "GET /v1/models 401 error" in served.text()
    finally:
        code = served.stop()
    assert code == 0, served.text()
    assert "Traceback" not in served.text()


def test_serve_reports_a_taken_port_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([*CMD, "--port", str(port)], capture_output=True, text=True,
                                timeout=120)
    assert result.returncode == 2
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert lines == [f"harmony-tui: error: cannot listen on 127.0.0.1:{port}: the port is "
                     "already in use"], result.stderr


def test_serve_rejects_a_bad_port():
    result = subprocess.run([*CMD, "--port", "70000"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "--port=70000: expected a port number from 0 to 65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_options_precedence(monkeypatch):
    import argparse

    from harmony_tui.config.user_config import ServerSettings
    from harmony_tui.server.cli_args import add_serve_arguments, server_options

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    user = ServerSettings(host="0.0.0.0", port=9000, api_key="from-config",
                          cors_origins=["http://a.test"])
    monkeypatch.delenv("HARMONY_TUI_API_KEY", raising=False)
    assert server_options(parser.parse_args([]), None) == {
        "host": "127.0.0.1", "port": 8000, "api_key": None, "cors_origins": [],
        "max_queue": None, "max_body_bytes": 4 * 1024 * 1024, "insecure": False}
    assert server_options(parser.parse_args([]), user) == {
        "host": "0.0.0.0", "port": 9000, "api_key": "from-config",
        "cors_origins": ["http://a.test"], "max_queue": None, "max_body_bytes": 4 * 1024 * 1024,
        "insecure": False}
    monkeypatch.setenv("HARMONY_TUI_API_KEY", "from-env")
    assert server_options(parser.parse_args([]), user)["api_key"] == "from-env"
    args = parser.parse_args(["--api-key", "flag", "--port", "0", "--cors-origin", "http://b.test",
                              "--max-queue", "3"])
    options = server_options(args, user)
    assert (options["api_key"], options["port"], options["cors_origins"],
            options["max_queue"]) == ("flag", 0, ["http://b.test"], 3)
