"""Where harmony-tui keeps its files (platformdirs), with environment overrides for tests.

``HARMONY_TUI_CONFIG_DIR``, ``HARMONY_TUI_DATA_DIR`` and ``HARMONY_TUI_CACHE_DIR`` replace the
platform defaults when set.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

APP_NAME = "harmony-tui"


def _dirs():
    from platformdirs import PlatformDirs

    return PlatformDirs(APP_NAME, appauthor=False)


def _from_env(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else Path(default)


def config_dir() -> Path:
    """User config directory (config.yaml, keymap, profiles)."""
    return _from_env("HARMONY_TUI_CONFIG_DIR", _dirs().user_config_dir)


def data_dir() -> Path:
    """User data directory (chats, logs)."""
    return _from_env("HARMONY_TUI_DATA_DIR", _dirs().user_data_dir)


def cache_dir() -> Path:
    """User cache directory (vocabulary file, the built demo model)."""
    return _from_env("HARMONY_TUI_CACHE_DIR", _dirs().user_cache_dir)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
