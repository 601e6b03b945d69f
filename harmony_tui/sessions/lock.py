"""One process per chat file: an advisory lock held while a chat is open.

Every save rewrites the whole chat file, so two processes on one chat would each drop the
other's messages. A process that opens a chat takes an exclusive ``flock`` on a sidecar file
``.NAME.json.lock`` beside it (the chat file itself is replaced at every save, so it cannot carry
the lock) and writes its pid there. A second harmony-tui process gets ``ChatLockedError`` naming
that pid. The kernel drops the lock when its process ends (SIGKILL included): a chat is never
left locked; the next process that takes the lock removes the stale sidecar and any
``.NAME.json.*.tmp`` left by a save that was killed half way. Where ``fcntl`` does not exist
(Windows), chats are not locked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from pathlib import Path
from types import TracebackType

from harmony_tui.errors import HarmonyTuiError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, chats are not locked
    fcntl = None  # type: ignore[assignment]

# A temp file of ``paths.atomic_write_bytes``: ``.NAME.json.<random>.tmp``.
_TEMP = re.compile(r"^\.(?P<chat>.+\.json)\.[A-Za-z0-9_]{4,}\.tmp$")
_LOCK = re.compile(r"^\.(?P<chat>.+\.json)\.lock$")
# A probe or sweep of another process holds a lock for microseconds: retry this long before
# saying that the chat is open elsewhere.
BUSY_RETRY_SECONDS = 0.3


class ChatLockedError(HarmonyTuiError):
    """Another live harmony-tui process has the chat open; nothing was written."""


class ChatSaveError(HarmonyTuiError):
    """A chat could not be written (read-only folder, disk full ...); the file on disk is the
    previous complete version."""


def lock_path(chat: Path) -> Path:
    return chat.with_name(f".{chat.name}.lock")


def os_reason(err: OSError, folder: Path) -> str:
    """A short, plain reason for a failed write in ``folder``."""
    code = err.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full"
    if code == errno.EROFS:
        return f"{folder} is on a read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to write in {folder}"
    if code == errno.ENAMETOOLONG:
        return "the file name is too long"
    return err.strerror or str(err)


def save_error(chat: Path, err: OSError) -> ChatSaveError:
    """The one-line error for ``err`` raised while saving ``chat``."""
    return ChatSaveError(f"cannot save chat {chat.stem!r} ({chat}): "
                         f"{os_reason(err, chat.parent)}")


def holder_pid(chat: Path) -> int | None:
    """The pid written in the chat's lock file (None if unknown)."""
    try:
        text = lock_path(chat).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def locked_error(chat: Path) -> ChatLockedError:
    pid = holder_pid(chat)
    return ChatLockedError(f"chat {chat.stem!r} is open in another harmony-tui process "
                           f"({'pid ' + str(pid) if pid else 'pid unknown'})")


class ChatLock:
    """The exclusive lock of one chat file; ``release`` (or the process ending) frees it."""

    def __init__(self, chat: Path, fd: int | None) -> None:
        self.chat = chat
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    @classmethod
    def acquire(cls, chat: Path, wait: float = BUSY_RETRY_SECONDS) -> ChatLock:
        """Lock ``chat`` (creating its folder), or raise ``ChatLockedError`` (held by another
        process) or ``ChatSaveError`` (the lock file cannot be created: read-only folder ...).

        Stale temp files of the chat are removed once the lock is held.
        """
        if fcntl is None:  # pragma: no cover - Windows
            return cls(chat, None)
        deadline = time.monotonic() + wait
        path = lock_path(chat)
        while True:
            try:
                chat.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            except OSError as err:
                raise save_error(chat, err) from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise save_error(chat, err) from err
                if time.monotonic() >= deadline:
                    raise locked_error(chat) from None
                time.sleep(0.02)
                continue
            # Its last holder may have removed the file after we opened it: lock the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            with contextlib.suppress(OSError):  # a full disk: the pid is only informative
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            lock = cls(chat, fd)
            remove_stale_temps(chat)
            return lock

    def release(self) -> None:
        """Free the lock and remove the lock file (removed while still held, so no other
        process can be holding a lock on a file that is gone)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(lock_path(self.chat))):
                os.unlink(lock_path(self.chat))
        os.close(fd)

    def __enter__(self) -> ChatLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:  # a lock dropped without release: the fd is closed by the GC
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def held_elsewhere(chat: Path) -> int | None:
    """The pid of another process holding ``chat`` (0 if its pid is unknown), else None.

    A probe only: it never creates a lock file.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(lock_path(chat), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        pid = holder_pid(chat) or 0
        return None if pid == os.getpid() else pid
    finally:
        os.close(fd)
    return None


def remove_stale_temps(chat: Path) -> None:
    """Remove ``.NAME.json.*.tmp`` files of ``chat`` (call only while holding its lock)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(chat.parent):
            match = _TEMP.match(entry.name)
            if match and match["chat"] == chat.name and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def sweep_stale_files(chats_dir: Path) -> None:
    """Remove temp files left by killed saves and lock files left by dead processes, for every
    chat in ``chats_dir`` that no live process holds. Never raises."""
    try:
        names = {m["chat"] for entry in os.scandir(chats_dir)
                 if (m := _TEMP.match(entry.name) or _LOCK.match(entry.name))}
    except OSError:
        return
    for name in sorted(names):
        with contextlib.suppress(HarmonyTuiError, OSError):
            ChatLock.acquire(chats_dir / name, wait=0).release()
