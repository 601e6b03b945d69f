"""Client mistakes and hostile bodies: 400/413 in OpenAI's shape naming the field, strict JSON,
kept-alive connections after a 500, and an ``/openapi.json`` that matches behaviour.

Real uvicorn on a loopback port with the trained demo model, driven by httpx, raw sockets and
the ``openai`` SDK.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import wait_until

from harmony_tui.errors import ConfigError
from harmony_tui.server.cli_args import add_serve_arguments, server_options
from harmony_tui.server.runner import EmbeddedServer

LIMIT = 64 * 1024  # the test server's body limit
HELLO = [{"role": "user", "content": "Hello!"}]


class _FailingServer(EmbeddedServer):
    """The real app plus one route with a bug (there is no real 500 left to trigger)."""

    def app(self):
        app = super().app()

        @app.get("/v1/boom")
        async def boom():
            raise RuntimeError("secret internal detail")

        return app


@pytest.fixture(scope="module")
def records() -> list:
    return []


@pytest.fixture(scope="module")
def url(demo_engine, records) -> Iterator[str]:
    with _FailingServer(demo_engine, port=0, max_body_bytes=LIMIT,
                        on_request=records.append) as srv:
        yield srv.url


def post_raw(url: str, path: str, body: dict, **kwargs) -> httpx.Response:
    """POST ``body`` encoded with ``json.dumps`` (ASCII escapes, so a lone surrogate survives
    as ``\\ud800``, and NaN as the non-standard literal Python's parser accepts)."""
    return httpx.post(url + path, content=json.dumps(body),
                      headers={"content-type": "application/json"}, timeout=60, **kwargs)


def strict_json(text: str):
    """Parse like a strict JSON parser (JavaScript's, Go's): NaN and Infinity are errors."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def assert_error(response: httpx.Response, status: int, param: str | None, *needles: str):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    assert "\n" not in error["message"] and "Traceback" not in response.text
    for needle in needles:
        assert needle in error["message"], error["message"]
    return error


# -- item 5: client mistakes are 400s naming the field ---------------------------------------------

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize("path,extra,param,needles", [
    (CHAT, {"seed": 2**64}, "seed", ("seed=18446744073709551616", "less than or equal")),
    (CHAT, {"repetition_context_size": 2**31}, "repetition_context_size",
     ("repetition_context_size=2147483648",)),
    (CHAT, {"min_tokens_to_keep": 10**9, "min_p": 0.5}, "min_tokens_to_keep",
     ("min_tokens_to_keep=1000000000", "vocabulary size (201088)")),
    (CHAT, {"messages": [{"role": "user", "content": "hi \ud800"}]}, "messages[0].content",
     ("lone surrogate", "\\ud800")),
    (CHAT, {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "description": "\udfff"}}}]},
     "tools[0].function.parameters.description", ("lone surrogate",)),
    (CHAT, {"top_k": -1}, "top_k", ("top_k=-1",)),
    (CHAT, {"max_tokens": 2**31}, "max_tokens", ("max_tokens=2147483648",)),
    (CHAT, {"n": 0}, "n", ("n=0",)),
    (CHAT, {"top_logprobs": 21, "logprobs": True}, "top_logprobs", ("top_logprobs=21",)),
    (CHAT, {"logit_bias": {"12": 101}}, "logit_bias.12", ("less than or equal to 100",)),
    (CHAT, {"logit_bias": {"x1": 1}}, "logit_bias", ("key 'x1'",)),
    (CHAT, {"stop": ["x" * 1001]}, "stop[0]", ("at most 1000 characters",)),
    (CHAT, {"stop": 7}, "stop", ("a valid string or a valid list",)),
    (CHAT, {"temperature": float("nan")}, "temperature", ("finite number",)),
    ("/v1/completions", {"prompt": [[1, -2]]}, "prompt[0][1]", ("prompt[0][1]=-2",)),
    ("/v1/completions", {"prompt": "hi", "best_of": 0}, "best_of", ("best_of=0",)),
    ("/v1/responses", {"input": "Hello!", "text": {"format": "x"}}, "text.format",
     ("text.format='x'",)),
    ("/v1/responses", {"input": "Hello!", "text": {"format": {"type": "json_object"}}},
     "text.format.type", ("'json_object'", "not supported")),
    ("/v1/responses", {"input": [{"role": "user", "content": "\ud800"}]}, "input[0].content",
     ("lone surrogate",)),
    ("/v1/responses", {"input": "Hello!", "max_output_tokens": 0}, "max_output_tokens",
     ("max_output_tokens=0",)),
])
def test_client_mistakes_get_400_naming_the_field(url, path, extra, param, needles):
    body = {"model": "demo", **({"messages": HELLO} if path == CHAT else {}), **extra}
    error = assert_error(post_raw(url, path, body), 400, param, *needles)
    assert error["type"] == "invalid_request_error"
    assert httpx.get(url + "/health").json() == {"status": "ok", "model": "demo", "running": 0,
                                                 "group": None}


def test_a_fine_request_still_works_after_the_mistakes(url):
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    reply = client.chat.completions.create(model="demo", messages=HELLO, temperature=0,
                                           seed=2**64 - 1, max_tokens=8)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 8


# -- item 5: strict JSON in logprobs --------------------------------------------------------------

# A repetition penalty this small divides logits by ~0: the repeated tokens' log-probabilities
# become -inf, which Python's json would write as -Infinity.
TINY_PENALTY = {"repetition_penalty": 1e-45, "temperature": 0}


def test_completion_logprobs_are_strict_json(url):
    body = {"model": "demo", "prompt": "Hello hello hello", "max_tokens": 6, "logprobs": 5,
            **TINY_PENALTY}
    response = post_raw(url, "/v1/completions", body)
    assert response.status_code == 200, response.text
    strict_json(response.text)
    assert "-9999.0" in response.text  # OpenAI's stand-in for a log-probability of -inf

    with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True},
                      timeout=60) as stream:
        events = [line.removeprefix("data: ") for line in stream.iter_lines()
                  if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        strict_json(event)
    assert any("-9999.0" in event for event in events)


def test_chat_logprobs_are_strict_json(url):
    body = {"model": "demo", "messages": [{"role": "user", "content": "Hello hello hello"}],
            "max_tokens": 30, "logprobs": True, "top_logprobs": 5, **TINY_PENALTY}
    response = post_raw(url, CHAT, body)
    assert response.status_code == 200, response.text
    strict_json(response.text)
    with httpx.stream("POST", url + CHAT, json={**body, "stream": True}, timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: {"):
                strict_json(line.removeprefix("data: "))


# -- item 5: a 500 does not cost the client its connection ----------------------------------------


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body from ``sock``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection mid-body")
        rest += data
    buffer[:] = rest[length:]
    return int(lines[0].split()[1]), rest[:length]


def test_keep_alive_connection_survives_a_500(url):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        buffer = bytearray()
        sock.sendall(f"GET /v1/boom HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, body = _read_response(sock, buffer)
        assert status == 500 and b"secret" not in body
        assert json.loads(body)["error"]["type"] == "server_error"
        # the same connection answers the next request
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, body = _read_response(sock, buffer)
        assert status == 200 and json.loads(body)["status"] == "ok"


# -- item 6: body-size limit ---------------------------------------------------------------------


def _big_body(size: int) -> bytes:
    return json.dumps({"model": "demo", "messages": [
        {"role": "user", "content": "a" * size}]}).encode()


def test_a_body_over_the_limit_gets_413_before_it_is_read(url):
    response = httpx.post(url + CHAT, content=_big_body(LIMIT + 1),
                          headers={"content-type": "application/json"}, timeout=30)
    error = assert_error(response, 413, None, f"limit of {LIMIT} bytes", "--max-body-bytes")
    assert error["code"] == "request_too_large"
    # just under the limit is fine (a normal 200)
    small = {"model": "demo", "messages": HELLO, "max_tokens": 1,
             "metadata": {"filler": "a" * (LIMIT - 200)}}  # accepted and ignored
    assert httpx.post(url + CHAT, json=small, timeout=60).status_code == 200


def test_a_chunked_body_is_cut_off_at_the_limit(url):
    sent = 0
    total = 64 * 1024 * 1024

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        nonlocal sent
        yield b'{"model": "demo", "messages": [{"role": "user", "content": "'
        while sent < total:
            sent += 65536
            yield b"a" * 65536
        yield b'"}]}'

    response = httpx.post(url + CHAT, content=chunks(),
                          headers={"content-type": "application/json"}, timeout=60)
    assert_error(response, 413, None, f"limit of {LIMIT} bytes")
    assert sent < total // 2  # the server stopped reading long before the end
    assert httpx.get(url + "/health").json()["status"] == "ok"


def test_max_body_bytes_flag_and_user_config():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert server_options(parser.parse_args([]))["max_body_bytes"] == 4 * 1024 * 1024
    config = argparse.Namespace(max_body_bytes=1000)  # the user config's server section
    assert server_options(parser.parse_args([]), config)["max_body_bytes"] == 1000
    flagged = parser.parse_args(["--max-body-bytes", "123"])
    assert server_options(flagged, config)["max_body_bytes"] == 123
    with pytest.raises(ConfigError, match=r"--max-body-bytes=0: expected a positive number"):
        server_options(parser.parse_args(["--max-body-bytes", "0"]))


def test_user_config_server_max_body_bytes(tmp_path):
    from harmony_tui.config.user_config import load_user_config

    path = tmp_path / "config.yaml"
    path.write_text("server:\n  max_body_bytes: 2048\n", encoding="utf-8")
    config, warnings = load_user_config(path)
    assert config.server.max_body_bytes == 2048 and warnings == []
    path.write_text("server:\n  max_body_bytes: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"server\.max_body_bytes=0"):
        load_user_config(path)


# -- item 8: /openapi.json matches behaviour ------------------------------------------------------


def test_openapi_has_the_limits_and_the_streams(url):
    schema = httpx.get(url + "/openapi.json").json()
    props = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]

    def bounds(name: str) -> dict:
        (number,) = [s for s in props[name]["anyOf"] if s.get("type") != "null"]
        return {k: v for k, v in number.items() if k.endswith("imum")}

    assert bounds("temperature") == {"minimum": 0.0, "maximum": 5.0}
    assert bounds("top_p") == {"exclusiveMinimum": 0.0, "maximum": 1.0}
    assert bounds("seed") == {"minimum": 0, "maximum": 2**64 - 1}
    assert bounds("presence_penalty") == {"minimum": -2.0, "maximum": 2.0}
    assert bounds("max_tokens") == {"minimum": 1, "maximum": 2**31 - 1}
    assert bounds("top_logprobs") == {"minimum": 0, "maximum": 20}
    stop_list = next(s for s in props["stop"]["anyOf"] if s.get("type") == "array")
    assert stop_list["maxItems"] == 4 and stop_list["items"]["maxLength"] == 1000
    bias = next(s for s in props["logit_bias"]["anyOf"] if s.get("type") == "object")
    assert bias["additionalProperties"] == {"type": "number", "minimum": -100.0,
                                            "maximum": 100.0}
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
        content = schema["paths"][path]["post"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/event-stream"}
    assert set(schema["paths"]["/health"]) == {"get", "head"}


def test_405_says_what_is_allowed_and_head_health_works(url):
    response = httpx.delete(url + "/health")
    error = assert_error(response, 405, None, "DELETE", "allowed: GET")
    assert error["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, HEAD"
    response = httpx.get(url + CHAT)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    head = httpx.head(url + "/health")
    assert head.status_code == 200 and head.content == b""


# -- found by benchmarks/fuzz_api.py: a client's text cannot break the request log ----------------


def test_log_lines_stay_one_line_whatever_the_client_sends(url, records):
    done = len(records)
    assert httpx.get(url + "/v1/models/a%0Ab%1B[31m").status_code == 404
    body = {"model": "x\ny\u2028z", "messages": HELLO}
    assert httpx.post(url + CHAT, json=body, timeout=30).status_code == 404

    def ends() -> list:  # ours only: an earlier test's end record may still arrive
        return sorted((r for r in records[done:] if r.state != "running" and (
            r.endpoint.startswith("/v1/models/a") or (r.endpoint == CHAT and r.status == 404))),
            key=lambda r: r.id)

    wait_until(lambda: len(ends()) == 2, timeout=10, message="both end records")
    lines = [record.log_line() for record in ends()]
    assert all("\n" not in line and "\x1b" not in line and "\u2028" not in line
               for line in lines), lines
    assert "/v1/models/a\\nb\\x1b[31m" in lines[0]
    assert "model=x\\ny\\u2028z" in lines[1]
