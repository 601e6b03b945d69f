"""The V4A patch format gpt-oss writes for ``apply_patch``: parsing, and applying hunks to text.

Pure text in, text out: nothing here touches the file system. A patch looks like::

    *** Begin Patch
    *** Add File: hello.txt
    +Hello world
    *** Update File: src/app.py
    *** Move to: src/main.py
    @@ def greet():
    -    print("Hi")
    +    print("Hello, world!")
    *** Delete File: obsolete.txt
    *** End Patch

Hunk context is located like the reference implementation does it: an exact match first, then
ignoring trailing whitespace, then ignoring all surrounding whitespace; the looser the match,
the larger the reported fuzz. Every error is a one-line ``PatchError`` naming the patch line,
the file and what was expected, so a model can read it and send a corrected patch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

BEGIN_PATCH = "*** Begin Patch"
END_PATCH = "*** End Patch"
ADD_FILE = "*** Add File:"
DELETE_FILE = "*** Delete File:"
UPDATE_FILE = "*** Update File:"
MOVE_TO = "*** Move to:"
END_OF_FILE = "*** End of File"
FILE_HEADERS = (ADD_FILE, DELETE_FILE, UPDATE_FILE)

# Fuzz per matching level (exact, ignoring trailing whitespace, ignoring surrounding
# whitespace) and for an End-of-File hunk whose context was found elsewhere: as the reference.
MATCH_FUZZ = (0, 1, 100)
EOF_ELSEWHERE_FUZZ = 10_000
# A unified-diff range header (``@@ -12,7 +12,8 @@``) locates nothing in V4A: it is ignored.
_RANGE_HEADER = re.compile(r"^-\d+(,\d+)? \+\d+(,\d+)? @@")

HunkKind = Literal[" ", "-", "+"]
OpKind = Literal["add", "delete", "update"]


class PatchError(ValueError):
    """A patch that cannot be parsed or applied; the message is one line a model can act on."""


def show(line: str, limit: int = 80) -> str:
    """``line`` quoted for a one-line message, shortened when long."""
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return repr(line)


@dataclass(frozen=True, slots=True)
class HunkLine:
    """One line of a hunk body: context (``" "``), removed (``"-"``) or inserted (``"+"``)."""

    kind: HunkKind
    text: str
    patch_line: int  # 1-based line number in the patch text


@dataclass(frozen=True, slots=True)
class Hunk:
    """A run of changes, located by its ``@@`` anchors (outermost first) and its context."""

    anchors: tuple[str, ...]
    lines: tuple[HunkLine, ...]
    end_of_file: bool
    patch_line: int

    @property
    def old(self) -> list[HunkLine]:
        """The lines the file must contain here: context and removed lines, in order."""
        return [line for line in self.lines if line.kind != "+"]


@dataclass(frozen=True, slots=True)
class FileOp:
    """One file section of a patch."""

    kind: OpKind
    path: str
    patch_line: int
    added_lines: tuple[str, ...] = ()  # the content of an Add File
    hunks: tuple[Hunk, ...] = ()  # the changes of an Update File
    move_to: str | None = None

    @property
    def header(self) -> str:
        """The header's name as the patch spells it (``Update File``)."""
        return {"add": "Add File", "delete": "Delete File", "update": "Update File"}[self.kind]


# -- parsing ---------------------------------------------------------------------------------


def _is_file_header(line: str) -> bool:
    return line.rstrip().startswith(FILE_HEADERS)


def _header_path(line: str, header: str, number: int) -> str:
    path = line.rstrip()[len(header):].strip()
    if not path:
        raise PatchError(f"patch line {number}: {header} needs a path after the colon")
    return path


