"""The ``apply_patch`` tool: gpt-oss edits files in the workspace with V4A patches.

``plan_patch`` parses a patch and computes every file's new content in memory; ``apply_patch``
then writes it all or nothing (``patch_files.Transaction``: every file staged to a temp file next
to it, then put in place; replaced and removed files kept until the end; any failure undoes every
step). Paths are relative to the workspace; absolute paths, ``..`` escapes and symlinks leading
outside are refused, and files are read and written through directory descriptors that never
follow a symlink swapped in after the check. ``ApplyPatchTool`` is the ``functions.apply_patch``
tool: it shows the unified diff for approval (control and bidirectional characters in names and
lines shown as ``<U+202E>``) and applies it exactly as approved.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harmony_tui.engine.messages import FunctionTool
from harmony_tui.text_safety import visible_controls
from harmony_tui.tools.base import ApprovalRequest, ToolError, ToolInvocation, ToolResult
from harmony_tui.tools.patch_files import Identity, Transaction, Workspace, describe
from harmony_tui.tools.patch_format import (
    BEGIN_PATCH,
    FileOp,
    PatchError,
    added_file_text,
    apply_hunks,
    parse_patch,
    show,
)

__all__ = [
    "APPLY_PATCH_INSTRUCTIONS",
    "APPLY_PATCH_TOOL",
    "APPLY_PATCH_TOOL_JSON",
    "ApplyPatchTool",
    "FileChange",
    "PatchError",
    "PatchOutcome",
    "PatchWriteError",
    "apply_patch",
    "commit_patch",
    "patch_from_arguments",
    "plan_patch",
    "unified_diff",
]

APPLY_PATCH_INSTRUCTIONS = """\
To create, edit, delete or rename files, call the `apply_patch` function with a patch.

# The apply_patch format

A patch is plain text inside an envelope:

*** Begin Patch
[one or more file operations]
*** End Patch

Each file operation starts with a header line:

*** Add File: <path>       create a file; each line of its content follows, prefixed with +
*** Delete File: <path>    remove a file; nothing follows
*** Update File: <path>    change a file; to rename it as well, follow with
*** Move to: <new path>

An Update File holds one or more hunks. A hunk starts with `@@`, optionally followed by a line of
the file that locates it, such as `@@ class Cache:` or `@@ def load(self):` (several `@@` lines
in a row narrow down nested code). Each line of a hunk starts with one character:
' ' (a space) for a context line kept as it is, '-' for a line to remove, '+' for a line to add.
Give about 3 lines of context above and below each change, copied exactly from the file, so the
hunk matches one place only; keep the hunks of a file in file order. End a hunk that reaches
the end of the file with the line `*** End of File`. Paths are relative to the workspace root.

Patch := "*** Begin Patch" NEWLINE { FileOp } "*** End Patch" NEWLINE
FileOp := AddFile | DeleteFile | UpdateFile
AddFile := "*** Add File: " path NEWLINE { "+" line NEWLINE }
DeleteFile := "*** Delete File: " path NEWLINE
UpdateFile := "*** Update File: " path NEWLINE [ "*** Move to: " path NEWLINE ] { Hunk }
Hunk := "@@" [ " " header ] NEWLINE { (" " | "-" | "+") line NEWLINE } [ "*** End of File" NEWLINE ]

Example:

*** Begin Patch
*** Add File: docs/hello.txt
+Hello world
*** Update File: src/app.py
*** Move to: src/main.py
@@ def greet():
-    print("Hi")
+    print("Hello, world!")
*** Delete File: notes/old.txt
*** End Patch
"""

# As gpt-oss declares it (the models were trained with this declaration): one string argument.
APPLY_PATCH_TOOL = FunctionTool(
    name="apply_patch",
    description="Patch a file",
    parameters={
        "type": "string",
        "description": "Formatted patch code",
        "default": "*** Begin Patch\n*** End Patch\n",
    },
)

# The same tool for chat-template models, whose tool schemas must be JSON objects.
APPLY_PATCH_TOOL_JSON = FunctionTool(
    name="apply_patch",
    description="Create, edit, delete or rename files with a patch in the apply_patch format.",
    parameters={
        "type": "object",
        "properties": {
            "patch": {
                "type": "string",
                "description": "The patch, from '*** Begin Patch' to '*** End Patch'.",
            }
        },
        "required": ["patch"],
    },
)

ChangeKind = Literal["add", "update", "delete"]
_STATUS = {"add": "A", "update": "M", "delete": "D"}


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file's change, computed but not yet written.

    ``path`` is workspace-relative as the patch names it; ``source`` and ``target`` are the
    resolved paths read and written (``source`` is None for an add, ``target`` for a delete).
    ``source_id`` is the (device, inode) of ``source`` when planned: a file replaced since then
    is not touched.
    """

    kind: ChangeKind
    path: str
    old_text: str | None
    new_text: str | None
    source: Path | None
    target: Path | None
    move_to: str | None = None
    fuzz: int = 0
    mode: int | None = None  # permission bits to keep on an updated file
    source_id: Identity | None = None

    @property
    def status(self) -> str:
        """``A``, ``M`` or ``D`` as in the summary."""
        return _STATUS[self.kind]

    def diff(self) -> str:
        """This change as a unified diff, for people: control, bidirectional and invisible
        characters in names and lines are written as ``<U+XXXX>``."""
        old_name = "/dev/null" if self.kind == "add" else f"a/{visible_controls(self.path)}"
        new_name = ("/dev/null" if self.kind == "delete"
                    else f"b/{visible_controls(self.move_to or self.path)}")
        old, new = _diff_lines(self.old_text or ""), _diff_lines(self.new_text or "")
        body = list(difflib.unified_diff(old, new, old_name, new_name))
        if not body:
            body = [f"--- {old_name}\n", f"+++ {new_name}\n"]
        text = []
        for line in body:
            text.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        return "".join(text)


