"""The ``harmony-tui`` command line.

Heavy modules (mlx, mlx_lm, textual) are imported inside the command handlers, so ``--help`` and
argument errors answer at once. User mistakes end with one ``harmony-tui: error: ...`` line and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harmony_tui import __version__
from harmony_tui.config.command_line import (
    PROG,
    OneLineParser,
    add_model_flags,
    add_sampling_flags,
    add_voice_flags,
    flag,
    resolve_and_lock_chat,
    resolve_settings,
)
from harmony_tui.errors import HarmonyTuiError
from harmony_tui.exit_signals import Terminated, quiet_lost_output
from harmony_tui.progress import ProgressPrinter


class UsageError(HarmonyTuiError):
    """A command-line mistake."""


# -- arguments ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        # no abbreviations: "generate --prompt" would be an ambiguous prefix of the top level's
        # --prompt-config / --prompt-lookup
        allow_abbrev=False,
        description="Run local LLMs with MLX; native Harmony for GPT-OSS.",
        epilog="Without a command, the terminal app starts on the model (default: the built-in "
        "demo); with --serve, an OpenAI-compatible API server instead. Commands: generate "
        "(one answer, streamed to stdout), migrate-chat (convert "
        "mlx-harmony chat logs), demo-model (build it or list its prompts), mic-check (test the "
        "microphone for voice), voice (push to talk in this terminal).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--no-markdown", action="store_true",
                        help="show answers as plain text instead of Markdown")
    parser.add_argument("--voice", action="store_true",
                        help="start with push-to-talk voice on (Ctrl+Space listens)")
    parser.add_argument("--web", action="store_true",
                        help="serve the app to a web browser (textual-serve) at "
                        "http://127.0.0.1:8000 (--host, --port; another host needs --insecure)")
    add_model_flags(parser, api_key=False)  # --api-key comes with the server's flags
    add_sampling_flags(parser)
    add_voice_flags(parser)
    from harmony_tui.server.cli_args import add_serve_arguments

    add_serve_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    gen = sub.add_parser("generate", help="answer one prompt and exit",
                         description="Stream the final answer to stdout as it is generated.")
    gen.add_argument("--prompt", "-p", required=True,
                     help="the user message; '-' reads it from standard input")
    gen.add_argument("--show-thinking", action="store_true",
                     help="stream the model's analysis to standard error")
    gen.add_argument("--json", action="store_true",
                     help="print one JSON object: final, analysis, tool_calls, stats")
    add_model_flags(gen)
    add_sampling_flags(gen)

    migrate = sub.add_parser("migrate-chat", help="convert a chat log to the current schema",
                             description="Convert an mlx-harmony chat log (v1 or v2) or an older "
                             "harmony-tui chat to the current schema. Without --in-place or "
                             "--output the result goes to standard output.")
    migrate.add_argument("file", type=Path, metavar="FILE", help="the chat log to convert")
    where = migrate.add_mutually_exclusive_group()
    where.add_argument("--in-place", action="store_true",
                       help="replace FILE (the original is kept as FILE.bak)")
    where.add_argument("--output", "-o", type=Path, default=None, metavar="OUT",
                       help="write the converted chat to OUT (must not exist)")

    demo = sub.add_parser("demo-model", help="the built-in demo model")
    demo_sub = demo.add_subparsers(dest="demo_command", metavar="ACTION", required=True,
                                   parser_class=OneLineParser)
    build = demo_sub.add_parser("build", help="train the demo model from scratch",
                                description="Train the demo model with our own code "
                                "(deterministic for a seed) and write a model folder.")
    build.add_argument("--output", type=Path, default=None, metavar="DIR",
                       help="model folder to write (default: the user cache, used by --model "
                       "demo)")
    build.add_argument("--seed", type=int, default=None, help="training seed (default: 0)")
    build.add_argument("--steps", type=int, default=None, help="training steps")
    build.add_argument("--examples", type=int, default=None, metavar="N",
                       help="training sequences to draw (default: 768, or 1500 with --init)")
    build.add_argument("--init", type=Path, default=None, metavar="FILE",
                       help="continue training these compact weights (a demo.safetensors) on "
                       "today's corpus instead of starting from random weights")
    build.add_argument("--stop-after", type=int, default=None, metavar="N",
                       help="stop after N steps (the learning-rate schedule stays that of "
                       "--steps)")
    demo_sub.add_parser("prompts", help="print the documented prompts as JSON lines")
    check = demo_sub.add_parser(
        "check", help="replay the documented prompts, alone and in random long chats",
        description="Replay every documented prompt in a fresh chat (greedy), then run random "
        "chats of documented prompts (with repeats, unknown prompts and long pastes) with the "
        "default sampling and report the share answered as documented. Exit status 1 below "
        "--goal.")
    check.add_argument("--model", default="demo", help="demo model name or folder (default: "
                       "demo)")
    check.add_argument("--chats", type=int, default=20, help="random chats (default: 20)")
    check.add_argument("--turns", type=int, default=30, help="prompts per chat (default: 30)")
    check.add_argument("--seed", type=int, default=0, help="seed of the chats (default: 0)")
    check.add_argument("--goal", type=float, default=0.95,
                       help="least share of right answers in the chats (default: 0.95)")

    from harmony_tui.voice import mic_check

    mic = sub.add_parser("mic-check", help="list audio devices and show a live input level",
                         description="Check the microphone for voice: list the audio devices "
                         "and show the input level live.")
    mic_check.add_arguments(mic)

    talk = sub.add_parser("voice", help="a push-to-talk conversation in this terminal",
                          description="Enter starts listening (the trailing silence or Enter "
                          "ends it); the answer is printed and spoken. Enter while it speaks "
                          "stops the speech, Ctrl+C stops the answer, Ctrl+D quits.")
    talk.add_argument("--input-wav", type=Path, default=None, metavar="FILE",
                      help="use a WAV file as the microphone (no sound card needed)")
    talk.add_argument("--output-wav", type=Path, default=None, metavar="FILE",
                      help="write what is spoken to a WAV file instead of the loudspeaker")
    add_model_flags(talk)
    add_sampling_flags(talk)
    add_voice_flags(talk)
    return parser


# -- commands ----------------------------------------------------------------------------------


def read_prompt(value: str) -> str:
    text = sys.stdin.read() if value == "-" else value
    if not text.strip():
        raise UsageError("--prompt: the prompt is empty" + (" (standard input was empty)"
                                                             if value == "-" else ""))
    return text


def cmd_generate(args: argparse.Namespace) -> int:
    from harmony_tui.errors import ChatFileError
    from harmony_tui.oneshot import run_generate

    try:  # the chat first: a chat that is open elsewhere or unreadable fails at once
        settings, lock = resolve_and_lock_chat(args)
    except ChatFileError as err:
        raise ChatFileError(f"{err} (the file was left untouched; --chat with another name "
                            "starts a new chat)") from err
    try:
        prompt = read_prompt(args.prompt)
        return run_generate(settings, prompt, json_mode=args.json,
                            show_thinking=args.show_thinking, flagged=tool_flags(args),
                            progress=ProgressPrinter(), prog=PROG, lock=lock)
    finally:
        if lock is not None:
            lock.release()


def tool_flags(args: argparse.Namespace) -> set[str]:
    return {name for name in ("python", "browser", "apply_patch") if flag(args, name)}


def cmd_migrate_chat(args: argparse.Namespace) -> int:
    import shutil

    from harmony_tui import paths
    from harmony_tui.sessions.migrate import migrate
    from harmony_tui.sessions.store import dump_chat, read_json

    source: Path = args.file
    data = read_json(source)
    log, changed = migrate(data, str(source))
    text = dump_chat(log)
    if args.in_place:
        if not changed:
            print(f"{source}: already in the current schema; nothing changed", file=sys.stderr)
            return 0
        backup = source.with_name(source.name + ".bak")
        n = 1
        while backup.exists():
            backup = source.with_name(f"{source.name}.bak{n}")
            n += 1
        shutil.copy2(source, backup)
        paths.atomic_write_text(source, text)
        print(f"{source}: converted ({len(log.messages)} messages); original kept as {backup}",
              file=sys.stderr)
    elif args.output is not None:
        if args.output.exists():
            raise UsageError(f"--output {args.output}: the file exists; choose a new name")
        paths.atomic_write_text(args.output, text)
        print(f"{args.output}: written ({len(log.messages)} messages)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo_model(args: argparse.Namespace) -> int:
    if args.demo_command == "prompts":
        from harmony_tui.demo.corpus import prompts_catalog

        for entry in prompts_catalog():
            print(json.dumps(entry, ensure_ascii=False))
        return 0
    if args.demo_command == "check":
        return cmd_demo_check(args)
    return cmd_demo_build(args)


def cmd_demo_check(args: argparse.Namespace) -> int:
    """``demo-model check``: documented prompts alone, then in random long chats."""
    import time

    from harmony_tui.demo.check import chat_check, check_demo
    from harmony_tui.engine.engine import Engine

    if args.chats < 0 or args.turns < 1 or args.seed < 0:
        raise UsageError("--chats must be >= 0, --turns >= 1 and --seed >= 0")
    engine = Engine.start(args.model)
    try:
        started = time.perf_counter()
        singles = check_demo(engine)
        for result in singles:
            print(f"{'ok  ' if result.ok else 'FAIL'} {result.prompt}"
                  + ("" if result.ok else f": {result.detail}"))
        chats = chat_check(engine, args.chats, args.turns, args.seed,
                           lambda done, total: print(f"chat {done}/{total}", file=sys.stderr,
                                                     flush=True))
    finally:
        engine.close()
    for chat, turn, prompt, got in chats.failures:
        print(f"FAIL chat {chat} turn {turn + 1}: {prompt!r} -> {got}")
    print(f"{chats.correct}/{chats.asked} documented prompts answered as documented "
          f"({chats.share:.1%}) in {chats.chats} random {chats.turns}-turn chats, "
          f"{time.perf_counter() - started:.0f} s")
    return 0 if all(r.ok for r in singles) and chats.share >= args.goal else 1


def cmd_demo_build(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile

    from harmony_tui.demo.build import build_compact, demo_root, expand, file_digest
    from harmony_tui.demo.train import TrainConfig

    config = TrainConfig()
    changes = {k: v for k, v in (("seed", args.seed), ("steps", args.steps),
                                 ("examples", args.examples)) if v is not None}
    if any(v < (0 if k == "seed" else 1) for k, v in changes.items()) or \
            (args.stop_after is not None and args.stop_after < 1):
        raise UsageError("--steps, --examples and --stop-after must be >= 1 and --seed >= 0")
    if args.init is not None:
        from harmony_tui.demo.build import read_compact

        try:
            read_compact(args.init)
        except ValueError as err:
            raise UsageError(f"--init: {err}") from None
        config = config.continued(args.steps or 220)
    config = dataclasses.replace(config, **changes)
    progress = ProgressPrinter()
    with tempfile.TemporaryDirectory() as tmp:
        compact = build_compact(config, Path(tmp) / "demo-compact.safetensors", progress,
                                args.init, args.stop_after)
        target = args.output or demo_root() / file_digest(compact)
        expand(compact, target)
    progress.done()
    print(f"demo model written to {target}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Start the terminal app."""
    from harmony_tui.errors import ChatFileError
    from harmony_tui.sessions.store import free_path

    notice = lock = None
    try:
        settings, lock = resolve_and_lock_chat(args)  # another process has it: exit 2
    except ChatFileError as err:
        # A chat file that cannot be read is left alone; the app starts a new chat beside it.
        args_copy = argparse.Namespace(**vars(args))
        del args_copy.chat
        settings = resolve_settings(args_copy, warn=False)
        from harmony_tui.sessions.store import chat_path

        broken = chat_path(args.chat, settings.chats_dir)
        settings.chat_path = free_path(broken)
        notice = f"{err} — it was left untouched; this chat is saved as {settings.chat_path.name}"
        print(f"{PROG}: warning: {notice}", file=sys.stderr)
    user = settings.user
    from harmony_tui.server.cli_args import server_options

    # the embedded server (Ctrl+G) takes --host, --port, --api-key ... as --serve does
    served = server_options(args, user.server)

    from harmony_tui.app import HarmonyApp

    app = HarmonyApp(settings.model, models_dir=settings.models_dir, params=settings.params,
                     settings=settings, markdown=user.markdown and not args.no_markdown,
                     keymap=user.keymap, theme=user.theme, startup_notice=notice,
                     tools=settings.prompt.tools.with_flags(
                         **{name: True for name in tool_flags(args)}), chat_lock=lock,
                     voice=bool(getattr(args, "voice", False)), server_options=served)
    try:
        app.run()
    finally:
        app.session.release()
    if app.session.unsaved:  # the last saves failed (disk full ...): never lose the words
        where = app.session.rescue()
        if app.session.unsaved:
            print(f"{PROG}: warning: {where}", file=sys.stderr)
            return app.return_code or 2
    return app.return_code or 0  # 128 + N after signal N (SIGTERM, SIGHUP): the turn was saved