class _Parser:
    """Reads the lines between the Begin and End sentinels into ``FileOp``s."""

    def __init__(self, lines: list[str], start: int, stop: int) -> None:
        self.lines = lines
        self.pos = start
        self.stop = stop

    def number(self) -> int:
        return self.pos + 1

    def parse(self) -> list[FileOp]:
        ops: list[FileOp] = []
        while self.pos < self.stop:
            line = self.lines[self.pos]
            head = line.rstrip()
            if not head:
                self.pos += 1
            elif head.startswith(ADD_FILE):
                ops.append(self.add_file())
            elif head.startswith(DELETE_FILE):
                ops.append(self.delete_file())
            elif head.startswith(UPDATE_FILE):
                ops.append(self.update_file())
            elif head == END_PATCH:
                raise PatchError(f"patch line {self.number()}: text after '{END_PATCH}'")
            else:
                raise PatchError(
                    f"patch line {self.number()}: unknown line {show(line)}; expected "
                    f"'{ADD_FILE} <path>', '{UPDATE_FILE} <path>' or '{DELETE_FILE} <path>'"
                )
        if not ops:
            raise PatchError("the patch has no file operations between its Begin and End lines")
        return ops

    def add_file(self) -> FileOp:
        start = self.number()
        path = _header_path(self.lines[self.pos], ADD_FILE, start)
        self.pos += 1
        content: list[str] = []
        while self.pos < self.stop and not _is_file_header(self.lines[self.pos]):
            line = self.lines[self.pos]
            if not line.startswith("+"):
                raise PatchError(
                    f"patch line {self.number()}: every line of Add File {path} must start with"
                    f" '+'; got {show(line)}"
                )
            content.append(line[1:])
            self.pos += 1
        return FileOp("add", path, start, added_lines=tuple(content))

    def delete_file(self) -> FileOp:
        start = self.number()
        path = _header_path(self.lines[self.pos], DELETE_FILE, start)
        self.pos += 1
        while self.pos < self.stop and not self.lines[self.pos].strip():
            self.pos += 1
        if self.pos < self.stop and not _is_file_header(self.lines[self.pos]):
            raise PatchError(
                f"patch line {self.number()}: Delete File {path} takes no lines; got"
                f" {show(self.lines[self.pos])}"
            )
        return FileOp("delete", path, start)

    def update_file(self) -> FileOp:
        start = self.number()
        path = _header_path(self.lines[self.pos], UPDATE_FILE, start)
        self.pos += 1
        move_to = None
        if self.pos < self.stop and self.lines[self.pos].rstrip().startswith(MOVE_TO):
            move_to = _header_path(self.lines[self.pos], MOVE_TO, self.number())
            self.pos += 1
        hunks: list[Hunk] = []
        while self.pos < self.stop and not _is_file_header(self.lines[self.pos]):
            hunks.append(self.hunk(path, first=not hunks))
        if not hunks and move_to is None:
            raise PatchError(
                f"patch line {start}: Update File {path} has no hunks; add '@@' hunks with"
                " ' ', '-' and '+' lines (or a '*** Move to:' line to rename it)"
            )
        return FileOp("update", path, start, hunks=tuple(hunks), move_to=move_to)

    def hunk(self, path: str, first: bool) -> Hunk:
        start = self.number()
        anchors: list[str] = []
        saw_header = False
        while self.pos < self.stop and self.lines[self.pos].startswith("@@"):
            saw_header = True
            anchor = self.lines[self.pos][2:]
            anchor = anchor[1:] if anchor.startswith(" ") else anchor
            if anchor.strip() and not _RANGE_HEADER.match(anchor.strip()):
                anchors.append(anchor)
            self.pos += 1
        if not saw_header and not first:
            raise PatchError(
                f"patch line {start}: expected '@@' to start the next hunk of {path}; got"
                f" {show(self.lines[self.pos])}"
            )
        body: list[HunkLine] = []
        end_of_file = False
        while self.pos < self.stop:
            line = self.lines[self.pos]
            if line.startswith("@@") or _is_file_header(line):
                break
            if line.rstrip() == END_OF_FILE:
                end_of_file = True
                self.pos += 1
                break
            body.append(self._hunk_line(line, path))
            self.pos += 1
        if not body:
            raise PatchError(
                f"patch line {start}: empty hunk in Update File {path}; a hunk needs ' ', '-'"
                " or '+' lines"
            )
        return Hunk(tuple(anchors), tuple(body), end_of_file, start)

    def _hunk_line(self, line: str, path: str) -> HunkLine:
        number = self.number()
        if line.startswith("***"):
            if line.rstrip() == END_PATCH:
                raise PatchError(f"patch line {number}: '{END_PATCH}' before the end of the patch")
            if line.rstrip().startswith(MOVE_TO):
                raise PatchError(
                    f"patch line {number}: '{MOVE_TO}' must come right after"
                    f" '{UPDATE_FILE} {path}'"
                )
            raise PatchError(f"patch line {number}: unknown marker {show(line)} in {path}")
        if line == "":
            return HunkLine(" ", "", number)  # a blank context line whose space got lost
        if line[0] in " -+":
            return HunkLine(line[0], line[1:], number)  # type: ignore[arg-type]
        raise PatchError(
            f"patch line {number}: hunk line in {path} must start with ' ' (context), '-'"
            f" (remove) or '+' (insert); got {show(line)}"
        )


