"""harmony-tui's own themes, registered next to Textual's built-in ones."""

from __future__ import annotations

from textual.theme import Theme

HARMONY_DARK = Theme(
    name="harmony-dark",
    primary="#7aa2f7",
    secondary="#bb9af7",
    accent="#e0af68",
    warning="#e0af68",
    error="#f7768e",
    success="#9ece6a",
    foreground="#c0caf5",
    background="#16161e",
    surface="#1f2335",
    panel="#24283b",
    dark=True,
    variables={
        "footer-key-foreground": "#7aa2f7",
    },
)

HARMONY_LIGHT = Theme(
    name="harmony-light",
    primary="#2e59c9",
    secondary="#7847bd",
    accent="#b15c00",
    warning="#b15c00",
    error="#c0392b",
    success="#2e7d32",
    foreground="#1f2329",
    background="#fbfbfd",
    surface="#f0f1f5",
    panel="#e4e7ef",
    dark=False,
    variables={
        "footer-key-foreground": "#2e59c9",
    },
)

THEMES = (HARMONY_DARK, HARMONY_LIGHT)
DEFAULT_THEME = HARMONY_DARK.name
