"""The log file (``logs_dir/harmony-tui.log``): model loads, turns, tool calls and errors.

Nothing is logged to the terminal (it belongs to the app). Without ``logs_dir`` nothing is
written.
"""

from __future__ import annotations

import logging
from pathlib import Path

LOG_NAME = "harmony-tui.log"
logger = logging.getLogger("harmony_tui")


def configure_file_log(logs_dir: Path | None) -> Path | None:
    """Send harmony-tui's log records to ``logs_dir``; returns the file (None: no logging)."""
    if logs_dir is None:
        return None
    path = Path(logs_dir).expanduser() / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return path
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return path