def cmd_voice(args: argparse.Namespace) -> int:
    """``harmony-tui voice``: push to talk in this terminal."""
    from harmony_tui.voice_loop import run_voice

    if args.input_wav is not None:  # a bad file is said before the model loads
        from harmony_tui.voice.audio_io import WavFileSource

        if not args.input_wav.is_file():
            raise UsageError(f"--input-wav: {args.input_wav}: no such file")
        WavFileSource(args.input_wav)
    settings, lock = resolve_and_lock_chat(args)
    try:
        return run_voice(settings, input_wav=args.input_wav, output_wav=args.output_wav,
                         progress=ProgressPrinter(), prog=PROG, lock=lock)
    finally:
        if lock is not None:
            lock.release()


def cmd_mic_check(args: argparse.Namespace) -> int:
    from harmony_tui.voice.mic_check import main as mic_check_main

    return mic_check_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"generate": cmd_generate, "demo-model": cmd_demo_model,
                "migrate-chat": cmd_migrate_chat, "mic-check": cmd_mic_check,
                "voice": cmd_voice}
    if getattr(args, "web", False) and args.command is None:
        if getattr(args, "serve", False):
            print(f"{PROG}: error: --web and --serve cannot be combined (the app in the "
                  "browser can start the API server with Ctrl+G)", file=sys.stderr)
            return 2
        from harmony_tui.web import run_web

        raw = list(sys.argv[1:] if argv is None else argv)
        handlers[None] = lambda a: run_web(raw, a.host, a.port, bool(a.insecure))
    if getattr(args, "serve", False) and args.command is None:
        from harmony_tui.server.cli_args import run_serve

        if flag(args, "backend") == "openai":
            print(f"{PROG}: error: --serve serves a model loaded here; --backend openai is for "
                  "the app, generate and voice (see docs/remote.md)", file=sys.stderr)
            return 2

        handlers[None] = run_serve
    try:
        from harmony_tui.distributed_cli import start as start_distributed

        status = start_distributed(args)  # under mlx.launch: only rank 0 goes on
        if status is not None:
            return status
        return handlers.get(args.command, cmd_app)(args)
    except HarmonyTuiError as err:
        sys.stdout.flush()
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except Terminated as err:  # SIGTERM or SIGHUP during generate (the partial turn is saved)
        with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP)
            print(f"\n{PROG}: stopped by {err}", file=sys.stderr)
        quiet_lost_output()
        return err.exit_code
    except BrokenPipeError:
        return 0
