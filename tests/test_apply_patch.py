"""apply_patch: the V4A parser, fuzzy hunk matching, workspace safety, all-or-nothing writes,
and the functions.apply_patch tool. Everything runs on real files in tmp_path."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harmony_tui.tools.apply_patch import (
    APPLY_PATCH_INSTRUCTIONS,
    APPLY_PATCH_TOOL,
    APPLY_PATCH_TOOL_JSON,
    ApplyPatchTool,
    PatchError,
    PatchWriteError,
    apply_patch,
    commit_patch,
    patch_from_arguments,
    plan_patch,
    unified_diff,
)
from harmony_tui.tools.base import Tool, ToolError, ToolInvocation, run_safely
from harmony_tui.tools.patch_format import parse_patch


def patch(*lines: str) -> str:
    return "\n".join(["*** Begin Patch", *lines, "*** End Patch"]) + "\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def one_line_error(text: str, workspace: Path) -> str:
    with pytest.raises(PatchError) as info:
        apply_patch(text, workspace)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# -- add / update / delete / move --------------------------------------------------------------


def test_add_file_creates_parents_and_ends_with_newline(tmp_path: Path) -> None:
    outcome = apply_patch(patch("*** Add File: pkg/sub/hello.txt", "+Hello", "+", "+world"),
                          tmp_path)
    assert (tmp_path / "pkg/sub/hello.txt").read_text() == "Hello\n\nworld\n"
    assert outcome.summary() == "Done!\nA pkg/sub/hello.txt"
    assert not list(tmp_path.rglob("*.tmp"))


def test_update_several_hunks_with_nested_anchors(tmp_path: Path) -> None:
    source = (
        "import os\n"
        "\n"
        "class A:\n"
        "    def run(self):\n"
        "        return 1\n"
        "\n"
        "class B:\n"
        "    def run(self):\n"
        "        return 1\n"
        "\n"
        "    def stop(self):\n"
        "        return 0\n"
    )
    target = write(tmp_path / "m.py", source)
    outcome = apply_patch(patch(
        "*** Update File: m.py",
        "@@",
        "-import os",
        "+import sys",
        "@@ class B:",
        "@@     def run(self):",
        "-        return 1",
        "+        return 2",
        "@@     def stop(self):",
        "-        return 0",
        "+        return -1",
    ), tmp_path)
    assert target.read_text() == source.replace("import os", "import sys").replace(
        "class B:\n    def run(self):\n        return 1", "class B:\n    def run(self):\n"
        "        return 2").replace("return 0", "return -1")
    assert "class A:\n    def run(self):\n        return 1" in target.read_text()
    assert outcome.fuzz == 0 and outcome.summary() == "Done!\nM m.py"


def test_two_hunks_under_the_same_anchor(tmp_path: Path) -> None:
    target = write(tmp_path / "f.py", "def f():\n    a = 1\n    b = 2\n    c = 3\n    d = 4\n")
    apply_patch(patch("*** Update File: f.py", "@@ def f():", "-    a = 1", "+    a = 10",
                      "@@ def f():", "-    d = 4", "+    d = 40"), tmp_path)
    assert target.read_text() == "def f():\n    a = 10\n    b = 2\n    c = 3\n    d = 40\n"


def test_first_hunk_without_header_and_unified_range_header_ignored(tmp_path: Path) -> None:
    target = write(tmp_path / "a.txt", "one\ntwo\nthree\nfour\n")
    apply_patch(patch("*** Update File: a.txt", " one", "-two", "+2",
                      "@@ -3,2 +3,2 @@", " three", "-four", "+4"), tmp_path)
    assert target.read_text() == "one\n2\nthree\n4\n"


def test_delete_file(tmp_path: Path) -> None:
    gone = write(tmp_path / "old/notes.txt", "bye\n")
    outcome = apply_patch(patch("*** Delete File: old/notes.txt"), tmp_path)
    assert not gone.exists()
    assert outcome.summary() == "Done!\nD old/notes.txt"


def test_move_with_changes_and_pure_rename(tmp_path: Path) -> None:
    write(tmp_path / "src/app.py", 'def greet():\n    print("Hi")\n')
    write(tmp_path / "plain.txt", "same\n")
    outcome = apply_patch(patch(
        "*** Update File: src/app.py",
        "*** Move to: src/main.py",
        "@@ def greet():",
        '-    print("Hi")',
        '+    print("Hello, world!")',
        "*** Update File: plain.txt",
        "*** Move to: moved/plain.txt",
    ), tmp_path)
    assert not (tmp_path / "src/app.py").exists() and not (tmp_path / "plain.txt").exists()
    assert (tmp_path / "src/main.py").read_text() == 'def greet():\n    print("Hello, world!")\n'
    assert (tmp_path / "moved/plain.txt").read_text() == "same\n"
    assert outcome.summary().splitlines() == [
        "Done!", "M src/main.py (moved from src/app.py)", "M moved/plain.txt (moved from plain.txt)"
    ]


def test_update_keeps_permissions_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    script = write(tmp_path / "run.sh", "#!/bin/sh\r\necho hi\r\n")
    script.chmod(0o755)
    bare = write(tmp_path / "bare.txt", "a\nb")
    apply_patch(patch("*** Update File: run.sh", " #!/bin/sh", "-echo hi", "+echo bye",
                      "*** Update File: bare.txt", " a", "-b", "+c"), tmp_path)
    assert script.read_bytes() == b"#!/bin/sh\r\necho bye\r\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert bare.read_bytes() == b"a\nc"


# -- fuzzy matching and End of File ------------------------------------------------------------


def test_context_matches_ignoring_trailing_whitespace(tmp_path: Path) -> None:
    target = write(tmp_path / "t.txt", "alpha   \nbeta\ngamma\t\n")
    outcome = apply_patch(patch("*** Update File: t.txt", " alpha", "-beta", "+BETA", " gamma"),
                          tmp_path)
    assert target.read_text() == "alpha   \nBETA\ngamma\t\n"  # context keeps the file's spelling
    assert outcome.fuzz == 1
    assert "ignoring whitespace in t.txt" in outcome.summary()


def test_indentation_difference_reindents_inserted_lines(tmp_path: Path) -> None:
    target = write(tmp_path / "c.py",
                   "class C:\n    def f(self):\n        a = 1\n        return a\n")
    outcome = apply_patch(patch(
        "*** Update File: c.py",
        " def f(self):",
        "     a = 1",
        "+    b = 2",
        "-    return a",
        "+    return a + b",
    ), tmp_path)
    assert target.read_text() == (
        "class C:\n    def f(self):\n        a = 1\n        b = 2\n        return a + b\n"
    )
    assert outcome.fuzz == 100


def test_end_of_file_picks_the_last_occurrence_and_appends(tmp_path: Path) -> None:
    target = write(tmp_path / "e.txt", "end\nmiddle\nend\n")
    apply_patch(patch("*** Update File: e.txt", "@@", "-end", "+END", "*** End of File"),
                tmp_path)
    assert target.read_text() == "end\nmiddle\nEND\n"
    apply_patch(patch("*** Update File: e.txt", "@@", "+appended", "*** End of File"), tmp_path)
    assert target.read_text() == "end\nmiddle\nEND\nappended\n"


# -- safety -------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    "*** Add File: ../escape.txt",
    "*** Add File: sub/../../escape.txt",
    "*** Delete File: ../escape.txt",
    "*** Update File: {outside}/escape.txt",
    "*** Add File: {outside}/absolute.txt",
])
def test_paths_outside_the_workspace_are_refused(tmp_path: Path, header: str) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write(tmp_path / "escape.txt", "outside\n")
    header = header.format(outside=tmp_path)
    body = ["+x"] if "Add" in header else [" outside", "+b"] if "Update" in header else []
    message = one_line_error(patch(header, *body), workspace)
    assert ("the path leads outside the workspace" in message
            or "absolute paths are not allowed" in message)
    assert snapshot(tmp_path) == {"escape.txt": b"outside\n"}


def test_symlinks_leading_outside_are_refused(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    secret = write(outside / "secret.txt", "keep\n")
    (workspace / "link.txt").symlink_to(secret)
    (workspace / "linkdir").symlink_to(outside, target_is_directory=True)
    for text in (
        patch("*** Update File: link.txt", "-keep", "+changed"),
        patch("*** Delete File: link.txt"),
        patch("*** Update File: linkdir/secret.txt", "-keep", "+changed"),
        patch("*** Add File: linkdir/new.txt", "+x"),
        patch("*** Delete File: linkdir/secret.txt"),
    ):
        assert "symlink leads outside the workspace" in one_line_error(text, workspace)
    assert secret.read_text() == "keep\n" and sorted(os.listdir(outside)) == ["secret.txt"]


def test_move_cannot_leave_the_workspace_or_overwrite(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a\n")
    write(tmp_path / "b.txt", "b\n")
    before = snapshot(tmp_path)
    assert "outside" in one_line_error(
        patch("*** Update File: a.txt", "*** Move to: ../a.txt"), tmp_path)
    assert "already exists" in one_line_error(
        patch("*** Update File: a.txt", "*** Move to: b.txt"), tmp_path)
    assert snapshot(tmp_path) == before


def test_symlink_inside_the_workspace_is_followed(tmp_path: Path) -> None:
    real = write(tmp_path / "real.txt", "v1\n")
    (tmp_path / "alias.txt").symlink_to("real.txt")
    apply_patch(patch("*** Update File: alias.txt", "-v1", "+v2"), tmp_path)
    assert real.read_text() == "v2\n" and (tmp_path / "alias.txt").is_symlink()


@pytest.mark.parametrize(("text", "expected"), [
    (patch("*** Add File: a.txt", "+x"), "Add File a.txt: the file already exists"),
    (patch("*** Update File: missing.txt", "+x"), "Update File missing.txt: no such file"),
    (patch("*** Delete File: missing.txt"), "Delete File missing.txt: no such file"),
    (patch("*** Update File: a.txt", "-a", "+b", "*** Delete File: a.txt"), "already changes"),
])
def test_existence_errors(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path / "a.txt", "a\n")
    assert expected in one_line_error(text, tmp_path)
    assert (tmp_path / "a.txt").read_text() == "a\n"


# -- all or nothing -------------------------------------------------------------------------------


def test_failing_hunk_in_second_file_leaves_everything_untouched(tmp_path: Path) -> None:
    write(tmp_path / "first.py", "x = 1\ny = 2\n")
    write(tmp_path / "second.py", "def f():\n    return 1\n")
    write(tmp_path / "doomed.txt", "still here\n")
    before = snapshot(tmp_path)
    text = patch(
        "*** Update File: first.py",
        "-x = 1",
        "+x = 100",
        "*** Add File: created.txt",
        "+new",
        "*** Delete File: doomed.txt",
        "*** Update File: second.py",
        "@@ def f():",
        "-    return 2",
        "+    return 3",
    )
    message = one_line_error(text, tmp_path)
    assert message.startswith("Update File second.py: hunk 1 (patch line 9)")
    assert "patch line 10 '    return 2' matches no line of second.py" in message
    assert snapshot(tmp_path) == before


def test_mismatch_names_the_first_unmatched_context_line(tmp_path: Path) -> None:
    write(tmp_path / "s.txt", "a\nb\nc\nd\n")
    message = one_line_error(patch("*** Update File: s.txt", " a", " b", " X", "-c", "+C"),
                             tmp_path)
    assert "patch line 5 'X' does not match: file line 3 is 'c'" in message
    message = one_line_error(patch("*** Update File: s.txt", "@@ nowhere", "-a", "+A"), tmp_path)
    assert "'@@ nowhere' matches no line of s.txt" in message
    message = one_line_error(
        patch("*** Update File: s.txt", "@@", "-c", "+C", "@@", "-a", "+A"), tmp_path)
    assert "hunks must be in file order" in message


def test_unified_diff_writes_nothing_and_reports_parse_errors(tmp_path: Path) -> None:
    write(tmp_path / "d.txt", "one\ntwo\n")
    diff = unified_diff(patch("*** Update File: d.txt", " one", "-two", "+2",
                              "*** Add File: n.txt", "+new"), tmp_path)
    assert "--- a/d.txt\n+++ b/d.txt\n" in diff and "-two\n+2\n" in diff
    assert "--- /dev/null\n+++ b/n.txt\n" in diff
    assert not (tmp_path / "n.txt").exists() and (tmp_path / "d.txt").read_text() == "one\ntwo\n"
    with pytest.raises(PatchError):
        unified_diff("*** Update File: d.txt\n", tmp_path)


# -- malformed patches ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("*** Update File: a.txt\n-a\n+b\n*** End Patch\n", "must start with '*** Begin Patch'"),
    ("*** Begin Patch\n*** Update File: a.txt\n-a\n+b\n", "must end with the line '*** End Patch'"),
    ("", "the patch is empty"),
    (patch("*** Modify File: a.txt", "-a"), "patch line 2: unknown line '*** Modify File: a.txt'"),
    (patch("*** Update File: a.txt", "-a", "b"), "patch line 4: hunk line in a.txt must start"),
    (patch("*** Add File: z.txt", "no plus"), "every line of Add File z.txt must start with '+'"),
    (patch("*** Update File: a.txt", "@@"), "empty hunk in Update File a.txt"),
    (patch("*** Update File: a.txt"), "Update File a.txt has no hunks"),
    (patch("*** Delete File: a.txt", "-a"), "Delete File a.txt takes no lines"),
    (patch("*** Update File: a.txt", "-a", "*** Frobnicate"), "unknown marker"),
    (patch(), "no file operations"),
])
def test_malformed_patches_give_one_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path / "a.txt", "a\n")
    assert expected in one_line_error(text, tmp_path)
    assert snapshot(tmp_path) == {"a.txt": b"a\n"}


def test_parser_tolerates_crlf_and_surrounding_blank_lines() -> None:
    ops = parse_patch("\n\r\n" + patch("*** Add File: a", "+x").replace("\n", "\r\n") + "\n\n")
    assert [(op.kind, op.path, op.added_lines) for op in ops] == [("add", "a", ("x",))]


# -- the tool ---------------------------------------------------------------------------------


SIMPLE = patch("*** Update File: f.txt", "-old", "+new")


@pytest.mark.parametrize("arguments", [
    SIMPLE,
    json.dumps(SIMPLE),
    json.dumps({"patch": SIMPLE}),
    json.dumps({"input": SIMPLE}),
])
async def test_tool_accepts_every_argument_shape(tmp_path: Path, arguments: str) -> None:
    target = write(tmp_path / "f.txt", "old\n")
    tool = ApplyPatchTool(tmp_path)
    assert isinstance(tool, Tool) and tool.namespace == "functions.apply_patch"
    call = ToolInvocation("functions.apply_patch", arguments, call_id="c1")
    request = tool.approval(call)
    assert request is not None and request.kind == "files" and request.language == "diff"
    assert "-old\n+new\n" in request.body and "M f.txt" in request.title
    assert target.read_text() == "old\n"
    result = await tool.run(call)
    assert not result.is_error, result.text
    assert result.text == "Done!\nM f.txt"
    assert target.read_text() == "new\n"
    assert result.details["files"] == [{"status": "M", "path": "f.txt", "move_to": None}]
    assert "+new" in result.details["diff"]


async def test_tool_errors_are_results_and_change_nothing(tmp_path: Path) -> None:
    write(tmp_path / "f.txt", "other\n")
    tool = ApplyPatchTool(tmp_path)
    bad = ToolInvocation("functions.apply_patch", SIMPLE)
    assert tool.approval(bad) is None  # cannot apply: nothing to approve, run explains
    result = await run_safely(tool, bad)
    assert result.is_error and "\n" not in result.text
    assert "Update File f.txt" in result.text and "No file was changed" in result.text
    assert (tmp_path / "f.txt").read_text() == "other\n"
    for arguments in ("", "apply this please", json.dumps({"diff": 1, "x": 2}), "[1, 2]",
                      json.dumps({"patch": 5})):
        result = await tool.run(ToolInvocation("functions.apply_patch", arguments))
        assert result.is_error and "apply_patch" in result.text and "\n" not in result.text
    await tool.aclose()


async def test_tool_refuses_when_files_changed_after_approval(tmp_path: Path) -> None:
    target = write(tmp_path / "f.txt", "old\nkeep\n")
    tool = ApplyPatchTool(tmp_path)
    call = ToolInvocation("functions.apply_patch", SIMPLE, call_id="c2")
    assert tool.approval(call) is not None
    target.write_text("old\nkeep\nextra line the person never saw in the diff\n")
    result = await tool.run(call)
    assert result.is_error and "changed since this patch was shown" in result.text
    assert target.read_text().endswith("never saw in the diff\n")


def test_patch_from_arguments_errors_name_what_was_expected() -> None:
    with pytest.raises(ToolError, match=r"JSON object \{\"patch\""):
        patch_from_arguments("not a patch")
    assert patch_from_arguments(json.dumps({"only": SIMPLE})) == SIMPLE


def test_declarations() -> None:
    assert APPLY_PATCH_TOOL.name == "apply_patch"
    assert APPLY_PATCH_TOOL.parameters["type"] == "string"
    assert APPLY_PATCH_TOOL_JSON.parameters["required"] == ["patch"]
    assert "*** Begin Patch" in APPLY_PATCH_INSTRUCTIONS
    assert "*** End of File" in APPLY_PATCH_INSTRUCTIONS
    # The instructions' own example is a valid patch.
    example = APPLY_PATCH_INSTRUCTIONS.split("Example:\n", 1)[1]
    assert [op.kind for op in parse_patch(example)] == ["add", "update", "delete"]


def test_plan_patch_reports_changes_without_writing(tmp_path: Path) -> None:
    write(tmp_path / "x.txt", "1\n")
    outcome = plan_patch(patch("*** Update File: x.txt", "-1", "+2"), tmp_path)
    (change,) = outcome.changes
    assert (change.kind, change.old_text, change.new_text) == ("update", "1\n", "2\n")
    assert (tmp_path / "x.txt").read_text() == "1\n"


# -- all or nothing when writing fails part way, and swap races (issue 11) ----------------------
# A concurrent process (model-written code, a command) changes the workspace between the plan
# (checked, shown for approval) and the write; each test makes that change itself, for real.


def test_a_failure_part_way_undoes_the_steps_already_done(tmp_path: Path) -> None:
    """The update is in place when the delete finds its file replaced (by a folder): the update
    is undone and nothing is left behind."""
    write(tmp_path / "a.txt", "a\n")
    write(tmp_path / "b.txt", "b\n")
    outcome = plan_patch(patch("*** Update File: a.txt", "-a", "+A",
                               "*** Delete File: b.txt"), tmp_path)
    (tmp_path / "b.txt").unlink()
    write(tmp_path / "b.txt" / "inside.txt", "now a folder\n")
    before = snapshot(tmp_path)
    with pytest.raises(PatchError) as info:
        commit_patch(outcome)
    assert not isinstance(info.value, PatchWriteError)
    assert str(info.value) == ("b.txt: the file was changed or replaced while the patch was "
                               "applied")
    assert snapshot(tmp_path) == before  # a.txt restored, no temp or backup files


def test_a_failed_move_leaves_one_copy(tmp_path: Path) -> None:
    write(tmp_path / "first.txt", "1\n")
    write(tmp_path / "src.txt", "s\n")
    outcome = plan_patch(patch("*** Update File: first.txt", "-1", "+one",
                               "*** Update File: src.txt", "*** Move to: moved/dest.txt",
                               "-s", "+S"), tmp_path)
    (tmp_path / "src.txt").unlink()
    (tmp_path / "src.txt").mkdir()  # the source can no longer be moved away
    before = snapshot(tmp_path)
    with pytest.raises(PatchError, match=r"^src\.txt: the file was changed or replaced while"):
        commit_patch(outcome)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "moved").exists()  # the folder made for the move is gone too


def test_a_file_that_appears_before_the_write_is_never_overwritten(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a\n")
    outcome = plan_patch(patch("*** Update File: a.txt", "-a", "+A",
                               "*** Add File: c.txt", "+from the patch"), tmp_path)
    write(tmp_path / "c.txt", "written meanwhile\n")
    with pytest.raises(PatchError, match=r"^c\.txt: the file already exists"):
        commit_patch(outcome)
    assert snapshot(tmp_path) == {"a.txt": b"a\n", "c.txt": b"written meanwhile\n"}


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_followed(tmp_path: Path):
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    write(workspace / "sub" / "a.txt", "a\n")
    write(outside / "a.txt", "a\n")
    outcome = plan_patch(patch("*** Add File: sub/new.txt", "+x",
                               "*** Update File: sub/a.txt", "-a", "+A"), workspace)
    (workspace / "sub").rename(workspace / "away")
    (workspace / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PatchError, match=r"^sub/new\.txt: a folder on its path is a symlink"):
        commit_patch(outcome)
    assert snapshot(outside) == {"a.txt": b"a\n"}
    assert snapshot(workspace / "away") == {"a.txt": b"a\n"}
    # reading is guarded the same way: a swapped folder is refused while planning
    with pytest.raises(PatchError, match="symlink"):
        plan_patch(patch("*** Update File: sub/a.txt", "-a", "+A"), workspace)


SWAPPER = """
import os, sys
sub, away, outside, stop = sys.argv[1:]
while not os.path.exists(stop):
    try:
        os.rename(sub, away)
        os.symlink(outside, sub)
        os.unlink(sub)
        os.rename(away, sub)
    except OSError:
        pass
