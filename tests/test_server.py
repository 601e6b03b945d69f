"""The OpenAI-compatible server: real uvicorn on a loopback port, the official ``openai`` SDK,
the trained demo model. One server is shared by the module; a few tests start their own
(API key, small queue) on the same engine."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from conftest import wait_until

from harmony_tui.demo.corpus import SCRIPTS, WEATHER_TOOL
from harmony_tui.engine.formats.harmony import CALL, END, ENDOFTEXT, RETURN
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.server.runner import EmbeddedServer, ServerError

SCRIPT = {s.prompt: s for s in SCRIPTS}
HELLO = SCRIPT["Hello!"]
WEATHER = SCRIPT["What's the weather in Paris?"]
TOOLS = [{"type": "function", "function": {
    "name": WEATHER_TOOL.name, "description": WEATHER_TOOL.description,
    "parameters": WEATHER_TOOL.parameters}}]
NO_STOP = {str(t): -100 for t in (RETURN, CALL, END, ENDOFTEXT)}  # generation never ends early


@pytest.fixture(scope="module")
def records():
    return []


@pytest.fixture(scope="module")
def server(demo_engine, records):
    srv = EmbeddedServer(demo_engine, port=0, on_request=records.append)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# -- chat -------------------------------------------------------------------------------------


def test_chat_separates_reasoning_and_answer(client, records):
    done = len(records)
    reply = client.chat.completions.create(model="demo", messages=user("Hello!"), temperature=0)
    choice = reply.choices[0]
    assert choice.message.content == HELLO.final
    assert choice.message.reasoning == HELLO.analysis
    assert choice.message.reasoning_content == HELLO.analysis
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert "<|" not in choice.message.content
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.prompt_tokens_details.cached_tokens >= 0
    assert reply.id.startswith("chatcmpl-") and reply.model == "demo"
    def ours() -> list:
        return [r for r in records[done:] if r.endpoint == "/v1/chat/completions"]

    # the end record is made after the last byte is sent: the client may see the reply first
    wait_until(lambda: len(ours()) == 2, timeout=10, message="the request's end record")
    assert [r.state for r in ours()] == ["running", "done"]
    end = ours()[-1]
    assert end.status == 200 and end.model == "demo" and end.finish_reason == "stop"
    assert end.prompt_tokens == reply.usage.prompt_tokens
    assert end.generated_tokens == reply.usage.completion_tokens and end.tokens_per_s > 0
    assert "POST /v1/chat/completions 200 done model=demo" in end.log_line()


def test_chat_streams_reasoning_and_content_deltas(client):
    stream = client.chat.completions.create(model="demo", messages=user("Hello!"), temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    content = "".join(d.content or "" for d in deltas)
    reasoning = [getattr(d, "reasoning", None) for d in deltas]
    assert content == HELLO.final
    assert "".join(r for r in reasoning if r) == HELLO.analysis
    assert sum(1 for d in deltas if d.content) > 10  # token by token, not one blob
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop" and not any(finals[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 10
    assert len({c.id for c in chunks}) == 1


def test_tool_call_round_trip(client):
    messages = user(WEATHER.prompt)
    first = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS,
                                           temperature=0)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert call.id.startswith("call_")
    assert "<|" not in (choice.message.content or "")
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": WEATHER.tool.result})
    second = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS,
                                            temperature=0)
    assert second.choices[0].message.content == WEATHER.final
    assert second.choices[0].finish_reason == "stop"
    assert second.usage.prompt_tokens_details.cached_tokens > 0  # the first turn's checkpoint


def test_streamed_tool_call_has_unique_ids(client):
    ids = []
    for _ in range(2):
        chunks = list(client.chat.completions.create(
            model="demo", messages=user(WEATHER.prompt), tools=TOOLS, temperature=0,
            stream=True))
        parts = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        assert parts[0].id and parts[0].function.name == "get_weather"
        assert all(p.index == 0 for p in parts)
        assert json.loads("".join(p.function.arguments or "" for p in parts)) == \
            {"location": "Paris"}
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        ids.append(parts[0].id)
    assert ids[0] != ids[1]


def test_history_tool_messages_render_as_harmony(demo_engine):
    from harmony_tui.server.mapping import chat_messages
    from harmony_tui.server.schemas import ChatCompletionRequest

    body = ChatCompletionRequest.model_validate({"model": "demo", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": WEATHER.prompt}]},
        {"role": "assistant", "content": None, "reasoning": WEATHER.analysis, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})
    messages = chat_messages(body)
    assert messages[2] == Message("assistant", WEATHER.analysis, channel="analysis")
    assert messages[3] == Message("assistant", '{"location": "Paris"}', channel="commentary",
                                  recipient="functions.get_weather",
                                  content_type="<|constrain|>json")
    assert messages[4] == Message("tool", "sunny", channel="commentary",
                                  name="functions.get_weather")
    fmt = demo_engine.model.format
    text = fmt.decode(fmt.render(messages, PromptSetup(), GenerationParams()))
    assert "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json" \
        "<|message|>" in text
    assert "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny" \
        in text


def test_stop_strings_logprobs_and_raw_completions(client):
    cut = client.chat.completions.create(model="demo", messages=user("Hello!"), temperature=0,
                                         stop=["demo model"], logprobs=True, top_logprobs=2)
    choice = cut.choices[0]
    assert choice.message.content == "Hello! I am the **harmony-tui "
    assert choice.finish_reason == "stop"
    entries = choice.logprobs.content
    assert entries and all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in entries)
    # one entry per answer token; the last ones may hold the start of the stop string
    assert "".join(e.token for e in entries).startswith(choice.message.content)

    prompt = "<|start|>user<|message|>Hello!<|end|><|start|>assistant"
    raw = client.completions.create(model="demo", prompt=prompt, max_tokens=8, temperature=0)
    assert raw.choices[0].text.startswith("<|channel|>analysis<|message|>The user")
    assert raw.choices[0].finish_reason == "length" and raw.usage.completion_tokens == 8
    streamed = client.completions.create(model="demo", prompt=prompt, max_tokens=8,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == raw.choices[0].text


def test_models_and_health(server, client):
    models = client.models.list().data
    assert models[0].id == "demo" and models[0].model_extra["loaded"] is True
    assert client.models.retrieve("demo").id == "demo"
    health = httpx.get(server.url + "/health").json()
    assert health == {"status": "ok", "model": "demo", "running": 0, "group": None}
    schema = httpx.get(server.url + "/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models",
                 "/health"):
        assert path in schema["paths"], path
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "429" in chat["responses"]


def test_responses_api_items_and_stream_events(client):
    reply = client.responses.create(model="demo", input="Hello!", temperature=0)
    assert [item.type for item in reply.output] == ["reasoning", "message"]
    assert reply.output_text == HELLO.final
    assert reply.output[0].content[0].text == HELLO.analysis
    assert reply.usage.output_tokens > 10
    events = list(client.responses.create(model="demo", input=WEATHER.prompt, temperature=0,
                                          tools=[{"type": "function", **TOOLS[0]["function"]}],
                                          stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.function_call_arguments.done" in kinds
    call = events[-1].response.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"location": "Paris"}


# -- concurrency --------------------------------------------------------------------------------


def test_eight_concurrent_streams_each_get_their_own_answer(client, demo_engine):
    prompts = [s.prompt for s in SCRIPTS if s.tool is None or s.tool.tool == "get_weather"]
    prompts = (prompts * 2)[:8]
    start = threading.Barrier(len(prompts))

    def ask(prompt: str) -> tuple[str, str, list]:
        start.wait()
        chunks = list(client.chat.completions.create(
            model="demo", messages=user(prompt), tools=TOOLS, temperature=0, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        calls = [tc for d in deltas for tc in d.tool_calls or []]
        return "".join(d.content or "" for d in deltas), chunks[-1].choices[0].finish_reason, \
            calls

    before = demo_engine._batch.peak_batch if demo_engine._batch else 0
    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(ask, prompts))
    for prompt, (content, finish, calls) in zip(prompts, results, strict=True):
        script = SCRIPT[prompt]
        if script.tool is None:
            assert (content, finish) == (script.final, "stop"), prompt
        else:
            assert finish == "tool_calls" and calls[0].function.name == "get_weather"
    assert demo_engine._batch.peak_batch >= max(before, 4)  # they really shared steps


def test_chat_in_the_app_and_api_share_the_engine(client, demo_engine):
    from harmony_tui.demo.check import demo_setup

    with ThreadPoolExecutor(2) as pool:
        api = pool.submit(client.chat.completions.create, model="demo",
                          messages=user("Compare cats and dogs in a table."), temperature=0)
        app_turn = demo_engine.chat([Message("user", "Hello!")], demo_setup(),
                                    GenerationParams(temperature=0))
        assert api.result().choices[0].message.content == \
            SCRIPT["Compare cats and dogs in a table."].final
    assert app_turn.final == HELLO.final


def test_client_disconnect_cancels_generation(server, demo_engine):
    body = {"model": "demo", "messages": user("Hello!"), "stream": True, "max_tokens": 4000,
            "logit_bias": NO_STOP}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                      timeout=60) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        while "reasoning" not in next(lines):
            pass
        assert demo_engine._batch.running == 1
    # ~4000 tokens would take a minute: the cancel must land within a step or two
    wait_until(lambda: demo_engine._batch.running == 0, timeout=5, message="cancelled turn")
    wait_until(lambda: httpx.get(server.url + "/health").json()["running"] == 0, timeout=5)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra,param,needle", [
    ({"temperature": 9}, "temperature", "temperature=9"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"n": 2}, "n", "n=2 is not supported"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format", "not supported"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "robot"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].type", "'image_url' content is not supported"),
    ({"bogus_field": 1}, "bogus_field", "unrecognized request argument"),
    ({"logit_bias": {"999999999": 1}}, "logit_bias", "outside the vocabulary"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"tool_choice": "required", "tools": TOOLS}, "tool_choice", "not supported"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort", "extreme"),
])
def test_bad_fields_get_400_naming_the_field(server, extra, param, needle):
    body = {"model": "demo", "messages": user("Hello!"), **extra}
    response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert needle in error["message"] and "\n" not in error["message"]


def test_malformed_json_unknown_model_route_and_context_length(server, client):
    response = httpx.post(server.url + "/v1/chat/completions", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.chat.completions.create(model="gpt-5", messages=user("Hello!"))
    assert excinfo.value.code == "model_not_found" and "'gpt-5'" in excinfo.value.message
    response = httpx.get(server.url + "/v1/nothing/here")
    assert response.status_code == 404 and "unknown route" in response.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model="demo", messages=user("word " * 7000))
    assert excinfo.value.code == "context_length_exceeded"
    assert "context limit is 8192" in excinfo.value.message


class _FailingServer(EmbeddedServer):
    def app(self):
        app = super().app()

        @app.get("/v1/boom")
        async def boom():
            raise RuntimeError("secret internal detail")

        return app


def test_api_key_cors_queue_limit_and_500(demo_engine, server):
    keyed = _FailingServer(demo_engine, port=0, api_key="sekret", max_queue=1,
                           cors_origins=("http://localhost:3000",))
    keyed.start()
    try:
        base = keyed.url
        assert httpx.get(base + "/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
            response = httpx.get(base + "/v1/models", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["type"] == "authentication_error"
        assert httpx.get(base + "/openapi.json").status_code == 401
        auth = {"Authorization": "Bearer sekret"}
        schema = httpx.get(base + "/openapi.json", headers=auth).json()
        assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="nope", max_retries=0).models.list()
        assert openai.OpenAI(base_url=base + "/v1", api_key="sekret").models.list().data

        preflight = httpx.options(base + "/v1/chat/completions", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "access-control-allow-origin" not in httpx.options(
            server.url + "/v1/models", headers={"Origin": "http://localhost:3000",
                                                "Access-Control-Request-Method": "GET"}).headers

        failed = httpx.get(base + "/v1/boom", headers=auth)
        assert failed.status_code == 500
        assert "secret" not in failed.text and "Traceback" not in failed.text
        assert failed.json()["error"]["type"] == "server_error"

        body = {"model": "demo", "messages": user("Hello!"), "stream": True,
                "max_tokens": 4000, "logit_bias": NO_STOP}
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=auth,
                          timeout=60) as held:
            lines = held.iter_lines()  # keep a reference: dropping it closes the stream
            next(lines)
            busy = httpx.post(base + "/v1/chat/completions", headers=auth, json={
                "model": "demo", "messages": user("Hello!")})
            assert busy.status_code == 429
            assert busy.json()["error"]["code"] == "queue_full"
            assert busy.headers["retry-after"] == "1"
    finally:
        keyed.stop()
    wait_until(lambda: demo_engine._batch.running == 0, timeout=5, message="held turn cancelled")


def test_embedded_server_reports_a_taken_port(demo_engine, server):
    with pytest.raises(ServerError, match=r"cannot listen on 127\.0\.0\.1:\d+: the port is "
                                          r"already in use"):
        EmbeddedServer(demo_engine, port=server.port).start()
