"""Reading and writing workspace files for apply_patch without following a swapped-in symlink.

Every path is walked from the workspace's directory file descriptor one component at a time,
each opened with ``O_NOFOLLOW`` (directories with ``O_DIRECTORY`` too), and files are read,
created, renamed and removed relative to the descriptor of their directory (``openat``-style).
A directory replaced by a symlink after the patch was planned makes the walk fail; it is never
followed out of the workspace. The directories a transaction has opened stay pinned until it
ends, so later swaps of their names change nothing.

``Transaction`` writes a planned patch all or nothing: every new file is staged as a temp file
beside its target (fsynced), then put in place; replaced and removed files are kept as hidden
backups (hard links where the file system has them) until the end. Any failure undoes every
step in reverse order, so the workspace is as it was.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harmony_tui.tools.patch_format import PatchError

Parts = tuple[str, ...]
# A directory entry's (st_dev, st_ino, file type, st_ctime_ns): inode numbers are reused at once,
# so a file deleted and replaced has the same (dev, ino) more often than not.
Identity = tuple[int, int, int, int]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}
MAX_FILE_BYTES = 16 * 1024 * 1024  # larger files are not patched (read whole into memory)


def identity(info: os.stat_result) -> Identity:
    """What tells this directory entry from one that took its place."""
    return info.st_dev, info.st_ino, stat.S_IFMT(info.st_mode), info.st_ctime_ns


def _walk_error(err: OSError, display: str) -> PatchError:
    if err.errno == errno.ENOENT:
        return PatchError(f"{display}: no such file in the workspace")
    if err.errno in (errno.ELOOP, errno.ENOTDIR):
        return PatchError(f"{display}: a folder on its path is a symlink or not a folder (it"
                          " changed after the patch was checked); nothing is followed outside"
                          " the workspace")
    return PatchError(f"{display}: {err.strerror or err}")


class Workspace:
    """Directory descriptors under one workspace root, opened without following symlinks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: dict[Parts, int] = {(): os.open(root, os.O_RDONLY | os.O_DIRECTORY
                                                     | _CLOEXEC)}

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def parts(self, path: Path) -> Parts:
        """``path`` (inside the root) as its components below the root."""
        return path.relative_to(self.root).parts

    def directory(self, parts: Parts, display: str,
                  created: list[tuple[int, str]] | None = None) -> int:
        """The descriptor of ``root/parts``; missing folders are made (and recorded) when
        ``created`` is a list. PatchError when a component is a symlink or not a folder."""
        if parts in self._dirs:
            return self._dirs[parts]
        parent = self.directory(parts[:-1], display, created)
        name = parts[-1]
        try:
            try:
                fd = os.open(name, _DIRECTORY, dir_fd=parent)
            except FileNotFoundError:
                if created is None:
                    raise
                os.mkdir(name, 0o777, dir_fd=parent)
                created.append((parent, name))
                fd = os.open(name, _DIRECTORY, dir_fd=parent)
        except OSError as err:
            raise _walk_error(err, display) from err
        self._dirs[parts] = fd
        return fd

    def identity(self, parts: Parts, display: str) -> Identity:
        """The entry ``parts`` itself (a symlink is not followed)."""
        folder = self.directory(parts[:-1], display)
        try:
            info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        except OSError as err:
            raise _walk_error(err, display) from err
        return identity(info)

    def read_file(self, parts: Parts, display: str, role: str) -> tuple[bytes, int, Identity]:
        """The bytes, permission bits and identity of the regular file ``parts`` (the last
        component must not be a symlink either)."""
        folder = self.directory(parts[:-1], f"{role} {display}")
        try:  # O_NONBLOCK: a FIFO must not hang the open
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC,
                         dir_fd=folder)
        except FileNotFoundError as err:
            raise PatchError(f"{role} {display}: no such file in the workspace") from err
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise _walk_error(err, f"{role} {display}") from err
            raise PatchError(f"{role} {display}: cannot read it ({err.strerror})") from err
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise PatchError(f"{role} {display}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise PatchError(f"{role} {display}: the file has {info.st_size} bytes; files"
                                 f" over {MAX_FILE_BYTES // (1024 * 1024)} MiB are not patched")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except OSError as err:
            raise PatchError(f"{role} {display}: cannot read it ({err.strerror})") from err
        finally:
            os.close(fd)
        return b"".join(chunks), stat.S_IMODE(info.st_mode), identity(info)


