"""The live API requests of the embedded server: one row per request, updated as it runs."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from textual.widgets import DataTable

REQUESTS_HELP = """\
Requests to the embedded OpenAI-compatible server (Ctrl+G starts and stops it): time, endpoint,
model, prompt tokens (in), generated tokens (out), speed and status. Running requests update
live; the log file has every request in full.
"""
MAX_ROWS = 200
WIDTH = 68  # columns the pane needs to show every column (the side column makes room)


def short_endpoint(path: str) -> str:
    """``/v1/chat/completions`` -> ``chat``: the pane is narrow."""
    return path.removeprefix("/v1").strip("/").replace("chat/completions", "chat")[:11]


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class RequestsPane(DataTable):
    """Newest request at the bottom; keeps the last ``MAX_ROWS``."""

    HELP = REQUESTS_HELP
    DEFAULT_CLASSES = "pane"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.border_title = "API requests"
        self.records: dict[int, Any] = {}

    def on_mount(self) -> None:
        self.add_columns("time", "endpoint", "model", "in", "out", "tok/s", "status")

    def show(self, record: Any) -> None:
        """Add or update the row of ``record`` (a ``RequestRecord``)."""
        key = str(record.id)
        stamp = _dt.datetime.fromtimestamp(record.time).strftime("%H:%M:%S")
        status = record.state if record.status is None else f"{record.status} {record.state}"
        cells = (stamp, short_endpoint(record.endpoint), clip(record.model or "", 10),
                 str(record.prompt_tokens), str(record.generated_tokens),
                 f"{record.tokens_per_s:.1f}" if record.tokens_per_s else "", clip(status, 9))
        if record.id in self.records:
            for column, value in zip(self.columns, cells, strict=False):
                self.update_cell(key, column, value)
        else:
            self.add_row(*cells, key=key)
            if self.row_count > MAX_ROWS:
                oldest = next(iter(self.records))
                self.remove_row(str(oldest))
                del self.records[oldest]
            self.move_cursor(row=self.row_count - 1)
        self.records[record.id] = record