def parse_patch(text: str) -> list[FileOp]:
    """The file operations of ``text``; PatchError when it is not a well-formed V4A patch."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    first, last = 0, len(lines)
    while first < last and not lines[first].strip():
        first += 1
    while last > first and not lines[last - 1].strip():
        last -= 1
    if first == last:
        raise PatchError(f"the patch is empty; expected '{BEGIN_PATCH}' ... '{END_PATCH}'")
    if lines[first].strip() != BEGIN_PATCH:
        raise PatchError(
            f"patch line {first + 1}: a patch must start with '{BEGIN_PATCH}'; got"
            f" {show(lines[first])}"
        )
    if last - first < 2 or lines[last - 1].strip() != END_PATCH:
        raise PatchError(
            f"a patch must end with the line '{END_PATCH}'; the last line is"
            f" {show(lines[last - 1])}"
        )
    return _Parser(lines, first + 1, last - 1).parse()


# -- applying hunks to text ------------------------------------------------------------------

_NORMALISERS: tuple[Callable[[str], str], ...] = (
    lambda s: s,
    str.rstrip,
    str.strip,
)


def _split(text: str) -> tuple[list[str], str, bool]:
    """``text`` as lines without endings, its newline style and whether it ends with one."""
    newline = "\r\n" if "\r\n" in text else "\n"
    if not text:
        return [], newline, False
    ends_with_newline = text.endswith(newline)
    body = text[: -len(newline)] if ends_with_newline else text
    return body.split(newline), newline, ends_with_newline


def _search(lines: Sequence[str], wanted: Sequence[str], start: int,
            stop: int | None = None) -> tuple[int, int]:
    """First index >= ``start`` (and <= ``stop``) where ``wanted`` matches, and the match level
    (0 exact, 1 trailing whitespace ignored, 2 surrounding whitespace ignored); (-1, -1)."""
    last = len(lines) - len(wanted) if stop is None else min(stop, len(lines) - len(wanted))
    for level, norm in enumerate(_NORMALISERS):
        target = [norm(s) for s in wanted]
        normalised = [norm(s) for s in lines]
        for i in range(start, last + 1):
            if normalised[i : i + len(target)] == target:
                return i, level
    return -1, -1


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindenter(actual: Sequence[str], expected: Sequence[str]) -> Callable[[str], str] | None:
    """When the file's lines differ from the hunk's only by a common base indentation, a
    function moving inserted lines onto the file's base; else None (insert them verbatim)."""
    differing = [(a, e) for a, e in zip(actual, expected, strict=True) if a != e and e.strip()]
    if not differing:
        return None
    file_base, patch_base = _indent(differing[0][0]), _indent(differing[0][1])
    for file_line, patch_line in differing:
        if not patch_line.startswith(patch_base):
            return None
        if file_line.rstrip() != (file_base + patch_line[len(patch_base):]).rstrip():
            return None

    def reindent(line: str) -> str:
        if line.strip() and line.startswith(patch_base):
            return file_base + line[len(patch_base):]
        return line

    return reindent