@dataclass(frozen=True, slots=True)
class PatchOutcome:
    """What a patch does (or did): the changes in patch order."""

    changes: tuple[FileChange, ...]
    root: Path | None = None  # the resolved workspace the changes were planned in

    @property
    def fuzz(self) -> int:
        """Total fuzz of the context matches (0 when every line matched exactly)."""
        return sum(change.fuzz for change in self.changes)

    def diff(self) -> str:
        """The unified diff of every change."""
        return "".join(change.diff() for change in self.changes)

    def summary(self) -> str:
        """``Done!`` and the files touched, one ``A/M/D path`` line each, for the model."""
        lines = ["Done!"]
        for change in self.changes:
            if change.move_to:
                lines.append(f"M {change.move_to} (moved from {change.path})")
            else:
                lines.append(f"{change.status} {change.path}")
        loose = [c.move_to or c.path for c in self.changes if c.fuzz]
        if loose:
            lines.append("Note: context matched only after ignoring whitespace in "
                         + ", ".join(loose))
        return "\n".join(lines)


def _diff_lines(text: str) -> list[str]:
    """``text`` as diff lines ending in ``\\n`` (CR dropped, other controls made visible); the
    last one may lack it."""
    parts = [visible_controls(part.removesuffix("\r"), keep="\t") for part in text.split("\n")]
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


# -- paths -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Resolved:
    display: str  # normalised workspace-relative path
    path: Path  # workspace / display, the directory entry itself (may be a symlink)
    real: Path  # where it leads once every symlink is followed


def _resolve(raw: str, root: Path, role: str) -> _Resolved:
    """``raw`` inside the workspace ``root``, or PatchError saying why it is refused."""
    if "\0" in raw:
        raise PatchError(f"{role} {show(raw)}: the path contains a NUL character")
    if Path(raw).is_absolute() or raw.startswith("~"):
        raise PatchError(
            f"{role} {raw}: absolute paths are not allowed; use a path relative to the workspace"
        )
    normal = os.path.normpath(raw)
    if normal in (os.curdir, os.pardir) or normal.startswith(os.pardir + os.sep):
        raise PatchError(f"{role} {raw}: the path leads outside the workspace")
    display = Path(normal).as_posix()
    path = root / normal
    try:
        parent, real = path.parent.resolve(), path.resolve()
    except OSError as err:  # a folder on the path was replaced while we looked (a race)
        raise PatchError(f"{role} {display}: the path changed while it was checked "
                         f"({err.strerror or err}); nothing was applied") from None
    for where in (parent, real):
        if where != root and not where.is_relative_to(root):
            raise PatchError(
                f"{role} {display}: a symlink leads outside the workspace (to {where})"
            )
    if real == root:
        raise PatchError(f"{role} {display}: this is the workspace directory, not a file")
    return _Resolved(display, parent / path.name, real)


def _check_new_file(where: _Resolved, role: str) -> None:
    """Refuse to create ``where`` if anything is there or a parent is not a directory."""
    if os.path.lexists(where.path) or where.real.exists():
        raise PatchError(f"{role} {where.display}: the file already exists")
    parent = where.real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PatchError(f"{role} {where.display}: {parent.name} is a file, not a directory")