def _hidden_name(name: str, suffix: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.{suffix}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass
class _Staged:
    folder: int
    temp: str
    name: str
    display: str


class Transaction:
    """Staged writes, put in place in order, undone together if any step fails."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self._staged: list[_Staged] = []
        self._created: list[tuple[int, str]] = []  # folders made, in order
        self._undo: list[tuple[str, int, str, str]] = []  # (action, folder, name, backup)
        self._backups: list[tuple[int, str]] = []

    def stage(self, target: Path, data: bytes, mode: int | None, display: str) -> _Staged:
        """Write ``data`` to a fresh hidden temp file beside ``target`` (fsynced)."""
        parts = self.ws.parts(target)
        folder = self.ws.directory(parts[:-1], display, self._created)
        temp = _hidden_name(parts[-1], "tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
        fd = os.open(temp, flags, 0o666 if mode is None else mode, dir_fd=folder)
        staged = _Staged(folder, temp, parts[-1], display)
        self._staged.append(staged)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return staged

    def _check(self, folder: int, name: str, expected: Identity | None, display: str) -> None:
        """The entry must still be the one the patch was planned against."""
        try:
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            raise PatchError(f"{display}: the file was removed while the patch was applied"
                             ) from None
        if expected is not None and identity(info) != expected:
            raise PatchError(f"{display}: the file was changed or replaced while the patch was"
                             " applied")

    def _backup(self, folder: int, name: str) -> str:
        """Keep the entry ``name`` under a hidden name: a hard link (the entry stays in place)
        or, where the file system has none, a rename."""
        backup = _hidden_name(name, "orig")
        try:
            os.link(name, backup, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            os.rename(name, backup, src_dir_fd=folder, dst_dir_fd=folder)
        self._undo.append(("restore", folder, name, backup))
        self._backups.append((folder, backup))
        return backup

    def replace(self, staged: _Staged, expected: Identity | None) -> None:
        """Put a staged file in place of the existing file it updates."""
        self._check(staged.folder, staged.name, expected, staged.display)
        self._backup(staged.folder, staged.name)
        os.replace(staged.temp, staged.name, src_dir_fd=staged.folder,
                   dst_dir_fd=staged.folder)
        self._staged.remove(staged)

    def create(self, staged: _Staged) -> None:
        """Put a staged file at a name that must still be free (never overwriting)."""
        folder, name = staged.folder, staged.name
        try:
            os.link(staged.temp, name, src_dir_fd=folder, dst_dir_fd=folder,
                    follow_symlinks=False)
        except FileExistsError:
            raise PatchError(f"{staged.display}: the file already exists (it appeared while"
                             " the patch was applied)") from None
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            try:
                os.stat(name, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(staged.temp, name, src_dir_fd=folder, dst_dir_fd=folder)
            else:
                raise PatchError(f"{staged.display}: the file already exists (it appeared"
                                 " while the patch was applied)") from None
        else:
            os.unlink(staged.temp, dir_fd=folder)
        self._undo.append(("remove", folder, name, ""))
        self._staged.remove(staged)

    def remove(self, path: Path, expected: Identity | None, display: str) -> None:
        """Take the entry ``path`` away (kept as a backup until ``finish``)."""
        parts = self.ws.parts(path)
        folder = self.ws.directory(parts[:-1], display)
        self._check(folder, parts[-1], expected, display)
        backup = _hidden_name(parts[-1], "orig")
        os.rename(parts[-1], backup, src_dir_fd=folder, dst_dir_fd=folder)
        self._undo.append(("restore", folder, parts[-1], backup))
        self._backups.append((folder, backup))

    def rollback(self) -> list[str]:
        """Undo every step in reverse order; the names that could not be restored."""
        failed: list[str] = []
        for action, folder, name, backup in reversed(self._undo):
            try:
                if action == "remove":
                    os.unlink(name, dir_fd=folder)
                else:
                    os.replace(backup, name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError:
                failed.append(name)
        self._undo.clear()
        self._backups.clear()
        self._discard_staged()
        for parent, name in reversed(self._created):
            try:
                os.rmdir(name, dir_fd=parent)
            except OSError:
                pass
        self._created.clear()
        return failed

    def _discard_staged(self) -> None:
        for staged in self._staged:
            try:
                os.unlink(staged.temp, dir_fd=staged.folder)
            except OSError:
                pass
        self._staged.clear()

    def finish(self) -> None:
        """Drop the backups (the patch stands) and flush the folders touched."""
        folders: set[int] = set()
        for folder, backup in self._backups:
            folders.add(folder)
            try:
                os.unlink(backup, dir_fd=folder)
            except OSError:
                pass
        for _action, folder, _name, _backup in self._undo:
            folders.add(folder)
        for folder in folders:
            try:
                os.fsync(folder)
            except OSError:
                pass
        self._undo.clear()
        self._backups.clear()


def describe(names: Sequence[str]) -> str:
    """``a, b and c`` for a message."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