@dataclass(slots=True)
class _HunkApplier:
    """Applies one file's hunks in order, tracking where the next search starts."""

    path: str
    lines: list[str]
    cursor: int = 0
    fuzz: int = 0

    def where(self, number: int, hunk: Hunk) -> str:
        return f"Update File {self.path}: hunk {number} (patch line {hunk.patch_line})"

    def seek_anchors(self, number: int, hunk: Hunk) -> int:
        """The index just below the innermost ``@@`` anchor, searched from the cursor."""
        index = self.cursor
        for anchor in hunk.anchors:
            found, level = _search(self.lines, [anchor], index)
            if found >= 0:
                index = found + 1
                self.fuzz += 0 if level == 0 else 1
            elif _search(self.lines, [anchor], 0, stop=index - 1)[0] < 0:
                after = f" after file line {index}" if index else ""
                raise PatchError(
                    f"{self.where(number, hunk)}: '@@ {anchor.strip()}' matches no line of"
                    f" {self.path}{after}"
                )
            # else: the anchor is above us (an earlier hunk in the same block): keep going
        return index

    def locate(self, hunk: Hunk, start: int) -> tuple[int, int]:
        """Where the hunk's old lines are, and the match level (see ``_search``)."""
        old = [line.text for line in hunk.old]
        if not old:
            return (len(self.lines) if hunk.end_of_file else start), 0
        if hunk.end_of_file:
            at_end = len(self.lines) - len(old)
            if at_end >= start:
                found, level = _search(self.lines, old, at_end)
                if found >= 0:
                    return found, level
            found, level = _search(self.lines, old, start)
            if found >= 0:
                self.fuzz += EOF_ELSEWHERE_FUZZ
            return found, level
        return _search(self.lines, old, start)

    def mismatch(self, number: int, hunk: Hunk, start: int) -> PatchError:
        """A one-line account of the first hunk line that does not match the file."""
        old = hunk.old
        where = self.where(number, hunk)
        if _search(self.lines, [line.text for line in old], 0, stop=start - 1)[0] >= 0:
            return PatchError(
                f"{where}: its context only matches above file line {start + 1}, which an"
                " earlier hunk or '@@' line already passed; hunks must be in file order"
            )
        stripped = [s.strip() for s in self.lines]
        best_len, best_at = 0, -1
        wanted = [line.text.strip() for line in old]
        for i in range(start, len(self.lines)):
            k = 0
            while k < len(old) and i + k < len(stripped) and stripped[i + k] == wanted[k]:
                k += 1
            if k > best_len:
                best_len, best_at = k, i
        if best_len == 0:
            after = f" at or after file line {start + 1}" if start else ""
            return PatchError(
                f"{where}: patch line {old[0].patch_line} {show(old[0].text)} matches no line"
                f" of {self.path}{after}; copy context lines exactly from the file"
            )
        bad = old[best_len]
        file_index = best_at + best_len
        found = (f"file line {file_index + 1} is {show(self.lines[file_index])}"
                 if file_index < len(self.lines) else "the file ends there")
        return PatchError(
            f"{where}: patch line {bad.patch_line} {show(bad.text)} does not match: {found}"
            f" (the {best_len} line(s) before it matched from file line {best_at + 1})"
        )

    def apply(self, hunks: Sequence[Hunk]) -> list[str]:
        out: list[str] = []
        for number, hunk in enumerate(hunks, 1):
            start = self.seek_anchors(number, hunk)
            found, level = self.locate(hunk, start)
            if found < 0:
                raise self.mismatch(number, hunk, start)
            self.fuzz += MATCH_FUZZ[level]
            old = hunk.old
            actual = self.lines[found : found + len(old)]
            reindent = (_reindenter(actual, [line.text for line in old])
                        if level == 2 else None)
            out.extend(self.lines[self.cursor : found])
            taken = iter(actual)
            for line in hunk.lines:
                if line.kind == " ":
                    out.append(next(taken))  # keep the file's own spelling of context
                elif line.kind == "-":
                    next(taken)
                else:
                    out.append(reindent(line.text) if reindent else line.text)
            self.cursor = found + len(old)
        out.extend(self.lines[self.cursor :])
        return out


def apply_hunks(text: str, hunks: Sequence[Hunk], path: str) -> tuple[str, int]:
    """``text`` with ``hunks`` applied, and the total fuzz; PatchError naming the first hunk
    line that does not match. Line endings (LF or CRLF) and a missing final newline are kept."""
    lines, newline, ends_with_newline = _split(text)
    applier = _HunkApplier(path, lines)
    out = applier.apply(hunks)
    if not out:
        return "", applier.fuzz
    keep_final = ends_with_newline or not text
    return newline.join(out) + (newline if keep_final else ""), applier.fuzz


def added_file_text(lines: Sequence[str]) -> str:
    """The content of an Add File: its lines, each ending with a newline."""
    return "".join(line + "\n" for line in lines)