"""


def test_a_racing_swap_never_gets_a_file_outside_the_workspace(tmp_path: Path) -> None:
    """Another process keeps swapping a workspace folder for a symlink to a folder outside
    while patches add files under it: every file lands inside, or the patch fails cleanly."""
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    (workspace / "sub").mkdir(parents=True)
    outside.mkdir()
    stop = tmp_path / "stop"
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(workspace / "sub"),
                                str(workspace / "away"), str(outside), str(stop)])
    applied = refused = number = 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            number += 1
            try:
                apply_patch(patch(f"*** Add File: sub/f{number}.txt", "+x"), workspace)
                applied += 1
            except PatchError:
                refused += 1
    finally:
        stop.touch()
        swapper.wait(timeout=30)
    assert os.listdir(outside) == [], f"{applied} applied, {refused} refused"
    assert applied + refused == number


def test_approval_shows_bidi_and_control_characters_in_names_and_lines(tmp_path: Path):
    """U+202E (right-to-left override) makes "evil\u202etxt.exe" read as "evilexe.txt"; the
    approval shows it, and an escape sequence in a line, as <U+...>."""
    tool = ApplyPatchTool(tmp_path)
    name = "evil\u202etxt.exe"
    call = ToolInvocation("functions.apply_patch",
                          patch(f"*** Add File: {name}", "+colour \x1b]52;c;aGk=\x07 me"), "c9")
    request = tool.approval(call)
    assert request is not None
    assert request.title == "apply_patch: A evil<U+202E>txt.exe"
    assert "+++ b/evil<U+202E>txt.exe\n" in request.body
    assert "+colour <U+001B>]52;c;aGk=<U+0007> me\n" in request.body
    assert "\u202e" not in request.body + request.title and "\x1b" not in request.body
    result = asyncio.run(tool.run(call))
    assert not result.is_error, result.text
    assert (tmp_path / name).read_bytes() == b"colour \x1b]52;c;aGk=\x07 me\n"  # written as is
