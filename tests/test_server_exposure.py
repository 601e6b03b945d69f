"""Who can reach the API: risky setups are refused, other host names are answered 421."""

from __future__ import annotations

import argparse
import os
import subprocess

import httpx
import pytest
from test_server_cli import CMD, USER_CMD, Served

from harmony_tui.config.user_config import ServerSettings
from harmony_tui.server.cli_args import add_serve_arguments, server_options
from harmony_tui.server.exposure import exposure_problem, host_of, is_loopback
from harmony_tui.server.runner import EmbeddedServer, ServerError


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("app.localhost", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.5", False), ("attacker.example", False), ("localhost.attacker.example", False),
    ("", False),
])
def test_loopback_names(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_host_header_names() -> None:
    assert host_of("localhost:8000") == "localhost"
    assert host_of("[::1]:8000") == "::1"
    assert host_of("evil.example") == "evil.example"


def test_exposure_rules() -> None:
    assert exposure_problem("127.0.0.1", None, [], ()) is None
    assert exposure_problem("0.0.0.0", "key", [], ()) is None
    assert "without an API key" in exposure_problem("0.0.0.0", None, [], ())
    assert "without an API key" in exposure_problem("192.168.1.5", "", [], ("python",))
    assert "any web page" in exposure_problem("127.0.0.1", "key", ["*"], ("python",))
    assert exposure_problem("127.0.0.1", None, ["*"], ()) is None  # no tools: the model only
    assert exposure_problem("127.0.0.1", None, ["http://a.test"], ("python",)) is None


@pytest.mark.parametrize("args", [
    ["--host", "0.0.0.0"],
    ["--host", "::"],
    ["--server-tools", "python", "--cors-origin", "*"],
])
def test_serve_refuses_risky_setups_in_one_line(args: list[str]) -> None:
    env = {"HARMONY_TUI_API_KEY": ""}
    result = subprocess.run([*USER_CMD, "--model", "demo", "--port", "0", *args],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert result.returncode == 2, result.stderr
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("harmony-tui: error: refusing to serve: ")
    assert "--insecure" in lines[0]
    assert "Loading" not in result.stderr  # refused before the model load


def test_insecure_is_a_flag_and_a_setting() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert server_options(parser.parse_args(["--insecure"]))["insecure"] is True
    assert server_options(parser.parse_args([]), ServerSettings(insecure=True))["insecure"]
    assert not server_options(parser.parse_args([]), ServerSettings())["insecure"]


def test_a_key_on_the_command_line_is_warned_about_and_other_hosts_get_421() -> None:
    served = Served("--model", "demo", "--port", "0", "--api-key", "on-the-command-line",
                    cmd=USER_CMD)
    try:
        url = served.url()
        assert "visible to other users of this machine" in served.text()
        port = url.split(":")[2].split("/")[0]
        with httpx.Client(timeout=30) as client:
            # DNS rebinding: the attacker's page reaches 127.0.0.1 under its own name.
            rebound = client.get(f"{url}/models", headers={"Host": f"attacker.example:{port}"})
            assert rebound.status_code == 421
            assert rebound.json()["error"]["code"] == "host_not_allowed"
            for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
                ok = client.get(f"{url}/models", headers={
                    "Host": host, "Authorization": "Bearer on-the-command-line"})
                assert ok.status_code == 200, (host, ok.text)
    finally:
        assert served.stop() == 0, served.text()


def test_the_embedded_server_follows_the_same_rules(demo_engine) -> None:
    with pytest.raises(ServerError, match=r"refusing to serve: --host 0\.0\.0\.0"):
        EmbeddedServer(demo_engine, host="0.0.0.0", port=0).start()
    server = EmbeddedServer(demo_engine, host="127.0.0.1", port=0)
    server.start()
    try:
        with httpx.Client(timeout=30) as client:
            assert client.get(f"{server.url}/health").status_code == 200
            assert client.get(f"{server.url}/health",
                              headers={"Host": "rebind.example"}).status_code == 421
    finally:
        server.stop()


def test_the_direct_entry_point_refuses_too() -> None:
    result = subprocess.run([*CMD, "--host", "0.0.0.0", "--port", "0"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "HARMONY_TUI_API_KEY": ""})
    assert result.returncode == 2 and "refusing to serve" in result.stderr
