"""``harmony-tui mic-check``: list the audio devices and show a live level meter of the chosen
input (one line, rewritten in place), so a user can see that the microphone works before
talking to the model. Says clearly when there is no PortAudio or no input device, and what to
install."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TextIO

METER_WIDTH = 30
FLOOR_DB = -70.0
SILENCE_DBFS = -100.0  # as harmony_tui.voice.audio (not imported here: it needs numpy)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", "-d", default=None, metavar="DEVICE",
                        help="input device: index or (part of) its name (default: the voice "
                        "settings' input_device, else the system default)")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="stop after N seconds (default: until Ctrl+C)")
    parser.add_argument("--list", action="store_true", help="only list the devices")


def meter(level_db: float, elapsed: float, peak_db: float, threshold_db: float) -> str:
    """One meter line: bar, level, peak, elapsed time and whether it counts as speech."""
    fraction = min(1.0, max(0.0, (level_db - FLOOR_DB) / -FLOOR_DB))
    filled = round(fraction * METER_WIDTH)
    bar = "█" * filled + "·" * (METER_WIDTH - filled)
    shown = "  -inf" if level_db <= SILENCE_DBFS else f"{level_db:6.1f}"
    state = "sound" if level_db >= threshold_db else "quiet"
    return (f"level {shown} dBFS |{bar}| peak {peak_db:6.1f}  {state}  {elapsed:5.1f} s")


def run(device: object, seconds: float | None, threshold_db: float, out: TextIO,
        list_only: bool = False) -> int:
    from harmony_tui.voice.audio import level_dbfs
    from harmony_tui.voice.devices import SoundDeviceSource, find_device, list_devices

    devices = list_devices()  # raises AudioDeviceError naming what to install
    print("Audio devices (< default input, > default output):", file=out)
    for info in devices:
        print("  " + info.describe(), file=out)
    if not devices:
        print("  (none)", file=out)
    if list_only:
        return 0
    chosen = find_device(device, "input")  # raises: no input device / no such device
    print(f"Listening to {chosen.index}: {chosen.name} — speak; "
          f"{'Ctrl+C stops' if seconds is None else f'stops after {seconds:g} s'}.", file=out)
    tty = out.isatty()
    source = SoundDeviceSource(chosen.index)
    started = time.monotonic()
    peak = SILENCE_DBFS
    last_shown = 0.0
    try:
        source.open()
        while seconds is None or time.monotonic() - started < seconds:
            block = source.read(1600)  # 0.1 s
            if block is None:
                break
            level = level_dbfs(block)
            peak = max(peak, level)
            now = time.monotonic()
            if now - last_shown >= 0.1:
                line = meter(level, now - started, peak, threshold_db)
                out.write(("\r\033[K" + line) if tty else line + "\n")
                out.flush()
                last_shown = now
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    if tty:
        out.write("\n")
    print(f"Peak level {peak:.1f} dBFS; speech below {threshold_db:g} dBFS counts as silence "
          "(voice.silence_threshold_db).", file=out)
    return 0


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Entry point for ``harmony-tui mic-check`` (or ``python -m harmony_tui.voice.mic_check``).
    Errors are raised as HarmonyTuiError (one line, exit status 2)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="harmony-tui mic-check")
        add_arguments(parser)
        args = parser.parse_args(args)
    from harmony_tui.config.user_config import load_user_config

    voice = load_user_config()[0].voice
    device = args.device if args.device is not None else voice.input_device
    if args.seconds is not None and args.seconds <= 0:
        from harmony_tui.errors import HarmonyTuiError

        raise HarmonyTuiError(f"--seconds {args.seconds:g}: expected a number of seconds > 0")
    return run(device, args.seconds, voice.silence_threshold_db, sys.stdout,
               list_only=args.list)


if __name__ == "__main__":
    from harmony_tui.errors import HarmonyTuiError

    try:
        sys.exit(main(sys.argv[1:]))
    except HarmonyTuiError as err:
        print(f"harmony-tui mic-check: error: {err}", file=sys.stderr)
        sys.exit(2)
