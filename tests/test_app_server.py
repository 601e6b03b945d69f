"""The embedded API server: started from the app on the loaded model, requests listed live,
chat turns and API requests sharing the engine."""

from __future__ import annotations

import asyncio
import socket

import openai
from test_app import WIDE, make_app, ready, send, wait_for

from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.widgets.requests import RequestsPane

HELLO = SCRIPTS[0]
CODE = SCRIPTS[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_ctrl_g_serves_the_loaded_model_and_lists_requests(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("HARMONY_TUI_API_KEY", "secret")
    from harmony_tui.config.settings import Choices, resolve
    from harmony_tui.config.user_config import ServerSettings, UserConfig

    settings = resolve(Choices(params={"temperature": 0}),
                       UserConfig(server=ServerSettings(port=port)))
    app = make_app(settings=settings, chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.server is not None, what="the server to start")
        assert f"127.0.0.1:{port}/v1" in app.status.render().plain
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="secret",
                                    max_retries=0, timeout=60)
        # an API request and a chat turn at the same time, each gets its own answer
        api = asyncio.create_task(client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": CODE.prompt}]))
        await send(pilot, HELLO.prompt)
        reply = await api
        assert reply.choices[0].message.content == CODE.final
        assert app.conversation.last_assistant().answer == HELLO.final
        pane = app.query_one(RequestsPane)
        await wait_for(pilot, lambda: any(r.state == "done" for r in pane.records.values()),
                       what="the request row to finish")
        row = next(r for r in pane.records.values() if r.endpoint == "/v1/chat/completions")
        assert row.status == 200 and row.generated_tokens == reply.usage.completion_tokens
        assert pane.display
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.server is None, what="the server to stop")
        await client.close()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                raise AssertionError("the port still accepts connections")
        except OSError:
            pass


async def test_a_taken_port_is_reported_and_the_app_goes_on(tmp_path):
    from harmony_tui.config.settings import Choices, resolve
    from harmony_tui.config.user_config import ServerSettings, UserConfig

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = resolve(Choices(), UserConfig(server=ServerSettings(port=port)))
        app = make_app(settings=settings, chats_dir=tmp_path)
        async with app.run_test(size=WIDE) as pilot:
            await ready(pilot)
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: any("API server not started" in n.message
                                              for n in app._notifications),
                           what="the error notification")
            assert app.server is None


async def test_the_port_flag_reaches_the_embedded_server(tmp_path, monkeypatch):
    """``harmony-tui --port N`` then Ctrl+G serves on N, over the user config's port."""
    from harmony_tui import cli
    from harmony_tui.app import HarmonyApp
    from harmony_tui.config.settings import Choices, resolve
    from harmony_tui.config.user_config import ServerSettings, UserConfig
    from harmony_tui.server.cli_args import server_options

    flag_port, config_port = free_port(), free_port()
    args = cli.build_parser().parse_args(["--port", str(flag_port)])
    user = UserConfig(server=ServerSettings(port=config_port))
    # the options cmd_app computes and hands to the app (checked below on the real cmd_app)
    settings = resolve(Choices(params={"temperature": 0}), user)
    app = make_app(settings=settings, chats_dir=tmp_path,
                   server_options=server_options(args, user.server))
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.server is not None, what="the server to start")
        assert f"127.0.0.1:{flag_port}/v1" in app.status.server_url
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.server is None, what="the server to stop")

    # cmd_app passes the flags on: the terminal app itself cannot run inside pytest, so its
    # run() is replaced by one that records what the app was given (a stand-in, said here)
    seen = {}
    monkeypatch.setattr(HarmonyApp, "run", lambda self: seen.update(self.server_options))
    monkeypatch.setenv("HARMONY_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HARMONY_TUI_DATA_DIR", str(tmp_path / "data"))
    cli.main(["--port", str(flag_port)])
    assert seen["port"] == flag_port
