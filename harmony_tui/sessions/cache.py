"""A chat's prompt cache on disk: loaded when the chat is resumed, saved when it is left, so a
resumed chat answers without re-reading its history (issue 16 item 4).

The engine writes and reads the file (``Engine.save_prompt_cache`` / ``load_prompt_cache``);
this module only decides where (``store.prompt_cache_path``) and when. An engine without these
methods (a remote one) or without a model is skipped; a failure only costs the speed-up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from harmony_tui.logs import logger
from harmony_tui.sessions.store import PROMPT_CACHE_MAX_BYTES, prompt_cache_path


def _usable(engine: Any, chat: Path | None, method: str) -> bool:
    return chat is not None and hasattr(engine, method) and getattr(engine, "model", None) \
        is not None


async def load_chat_cache(engine: Any, chat: Path | None) -> int:
    """Hand the engine ``chat``'s saved prompt cache; the tokens it covers (0: none)."""
    if not _usable(engine, chat, "load_prompt_cache"):
        return 0
    assert chat is not None
    try:
        tokens = await asyncio.wrap_future(engine.load_prompt_cache(prompt_cache_path(chat)))
    except Exception as err:
        logger.warning("prompt cache of %s not loaded: %s", chat.name, err)
        return 0
    if tokens:
        logger.info("prompt cache of %s: %d tokens reused", chat.name, tokens)
    return int(tokens)


async def save_chat_cache(engine: Any, chat: Path | None, timeout: float = 60.0) -> int:
    """Save the engine's newest prompt cache as ``chat``'s; bytes written (0: none)."""
    if not _usable(engine, chat, "save_prompt_cache") or not chat.exists():  # type: ignore[union-attr]
        return 0
    assert chat is not None
    try:
        future = engine.save_prompt_cache(prompt_cache_path(chat), PROMPT_CACHE_MAX_BYTES)
        return int(await asyncio.wait_for(asyncio.wrap_future(future), timeout))
    except Exception as err:
        logger.warning("prompt cache of %s not saved: %s", chat.name, err)
        return 0
