"""``python -m harmony_tui.server [--model M] [--host H] [--port N] ...``: the headless server.

The same as ``harmony-tui --serve``, for scripts and tests that want only the server.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from harmony_tui.config.command_line import (
        PROG,
        OneLineParser,
        add_model_flags,
        add_sampling_flags,
    )
    from harmony_tui.errors import HarmonyTuiError
    from harmony_tui.server.cli_args import add_serve_arguments, run_serve

    parser = OneLineParser(prog=f"{PROG} --serve",
                           description="Serve a model over an OpenAI-compatible HTTP API.")
    add_model_flags(parser, remote=False)
    add_sampling_flags(parser)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_serve(args)
    except HarmonyTuiError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
