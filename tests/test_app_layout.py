"""The layout adapts: to the terminal's width at start and on every resize, with a reading
width for the conversation, a side column that grows, and the stream still followed."""

from __future__ import annotations

from test_app import make_app, ready, start_streaming, wait_for


async def test_resizing_narrow_hides_the_side_column_and_wide_shows_it_again():
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await ready(pilot)
        side = app.query_one("#side")
        assert side.display and side.size.width >= 60  # the side column grows when wide
        await pilot.resize_terminal(60, 24)
        await pilot.pause()
        assert not side.display and app.conversation.size.width >= 55
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert side.display


async def test_messages_keep_a_reading_width_on_a_wide_terminal():
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await ready(pilot)
        note = app.conversation.children[-1]
        assert note.size.width <= 110


async def test_the_conversation_follows_the_stream_across_a_resize(tiny_gpt_oss):
    from test_app import endless

    app = make_app(str(tiny_gpt_oss), params=endless(3))
    async with app.run_test(size=(120, 40)) as pilot:
        await start_streaming(pilot)
        view = app.conversation
        await wait_for(pilot, lambda: view.max_scroll_y > 5, what="the answer to fill the view")
        for size in ((90, 30), (160, 50), (120, 40)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
        height = view.max_scroll_y
        await wait_for(pilot, lambda: view.max_scroll_y > height + 3, what="more text")
        await pilot.pause(0.5)
        assert view.scroll_y >= view.max_scroll_y - 2  # still at the bottom, following
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.turn is None, what="the stop")


async def test_the_requests_pane_shows_every_column_at_120(tmp_path):
    from harmony_tui.widgets.requests import RequestsPane

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f12")
        await pilot.pause()
        pane = app.query_one(RequestsPane)
        needed = sum(column.get_render_width(pane) for column in pane.columns.values())
        assert needed <= pane.scrollable_content_region.width, (needed, pane.size)


async def test_the_status_bar_drops_figures_before_the_api_address():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        status = app.status
        status.server_url = "http://127.0.0.1:8000/v1"
        status.prompt_tokens, status.cached_tokens, status.generated = 1234, 1000, 456
        status.ttft, status.tps, status.peak_gb, status.context_limit = 0.05, 60.0, 0.12, 8192
        for width in (120, 80):
            await pilot.resize_terminal(width, 30)
            await pilot.pause()
            shown = str(status.render())
            assert "API http://127.0.0.1:8000/v1" in shown and "demo" in shown, shown
            assert len(shown) <= width - 2
        assert "peak" not in shown and "TTFT" not in shown  # the figures went first