def _read_existing(ws: Workspace, where: _Resolved, role: str) -> tuple[str, int, Identity]:
    """The text, permission bits and identity of an existing regular file, read through the
    workspace's directory descriptors (a symlink swapped in meanwhile is not followed)."""
    data, mode, identity = ws.read_file(ws.parts(where.real), where.display, role)
    try:
        return data.decode("utf-8"), mode, identity
    except UnicodeDecodeError as err:
        raise PatchError(f"{role} {where.display}: not UTF-8 text") from err


# -- planning --------------------------------------------------------------------------------


def _plan_op(op: FileOp, root: Path, ws: Workspace) -> tuple[FileChange, list[Path]]:
    """The change ``op`` makes, and the real paths it touches."""
    role = op.header
    where = _resolve(op.path, root, role)
    if op.kind == "add":
        _check_new_file(where, role)
        change = FileChange("add", where.display, None, added_file_text(op.added_lines),
                            source=None, target=where.real)
        return change, [where.real]
    old, mode, identity = _read_existing(ws, where, role)
    if op.kind == "delete":
        entry = ws.identity(ws.parts(where.path), f"{role} {where.display}")
        return FileChange("delete", where.display, old, None, source=where.path,
                          target=None, source_id=entry), [where.real]
    new, fuzz = apply_hunks(old, op.hunks, where.display) if op.hunks else (old, 0)
    if op.move_to is None:
        return FileChange("update", where.display, old, new, source=where.real,
                          target=where.real, fuzz=fuzz, mode=mode, source_id=identity
                          ), [where.real]
    dest = _resolve(op.move_to, root, f"Update File {where.display}: Move to")
    _check_new_file(dest, f"Update File {where.display}: Move to")
    entry = ws.identity(ws.parts(where.path), f"{role} {where.display}")
    change = FileChange("update", where.display, old, new, source=where.path, target=dest.real,
                        move_to=dest.display, fuzz=fuzz, mode=mode, source_id=entry)
    return change, [where.real, dest.real]


def plan_patch(text: str, workspace: Path) -> PatchOutcome:
    """Parse ``text`` and compute every change against the files in ``workspace``, writing
    nothing. PatchError (one line) names the first file and hunk line that does not fit."""
    root = Path(workspace).resolve()
    if not root.is_dir():
        raise PatchError(f"the workspace {workspace} is not a directory")
    ops = parse_patch(text)
    changes: list[FileChange] = []
    touched: dict[Path, str] = {}
    with _open_workspace(root) as ws:
        for op in ops:
            change, paths = _plan_op(op, root, ws)
            for path in paths:
                if path in touched:
                    raise PatchError(
                        f"{op.header} {change.path} (patch line {op.patch_line}): the patch"
                        f" already changes {touched[path]}; give each file one section"
                    )
                touched[path] = change.path
            changes.append(change)
    return PatchOutcome(tuple(changes), root)


def _open_workspace(root: Path) -> Workspace:
    try:
        return Workspace(root)
    except OSError as err:
        raise PatchError(f"the workspace {root} cannot be opened ({err.strerror})") from err


def unified_diff(text: str, workspace: Path) -> str:
    """The unified diff ``text`` would make in ``workspace``, without writing anything."""
    return plan_patch(text, workspace).diff()


# -- writing ---------------------------------------------------------------------------------


class PatchWriteError(PatchError):
    """Writing failed and some files could not be put back (the patch is partly applied)."""


def commit_patch(outcome: PatchOutcome) -> PatchOutcome:
    """Write a planned patch all or nothing: stage every new file, put them in place in patch
    order, then remove deleted and moved-away files. A failure at any step (a file replaced or
    a folder swapped for a symlink since planning, a full disk ...) undoes every step: PatchError
    then, or PatchWriteError naming the files that could not be restored."""
    if outcome.root is None:
        raise ValueError("commit_patch needs an outcome from plan_patch")
    with _open_workspace(outcome.root) as ws:
        transaction = Transaction(ws)
        name = "?"
        try:
            staged = {}
            for index, change in enumerate(outcome.changes):
                if change.target is not None and change.new_text is not None:
                    name = change.move_to or change.path
                    staged[index] = transaction.stage(change.target,
                                                      change.new_text.encode("utf-8"),
                                                      change.mode, name)
            for index, change in enumerate(outcome.changes):
                if index in staged:
                    name = change.move_to or change.path
                    if change.kind == "update" and change.move_to is None:
                        transaction.replace(staged[index], change.source_id)
                    else:
                        transaction.create(staged[index])
            for change in outcome.changes:
                if change.source is not None and change.source != change.target:
                    name = change.path
                    transaction.remove(change.source, change.source_id, change.path)
        except (OSError, PatchError) as err:
            failed = transaction.rollback()
            reason = str(err) if isinstance(err, PatchError) else (
                f"cannot write {name} ({err.strerror or err})")
            if failed:
                raise PatchWriteError(f"{reason}; {describe(failed)} could not be put back, so"
                                      " the patch is partly applied") from err
            raise PatchError(reason) from err
        transaction.finish()
    return outcome


