"""Shared fixtures: isolated user dirs, no network, tiny real models and the demo model."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Every test run gets its own user dirs and never touches the network or the real HF cache.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="harmony-tui-tests-"))
os.environ["HARMONY_TUI_CACHE_DIR"] = str(_SESSION_HOME / "cache")
os.environ["HARMONY_TUI_CONFIG_DIR"] = str(_SESSION_HOME / "config")
os.environ["HARMONY_TUI_DATA_DIR"] = str(_SESSION_HOME / "data")
os.environ["HF_HOME"] = str(_SESSION_HOME / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("TIKTOKEN_ENCODINGS_BASE", None)

sys.path.insert(0, str(Path(__file__).parent))


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.01,
               message: str = "condition") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def tiny_gpt_oss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_gpt_oss

    return build_tiny_gpt_oss(tmp_path_factory.mktemp("models") / "tiny-gpt-oss")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def gpt_oss_engine(tiny_gpt_oss: Path):
    from harmony_tui.engine.engine import Engine

    engine = Engine.start(str(tiny_gpt_oss))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def llama_engine(tiny_llama: Path):
    from harmony_tui.engine.engine import Engine

    engine = Engine.start(str(tiny_llama))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def demo_engine():
    from harmony_tui.engine.engine import Engine

    engine = Engine.start("demo")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def harmony_format():
    from harmony_tui.engine.formats.harmony import HarmonyFormat

    return HarmonyFormat()
