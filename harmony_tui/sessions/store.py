"""Chat files on disk: open or create by name, save atomically, list, rename, delete.

A chat lives in ``chats_dir/NAME.json``, its prompt cache (when the engine saved one) in
``chats_dir/NAME.cache.safetensors``, renamed and deleted with it. Saving writes a temp file in
the same folder, fsyncs it and renames it over the old file, so a crash at any moment leaves
either the previous or the new complete file. A file that cannot be read as a chat is never
written to.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harmony_tui import paths
from harmony_tui.errors import ChatFileError, short_repr
from harmony_tui.sessions.chat_log import FORMAT, SCHEMA_VERSION, ChatLog
from harmony_tui.sessions.lock import ChatLock, held_elsewhere, lock_path, save_error

# A file name holds 255 bytes; the temp file of a save adds ``.`` + ``.json.`` + 8 + ``.tmp``.
MAX_NAME_BYTES = 200
CACHE_SUFFIX = ".cache.safetensors"  # a chat's prompt cache, beside it (the engine writes it)
PROMPT_CACHE_MAX_BYTES = 2**30  # larger prompt caches are not kept on disk


def default_chats_dir() -> Path:
    return paths.data_dir() / "chats"


def chat_name(name: str, what: str = "--chat") -> str:
    """A chat name from user input: ``NAME`` or ``NAME.json``, a plain file name.

    Refused with a one-line error naming ``what``: folders (``/``, ``\\``), a leading ``.``
    (``..``, hidden files), control and invisible characters (newline, NUL, bidi overrides),
    more than ``MAX_NAME_BYTES`` bytes in UTF-8.
    """
    name = name.strip()
    if name.endswith(".json"):
        name = name[:-5]
    shown = short_repr(name, 60)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ChatFileError(f"{what} {shown}: expected a name without folders, such as "
                            "'project-notes'")
    if name.startswith("."):
        raise ChatFileError(f"{what} {shown}: expected a name that does not start with '.' "
                            "(such names are hidden files), such as 'project-notes'")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        raise ChatFileError(f"{what} {shown}: control or invisible characters are not allowed "
                            "in a chat name (newline, tab, NUL ...)")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ChatFileError(f"{what} {shown}: the name is too long ({size} bytes in UTF-8); "
                            f"expected at most {MAX_NAME_BYTES}")
    return name


def chat_path(name: str, chats_dir: Path, what: str = "--chat") -> Path:
    return chats_dir / f"{chat_name(name, what)}.json"


def timestamp_name() -> str:
    """The name of an unnamed chat: its start time."""
    return _dt.datetime.now().strftime("chat-%Y%m%d-%H%M%S")


def free_path(path: Path) -> Path:
    """``path`` if nothing is there, else ``NAME-2.json``, ``NAME-3.json``... (a name whose
    lock file exists is taken too: a new chat of another process, not saved yet)."""

    def free(candidate: Path) -> bool:
        return not candidate.exists() and not lock_path(candidate).exists()

    if free(path):
        return path
    for n in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if free(candidate):
            return candidate
    raise ChatFileError(f"{path}: no free name beside it")


def detect_layout(data: Any) -> str:
    """``current``, ``older`` (ours, older schema), ``newer``, ``mlx-harmony-v1``,
    ``mlx-harmony-v2`` or ``unknown``."""
    if not isinstance(data, dict):
        return "unknown"
    if data.get("format") == FORMAT:
        version = data.get("schema_version")
        if not isinstance(version, int):
            return "unknown"
        return "current" if version == SCHEMA_VERSION else (
            "older" if version < SCHEMA_VERSION else "newer")
    if isinstance(data.get("chats"), dict) and "schema_version" in data:
        return "mlx-harmony-v2"
    if isinstance(data.get("messages"), list) and ("metadata" in data or not data.keys() - {
            "messages"}):
        return "mlx-harmony-v1"
    return "unknown"


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path`` with a one-line error for anything wrong."""
    try:
        text = _read_regular_file(path).decode("utf-8")
    except FileNotFoundError as err:
        raise ChatFileError(f"{path}: file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ChatFileError(f"{path}: cannot read: {err}") from err
    if not text.strip():
        raise ChatFileError(f"{path}: the file is empty, not a chat log")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ChatFileError(f"{path}:{err.lineno}:{err.colno}: not a valid chat file "
                            f"(invalid JSON: {err.msg}; truncated or corrupt?)") from err


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``; anything but a regular file is refused without waiting on it
    (opening a FIFO for reading would block until a writer comes)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise ChatFileError(f"{path}: this is {kind}, not a chat file (expected a JSON file)")
        return fh.read()


def read_chat(path: Path) -> ChatLog:
    """Load a chat file of the current schema. Raises ChatFileError naming what is wrong."""
    data = read_json(path)
    layout = detect_layout(data)
    if layout in ("mlx-harmony-v1", "mlx-harmony-v2", "older"):
        what = "an mlx-harmony chat log" if layout.startswith("mlx") else \
            "a chat log of an older harmony-tui"
        raise ChatFileError(f"{path}: this is {what}; convert it with "
                            f"`harmony-tui migrate-chat {path} --in-place`")
    if layout == "newer":
        raise ChatFileError(f"{path}: schema_version {data.get('schema_version')} was written "
                            f"by a newer harmony-tui (this one reads {SCHEMA_VERSION})")
    if layout == "unknown":
        raise ChatFileError(f"{path}: not a harmony-tui chat log (expected \"format\": "
                            f"\"{FORMAT}\")")
    try:
        log = ChatLog.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ChatFileError(f"{path}: {where}: {first['msg'].lower()}") from err
    ids = [r.id for r in log.messages]
    if len(set(ids)) != len(ids):
        raise ChatFileError(f"{path}: messages: duplicate message ids")
    if log.active_leaf is not None and log.active_leaf not in set(ids):
        raise ChatFileError(f"{path}: active_leaf {log.active_leaf!r} is not a message id")
    return log


def dump_chat(log: ChatLog) -> str:
    return json.dumps(log.model_dump(mode="json", exclude_none=True), ensure_ascii=False,
                      indent=1) + "\n"


def write_chat(path: Path, log: ChatLog) -> None:
    """Save ``log`` atomically (temp file, fsync, rename). A failure raises ``ChatSaveError``
    (one line) and leaves the previous file as it was."""
    try:
        paths.atomic_write_text(path, dump_chat(log))
    except OSError as err:
        raise save_error(path, err) from err


@dataclass
class ChatSummary:
    """One row of the sessions list."""

    path: Path
    title: str
    updated_at: str
    messages: int
    model: str | None
    error: str | None = None
    text: str = ""
    holder: int | None = None  # pid of another process that has the chat open (0: unknown)

    @property
    def name(self) -> str:
        return self.path.stem


def list_chats(chats_dir: Path) -> list[ChatSummary]:
    """Every ``*.json`` in the folder, newest first; unreadable files are listed with an error."""
    rows: list[ChatSummary] = []
    if not chats_dir.is_dir():
        return rows
    for path in chats_dir.glob("*.json"):
        if path.name.startswith("."):
            continue
        holder = held_elsewhere(path)
        try:
            log = read_chat(path)
        except ChatFileError as err:
            try:
                mtime = _dt.datetime.fromtimestamp(path.lstat().st_mtime, _dt.UTC)
            except OSError:
                continue  # removed meanwhile
            rows.append(ChatSummary(path, path.stem, mtime.isoformat(timespec="seconds"), 0,
                                    None, error=str(err).removeprefix(f"{path}: "),
                                    holder=holder))
            continue
        rows.append(ChatSummary(path, log.title or path.stem, log.updated_at,
                                len(log.path()), log.model, text=log.text(), holder=holder))
    rows.sort(key=lambda row: row.updated_at, reverse=True)
    return rows


def title_for_name(name: str) -> str:
    """The title a chat gets when it is renamed to ``name``."""
    return name.strip().removesuffix(".json")


def rename_chat(path: Path, new_name: str) -> Path:
    """Rename a chat that is not open in this process, and set its title.

    Refuses to replace another chat, and to touch a chat another process has open
    (``ChatLockedError``).
    """
    target = chat_path(new_name, path.parent, "new name")
    with ChatLock.acquire(path):
        if target == path:
            log = read_chat(path)
            log.title = title_for_name(new_name)
            write_chat(path, log)
            return path
        with ChatLock.acquire(target):
            if target.exists():
                raise ChatFileError(f"{target}: a chat with that name already exists")
            log = read_chat(path)
            log.title = title_for_name(new_name)
            write_chat(target, log)
            try:
                path.unlink()
                with contextlib.suppress(OSError):
                    os.replace(prompt_cache_path(path), prompt_cache_path(target))
            except OSError as err:  # no second copy left behind
                with contextlib.suppress(OSError):
                    target.unlink()
                raise save_error(path, err) from err
    return target


def prompt_cache_path(chat: Path) -> Path:
    """Where the engine keeps a chat's prompt cache: ``NAME.cache.safetensors`` beside it."""
    return chat.with_name(chat.stem + CACHE_SUFFIX)


def delete_chat(path: Path) -> None:
    """Delete a chat file (and its prompt cache), unless another process has it open
    (``ChatLockedError``)."""
    with ChatLock.acquire(path):
        try:
            prompt_cache_path(path).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        except OSError as err:
            raise ChatFileError(f"cannot delete {path}: {err.strerror or err}") from err