def apply_patch(text: str, workspace: Path) -> PatchOutcome:
    """Apply ``text`` to the files in ``workspace``, all or nothing; PatchError if any part
    of it does not apply (then no file was touched)."""
    return commit_patch(plan_patch(text, workspace))


# -- the tool --------------------------------------------------------------------------------


def patch_from_arguments(arguments: str) -> str:
    """The patch in a call's arguments: raw patch text, a JSON string, or a JSON object with
    ``patch`` or ``input``; ToolError naming what was expected otherwise."""
    text = arguments.strip()
    expected = (f"expected the patch text (starting with '{BEGIN_PATCH}'), a JSON string, or a"
                ' JSON object {"patch": "<patch text>"}')
    if not text:
        raise ToolError(f"apply_patch: the arguments are empty; {expected}")
    if text.startswith(BEGIN_PATCH):
        return arguments
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise ToolError(f"apply_patch: {expected}; got {show(text, 60)}") from err
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("patch", "input"):
            if key in value:
                if not isinstance(value[key], str):
                    raise ToolError(f'apply_patch: "{key}" must be a string holding the patch')
                return value[key]
        if len(value) == 1 and isinstance(next(iter(value.values())), str):
            return next(iter(value.values()))  # any single key, as the reference accepts
        raise ToolError(f"apply_patch: {expected}; got keys {sorted(value)}")
    raise ToolError(f"apply_patch: {expected}; got a JSON {type(value).__name__}")


class ApplyPatchTool:
    """``functions.apply_patch``: V4A patches applied inside one workspace directory.

    ``approval`` shows the unified diff; ``run`` then applies the patch only if it still makes
    exactly that diff (files changed in between make it an error, never an unseen edit).
    """

    namespace = "functions.apply_patch"
    _MAX_REMEMBERED = 64

    def __init__(self, workspace: Path | None = None) -> None:
        self.workspace = Path(workspace) if workspace is not None else Path.cwd()
        self._approved: OrderedDict[tuple[str, str], str | None] = OrderedDict()

    def _remember(self, call: ToolInvocation, diff: str | None) -> None:
        self._approved[(call.call_id, call.arguments)] = diff
        while len(self._approved) > self._MAX_REMEMBERED:
            self._approved.popitem(last=False)

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        """The diff to approve; None when the patch cannot apply (``run`` reports why)."""
        try:
            outcome = plan_patch(patch_from_arguments(call.arguments), self.workspace)
        except (ToolError, PatchError):
            self._remember(call, None)
            return None
        diff = outcome.diff()
        self._remember(call, diff)
        files = ", ".join(f"{c.status} {visible_controls(c.move_to or c.path)}"
                          for c in outcome.changes)
        return ApprovalRequest("files", f"apply_patch: {files}", diff, language="diff")

    def _apply(self, call: ToolInvocation, patch: str) -> PatchOutcome:
        outcome = plan_patch(patch, self.workspace)
        key = (call.call_id, call.arguments)
        if key in self._approved and self._approved.pop(key) != outcome.diff():
            raise PatchError("the files changed since this patch was shown for approval;"
                             " read them again and send a new patch")
        return commit_patch(outcome)

    async def run(self, call: ToolInvocation) -> ToolResult:
        """Apply the patch; an error result (nothing written) when any part does not fit."""
        started = time.perf_counter()
        try:
            patch = patch_from_arguments(call.arguments)
            outcome = await asyncio.to_thread(self._apply, call, patch)
        except ToolError as err:
            return ToolResult(str(err), is_error=True, duration_s=time.perf_counter() - started)
        except PatchWriteError as err:
            return ToolResult(f"apply_patch failed: {err}", is_error=True,
                              duration_s=time.perf_counter() - started)
        except PatchError as err:
            return ToolResult(
                f"apply_patch failed: {err}. No file was changed; fix the patch and call"
                " apply_patch again.",
                is_error=True, duration_s=time.perf_counter() - started,
            )
        except OSError as err:
            return ToolResult(f"apply_patch failed: {err}", is_error=True,
                              duration_s=time.perf_counter() - started)
        details = {
            "diff": outcome.diff(),
            "files": [{"status": c.status, "path": c.path, "move_to": c.move_to}
                      for c in outcome.changes],
            "fuzz": outcome.fuzz,
        }
        return ToolResult(outcome.summary(), duration_s=time.perf_counter() - started,
                          details=details)

    async def aclose(self) -> None:
        """Nothing to release."""
