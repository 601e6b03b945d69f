"""The command line's shared flags and the run's settings from them.

The flags of every command (model, prompt config, tools, every ``GenerationParams`` field) and
``resolve_settings``, the precedence of the run's settings: command line > resumed chat >
profile > prompt config > user config > defaults. Used by ``cli.py`` and the server's command
line (``server/cli_args.py``), so neither front end imports the other.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, get_args

PROG = "harmony-tui"
BACKENDS = ("mlx", "openai")
REMOTE_KEY_ENV = "HARMONY_TUI_REMOTE_API_KEY"


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (no usage dump), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    """The generation flags shared by every command, generated from ``GenerationParams``.

    Defaults are suppressed so a flag given before the command survives the sub-parser.
    """
    from harmony_tui.engine.params import cli_fields

    group = parser.add_argument_group("generation settings")
    for name, info in cli_fields().items():
        flag = "--" + name.replace("_", "-")
        choices = None
        kind: Any = info.annotation
        args = [a for a in get_args(kind) if a is not type(None)]
        if args and all(isinstance(a, str) for a in args):
            choices, kind = args, str
        elif args:
            kind = args[0]
        if name == "reasoning_effort":
            choices, kind = ["low", "medium", "high"], str
        default = info.default
        description = info.description or ""
        help_text = description if "(default:" in description or "(none:" in description \
            else f"{description} (default: {default if default is not None else 'none'})"
        metavar = (info.json_schema_extra or {}).get("metavar")  # type: ignore[union-attr]
        group.add_argument(flag, dest=name, type=kind, choices=choices, default=argparse.SUPPRESS,
                           metavar=None if choices else metavar or kind.__name__.upper(),
                           help=help_text)


def add_model_flags(parser: argparse.ArgumentParser, api_key: bool = True,
                    remote: bool = True) -> None:
    """Model, prompt config, profile, chat, tool and remote-engine flags. ``api_key`` False
    leaves ``--api-key`` to a parser that already has it (the top level's, from ``--serve``);
    ``remote`` False leaves out the remote engine's flags (the API server serves a local
    model)."""
    parser.add_argument("--model", "-m", default=argparse.SUPPRESS,
                        help="a model folder, a Hugging Face repo id (owner/name) or 'demo' "
                        "(default: demo)")
    parser.add_argument("--models-dir", type=Path, default=argparse.SUPPRESS,
                        help="folder searched for model names (default: ./models)")
    parser.add_argument("--prompt-config", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="JSON or YAML prompt config (instructions, identity, settings)")
    parser.add_argument("--profile", default=argparse.SUPPRESS, metavar="NAME",
                        help="a profile (model + prompt config) from the profiles file")
    parser.add_argument("--profiles-file", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="profiles file (default: profiles.yaml in the config dir)")
    parser.add_argument("--chat", type=chat_arg, default=argparse.SUPPRESS, metavar="NAME",
                        help="create or resume the saved chat chats_dir/NAME.json")
    if remote:
        _add_remote_flags(parser, api_key)
    tools = parser.add_argument_group("tools")
    tools.add_argument("--python", action="store_true", default=argparse.SUPPRESS,
                       help="let the model run Python code (in a separate process)")
    tools.add_argument("--browser", action="store_true", default=argparse.SUPPRESS,
                       help="let the model search and read the web")
    tools.add_argument("--apply-patch", action="store_true", default=argparse.SUPPRESS,
                       help="let the model edit files under the current folder")


def _add_remote_flags(parser: argparse.ArgumentParser, api_key: bool) -> None:
    remote = parser.add_argument_group("remote engine (docs/remote.md)")
    remote.add_argument("--backend", choices=BACKENDS, default=argparse.SUPPRESS,
                        help="mlx: run the model here (default); openai: use the model of an "
                        "OpenAI-compatible server at --base-url")
    remote.add_argument("--base-url", default=argparse.SUPPRESS, metavar="URL",
                        help="the remote server's API root, e.g. http://gpu-box:8000/v1")
    if api_key:
        remote.add_argument("--api-key", default=argparse.SUPPRESS, metavar="KEY",
                            help=f"the remote server's API key (prefer ${REMOTE_KEY_ENV}: a "
                            "command line is visible to other users)")
    remote.add_argument("--remote-timeout", type=float, default=argparse.SUPPRESS,
                        metavar="SECONDS", help="give up on a remote that sends nothing for "
                        "this long (default: 300)")


# --flag -> voice settings field (the voice: section of the configs; these override it)
VOICE_FLAGS = {
    "stt_model": ("--stt-model", str, "speech-to-text model: a faster-whisper size, repo id or "
                  "folder"),
    "stt_engine": ("--stt-engine", str, "faster-whisper or mlx-audio"),
    "tts_engine": ("--tts-engine", str, "auto, piper, espeak-ng, say or kokoro"),
    "tts_voice": ("--tts-voice", str, "a piper .onnx voice (file or name) or an engine's voice"),
    "rate": ("--speech-rate", float, "speaking speed, 0.5 to 2 (1 normal)"),
    "input_device": ("--input-device", str, "microphone: index or part of its name"),
    "output_device": ("--output-device", str, "loudspeaker: index or part of its name"),
    "silence_seconds": ("--silence-seconds", float, "trailing silence that ends listening"),
    "max_seconds": ("--max-listen-seconds", float, "listening stops after this long"),
}


def add_voice_flags(parser: argparse.ArgumentParser) -> None:
    """Overrides of the ``voice:`` settings (see docs/voice.md)."""
    group = parser.add_argument_group("voice")
    for name, (option, kind, text) in VOICE_FLAGS.items():
        group.add_argument(option, dest=f"voice_{name}", type=kind, default=argparse.SUPPRESS,
                           metavar=kind.__name__.upper(), help=text)
    group.add_argument("--confirm-transcript", dest="voice_confirm", action="store_true",
                       default=argparse.SUPPRESS,
                       help="put what was heard in the prompt to edit before sending")
    group.add_argument("--no-speak", dest="voice_speak_answers", action="store_false",
                       default=argparse.SUPPRESS, help="do not speak the answers")


def voice_settings(args: argparse.Namespace, settings: Any) -> Any:
    """The voice settings of the run: user config < prompt config < command line.
    Raises ConfigError (one line naming the flag) for a bad value."""
    from pydantic import ValidationError

    from harmony_tui.errors import ConfigError
    from harmony_tui.voice.settings import merge_voice

    given = {name: getattr(args, f"voice_{name}") for name in
             [*VOICE_FLAGS, "confirm", "speak_answers"] if hasattr(args, f"voice_{name}")}
    try:
        return merge_voice(settings.user.voice, settings.prompt.voice, given)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "voice"
        option = VOICE_FLAGS.get(name, (f"--{name.replace('_', '-')}",))[0]
        raise ConfigError(f"{option}: {first.get('input')!r}: {first['msg']}") from None


def chat_arg(value: str) -> str:
    """``--chat``: a plain file name (no folders, control characters, over-long names)."""
    from harmony_tui.errors import ChatFileError
    from harmony_tui.sessions.store import chat_name

    try:
        chat_name(value, "name")
    except ChatFileError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return value


def flag(args: argparse.Namespace, name: str) -> Any:
    """A flag given before or after the command (the later one wins)."""
    return getattr(args, name, None)


def resolve_settings(args: argparse.Namespace, *, warn: bool = True, read_chat: bool = True):
    """The run's settings: command line > resumed chat > profile > prompt config > user config
    > defaults. Warnings go to stderr."""
    from harmony_tui.config.settings import Choices, resolve
    from harmony_tui.config.user_config import load_user_config
    from harmony_tui.engine.params import cli_fields

    user, warnings = load_user_config()
    choices = Choices(
        model=flag(args, "model"), models_dir=flag(args, "models_dir"),
        profile=flag(args, "profile"), profiles_file=flag(args, "profiles_file"),
        prompt_config=flag(args, "prompt_config"), chat=flag(args, "chat"),
        params={name: flag(args, name) for name in cli_fields()},
        backend=flag(args, "backend"), base_url=flag(args, "base_url"),
        api_key=flag(args, "api_key") or os.environ.get(REMOTE_KEY_ENV) or None,
        remote_timeout=flag(args, "remote_timeout"))
    settings = resolve(choices, user, read_existing_chat=read_chat)
    settings.voice = voice_settings(args, settings)
    if warn:
        for warning in warnings + settings.warnings:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return settings


def resolve_and_lock_chat(args: argparse.Namespace):
    """The run's settings and the lock of its ``--chat`` file (None without ``--chat``).

    The chat is read only once this process holds its lock, so no other process can write it
    in between. Raises ``ChatLockedError`` when another process has the chat open.
    """
    from harmony_tui.sessions.lock import ChatLock

    settings = resolve_settings(args, read_chat=False)
    if settings.chat_path is None:
        return settings, None
    lock = ChatLock.acquire(settings.chat_path)
    try:
        return resolve_settings(args, warn=False), lock
    except BaseException:
        lock.release()
        raise
