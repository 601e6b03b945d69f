"""The command line under ``mlx.launch``: rank 0 runs the command, the other ranks follow.

``mlx.launch ... -- harmony-tui [--serve | generate ...]`` starts the same command on every rank.
Rank 0 goes on as a single process would (its engine leads, see ``engine/distributed.py``);
every other rank loads its shard of the same model and runs only the engine, with no UI, HTTP
server, tools or chat files, until rank 0 stops or is lost.
"""

from __future__ import annotations

import argparse

from harmony_tui.engine import distributed
from harmony_tui.errors import HarmonyTuiError

SINGLE_PROCESS = {"migrate-chat", "demo-model", "mic-check", "voice"}


def start(args: argparse.Namespace) -> int | None:
    """Join the group this process was launched into: None to run the command here (a single
    process, or rank 0), else the exit status of a follower rank that has finished."""
    info = distributed.init()
    if info is None:
        return None
    command = getattr(args, "command", None)
    if command in SINGLE_PROCESS or getattr(args, "web", False):
        what = f"'{command}'" if command else "--web"
        raise HarmonyTuiError(f"{what} runs in one process: start it without mlx.launch "
                              f"(this is {info.describe()})")
    if getattr(args, "backend", None) == "openai":
        raise HarmonyTuiError("--backend openai uses a remote server: start it without "
                              "mlx.launch")
    if info.leader:
        return None
    return follow(args)


def follow(args: argparse.Namespace) -> int:
    """A follower rank: load this rank's shard and repeat rank 0's turns until it stops."""
    from harmony_tui.config.command_line import resolve_settings
    from harmony_tui.engine.engine import Engine

    settings = resolve_settings(args, warn=False, read_chat=False)  # never opens a chat file
    engine = Engine.start(settings.model or "demo", models_dir=settings.models_dir)
    engine._job(lambda: distributed.follow(engine)).result()
    return 0
