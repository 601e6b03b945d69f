"""Allow ``python -m harmony_tui``."""

from harmony_tui.cli import main

raise SystemExit(main())
