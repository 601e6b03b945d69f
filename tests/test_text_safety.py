"""Untrusted text made safe for a terminal: escape sequences and control characters removed,
bidirectional controls shown, markup-looking text left as it is."""

from __future__ import annotations

import io
import json

import pytest

from harmony_tui.text_safety import json_terminal_safe, terminal_safe, visible_controls

OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"  # "set the clipboard to 'rm -rf ~'"


@pytest.mark.parametrize(("raw", "shown"), [
    (f"before{OSC52}after", "beforeafter"),
    ("a\x1b]52;c;cm0=\x1b\\b", "ab"),  # terminated by ST (ESC \)
    ("a\x9d52;c;cm0=\x9cb", "ab"),  # 8-bit OSC and ST
    ("a\x1b]0;fake title\x07b", "ab"),
    ("\x1b[31mred\x1b[0m \x1b[2J\x1b[H\x1b[?1049h", "red "),
    ("a\x9b2Jb", "ab"),  # 8-bit CSI
    ("a\x1bP1$qm\x1b\\b", "ab"),  # DCS
    ("a\x1b_apc\x1b\\b\x1b^pm\x1b\\c\x1bXsos\x1b\\d", "abcd"),
    ("\x1b(0charset\x1b(B \x1b7saved\x1b8 \x1bc", "charset saved "),
    ("bell\x07 back\x08space del\x7f nul\x00 c1\x85", "bell backspace del nul c1"),
    ("line 1\r\nline 2\rover", "line 1\nline 2\nover"),
    ("tab\tand\nnewline kept", "tab\tand\nnewline kept"),
    ("lone escape at the end \x1b", "lone escape at the end "),
    ("unterminated \x1b]52;c;AAAA\nnext line", "unterminated \nnext line"),
    ("file\u202etxt.exe", "file<U+202E>txt.exe"),
    ("[red]x[/red] [@click=app.quit]quit[/] [link=file:///etc/passwd]y[/link]",
     "[red]x[/red] [@click=app.quit]quit[/] [link=file:///etc/passwd]y[/link]"),
    ("plain ünïcödé 中文 emoji 👍🏽", "plain ünïcödé 中文 emoji 👍🏽"),
])
def test_terminal_safe(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown


def test_terminal_safe_leaves_nothing_a_terminal_acts_on() -> None:
    hostile = "".join(chr(c) for c in range(0, 0xA0)) * 3 + OSC52 * 2
    safe = terminal_safe(hostile)
    assert not [c for c in safe if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0]


def test_visible_controls_shows_what_is_there() -> None:
    assert visible_controls("evil\u202etxt.exe") == "evil<U+202E>txt.exe"
    assert visible_controls("a\tb\x1b[0m\u200bc") == "a<U+0009>b<U+001B>[0m<U+200B>c"
    assert visible_controls("a\tb\nc", keep="\t\n") == "a\tb\nc"
    assert visible_controls("line\u2028sep") == "line<U+2028>sep"
    assert visible_controls("ordinary name-1.txt é") == "ordinary name-1.txt é"


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal (as stdout is in a shell)."""

    def isatty(self) -> bool:
        return True


def test_generate_answer_on_a_terminal_is_cleaned_and_piped_answers_stay_verbatim() -> None:
    from harmony_tui.engine.events import TextDelta
    from harmony_tui.oneshot import Printer

    answer = f"copy this{OSC52} now\x9b2J"
    shown = _Terminal()
    Printer(False, False, shown, io.StringIO()).event(TextDelta("final", answer))
    assert shown.getvalue() == "copy this now"
    piped = io.StringIO()
    Printer(False, False, piped, io.StringIO()).event(TextDelta("final", answer))
    assert piped.getvalue() == answer


def test_json_output_escapes_what_a_terminal_would_act_on() -> None:
    value = {"final": f"a{OSC52}b\x9b2J\u2028\u202e.exe", "n": 1}
    encoded = json_terminal_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(encoded) == value
    assert encoded.isascii() or all(ord(c) > 0x9f for c in encoded if not c.isascii())
    assert "\x1b" not in encoded and "\x9b" not in encoded and "\u202e" not in encoded
